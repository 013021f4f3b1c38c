"""PyTorch reference of the ae_compressed_vision 3D conv autoencoder (Gogo2015 HEAD, final version).

The layers as `specs/seeds_vqae_siammae.md` §A.3 lists them (NCTHW, TF-'same' padding by hand,
nested resblock_a/b/c, ConvTranspose3d with output_padding (0, 1, 1), BatchNorm output) with the
*fixed* quantiser (soft-to-hard STE over K scalar centroids, as `aejax` `quantizer_mode="ste"`),
widths and depth configurable, and `load_flax_params`, which copies an `aejax.models.vqae3d.VQAE3D`
tree into this module so both sides compute the same loss. Only the benchmark imports it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ResblockA(nn.Module):
  def __init__(self, c: int):
    super().__init__()
    self.conv1 = nn.Conv3d(c, c, 3, padding="same")
    self.bn1 = nn.BatchNorm3d(c)
    self.conv2 = nn.Conv3d(c, c, 3, padding="same")
    self.bn2 = nn.BatchNorm3d(c)

  def forward(self, x):
    return x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class ResblockB(nn.Module):
  def __init__(self, c: int, blocks: int):
    super().__init__()
    self.blocks = nn.Sequential(*[ResblockA(c) for _ in range(blocks)])

  def forward(self, x):
    return x + self.blocks(x)


class ResblockC(nn.Module):
  def __init__(self, c: int, stages: int, blocks: int):
    super().__init__()
    self.stages = nn.Sequential(*[ResblockB(c, blocks) for _ in range(stages)])
    self.last = ResblockA(c)

  def forward(self, x):
    return x + self.last(self.stages(x))


def same_pad(x, k: int):
  """TF 'SAME' for stride (1, 2, 2): time (k-1)//2 each side; space total k-2, extra at the end."""
  t = (k - 1) // 2
  total = max(k - 2, 0)  # (out - 1) * 2 + k - in with out = in / 2
  lo, hi = total // 2, total - total // 2
  return F.pad(x, (lo, hi, lo, hi, t, t))


class Autoencoder(nn.Module):
  def __init__(
    self,
    features=(64, 128),
    latent: int = 32,
    k: int = 5,
    stages: int = 5,
    blocks: int = 3,
    num_codes: int = 128,
    sigma: float = 1.0,
  ):
    super().__init__()
    f1, f2 = features
    self.k, self.sigma = k, sigma
    s = (1, 2, 2)
    self.enc1, self.ebn1 = nn.Conv3d(1, f1, k, stride=s), nn.BatchNorm3d(f1)
    self.enc2, self.ebn2 = nn.Conv3d(f1, f2, k, stride=s), nn.BatchNorm3d(f2)
    self.enc_res = ResblockC(f2, stages, blocks)
    self.enc3, self.ebn3 = nn.Conv3d(f2, latent, k, stride=s), nn.BatchNorm3d(latent)
    self.centroids = nn.Parameter(torch.empty(num_codes).uniform_(-(6**0.5), 6**0.5))
    p = (k - 1) // 2
    self.dec1 = nn.ConvTranspose3d(latent, f2, 3, stride=s, padding=1, output_padding=(0, 1, 1))
    self.dbn1 = nn.BatchNorm3d(f2)
    self.dec_res = ResblockC(f2, stages, blocks)
    self.dec2 = nn.ConvTranspose3d(f2, f1, k, stride=s, padding=p, output_padding=(0, 1, 1))
    self.dbn2 = nn.BatchNorm3d(f1)
    self.dec3 = nn.ConvTranspose3d(f1, 1, k, stride=s, padding=p, output_padding=(0, 1, 1))
    self.dbn3 = nn.BatchNorm3d(1)

  def quantize(self, z):
    d = (z[..., None] - self.centroids).abs()
    soft = (torch.softmax(-self.sigma * d, -1) * self.centroids).sum(-1)
    hard = self.centroids[d.argmin(-1)]
    return soft + (hard - soft).detach()

  def forward(self, x):  # [B, 1, T, H, W]
    h = F.relu(self.ebn1(self.enc1(same_pad(x, self.k))))
    h = F.relu(self.ebn2(self.enc2(same_pad(h, self.k))))
    h = self.enc_res(h)
    z = self.ebn3(self.enc3(same_pad(h, self.k)))
    h = F.relu(self.dbn1(self.dec1(self.quantize(z))))
    h = self.dec_res(h)
    h = F.relu(self.dbn2(self.dec2(h)))
    return self.dbn3(self.dec3(h))


def _t(a):
  return torch.from_numpy(np.array(a, np.float32))


def _conv(mod, p, transpose=False):
  k = np.asarray(p["kernel"])  # [kt, kh, kw, I, O]
  if transpose:  # lax conv_transpose does not flip; torch's weight is [I, O, k, k, k], flipped
    w = np.flip(k, (0, 1, 2)).transpose(3, 4, 0, 1, 2)
  else:
    w = k.transpose(4, 3, 0, 1, 2)
  mod.weight.data.copy_(_t(w))
  mod.bias.data.copy_(_t(p["bias"]))


def _bn(mod, p, s):
  mod.weight.data.copy_(_t(p["scale"]))
  mod.bias.data.copy_(_t(p["bias"]))
  mod.running_mean.copy_(_t(s["mean"]))
  mod.running_var.copy_(_t(s["var"]))


def _stack(mod: ResblockC, p, s):
  for i, b in enumerate(mod.stages):
    for j, a in enumerate(b.blocks):
      name = f"stage{i}_block{j}"
      _resa(a, p[name], s[name])
  _resa(mod.last, p["last_block"], s["last_block"])


def _resa(a: ResblockA, p, s):
  _conv(a.conv1, p["conv1"])
  _conv(a.conv2, p["conv2"])
  _bn(a.bn1, p["norm1"], s["norm1"])
  _bn(a.bn2, p["norm2"], s["norm2"])


@torch.no_grad()
def load_flax_params(model: Autoencoder, params, batch_stats) -> Autoencoder:
  """Copies a VQAE3D (separate stacks, scalar quantiser) variable tree into `model`."""
  for mod, name in ((model.enc1, "enc_conv1"), (model.enc2, "enc_conv2"), (model.enc3, "enc_conv3")):
    _conv(mod, params[name])
  for mod, name in ((model.dec1, "dec_conv1"), (model.dec2, "dec_conv2"), (model.dec3, "dec_conv3")):
    _conv(mod, params[name], transpose=True)
  for mod, name in (
    (model.ebn1, "enc_bn1"),
    (model.ebn2, "enc_bn2"),
    (model.ebn3, "enc_bn3"),
    (model.dbn1, "dec_bn1"),
    (model.dbn2, "dec_bn2"),
    (model.dbn3, "dec_bn3"),
  ):
    _bn(mod, params[name], batch_stats[name])
  _stack(model.enc_res, params["enc_stack"], batch_stats["enc_stack"])
  _stack(model.dec_res, params["dec_stack"], batch_stats["dec_stack"])
  model.centroids.copy_(_t(params["quant"]["centroids"]))
  return model
