"""PyTorch reference of the key-frame autoencoder and its loss, for side-by-side benchmarks.

`Autoencoder` is Best-Frame-Retrieval's `keyframe/model.py` (AE_final, BatchNorm momentum 0.5,
bn1..bn4 shared between encoder and decoder when `share_norms`); `ms_ssim_l1_loss` is the mix of
Zhao et al. with every channel filtered by every sigma (the same definition as
`aejax.losses.ms_ssim_l1_loss`, fixed grouping), written with grouped 33x33 convolutions on CPU or
CUDA. `load_flax_params` copies aejax parameters in, so both sides compute the same numbers; the
module names are the original's, so its released state dicts load as they are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class Autoencoder(nn.Module):
  """AE_final in NCHW; input and output in [-1, 1].

  Module names are the original's (`keyframe/model.py`): `bn0`, `conv1..5`, `bn1..5`,
  `t_conv1..5`, and the `encoder` / `decoder` Sequentials that hold the same modules again (LeakyReLU
  and Tanh at the original's indices), so `state_dict()` has the released checkpoints' 120 keys and
  `load_state_dict(torch.load("MS_SSIM_L1-epoch-50.pth"))` works with `strict=True`. With
  `share_norms=False` the decoder uses its own `dec_bn1..4` (not the original).
  """

  def __init__(self, share_norms: bool = True, momentum: float = 0.5):
    super().__init__()
    bn = lambda c: nn.BatchNorm2d(c, momentum=momentum, eps=1e-5)
    self.relu, self.tanh = nn.LeakyReLU(0.01), nn.Tanh()
    self.bn0 = bn(3)
    self.conv1, self.bn1 = nn.Conv2d(3, 32, 3, 1, 1), bn(32)
    self.conv2, self.bn2 = nn.Conv2d(32, 64, 3, 1, 1), bn(64)
    self.conv3, self.bn3 = nn.Conv2d(64, 128, 4, 2, 1), bn(128)
    self.conv4, self.bn4 = nn.Conv2d(128, 64, 4, 2, 1), bn(64)
    self.conv5, self.bn5 = nn.Conv2d(64, 8, 4, 2, 1), bn(8)
    self.encoder = nn.Sequential(
      self.bn0,
      self.conv1,
      self.bn1,
      self.relu,
      self.conv2,
      self.bn2,
      self.relu,
      self.conv3,
      self.bn3,
      self.relu,
      self.conv4,
      self.bn4,
      self.relu,
      self.conv5,
      self.bn5,
    )
    self.t_conv1 = nn.ConvTranspose2d(8, 64, 4, 2, 1)
    self.t_conv2 = nn.ConvTranspose2d(64, 128, 4, 2, 1)
    self.t_conv3 = nn.ConvTranspose2d(128, 64, 4, 2, 1)
    self.t_conv4 = nn.ConvTranspose2d(64, 32, 3, 1, 1)
    self.t_conv5 = nn.ConvTranspose2d(32, 3, 3, 1, 1)
    if share_norms:
      dec_bn = [self.bn4, self.bn3, self.bn2, self.bn1]
    else:
      self.dec_bn1, self.dec_bn2, self.dec_bn3, self.dec_bn4 = bn(64), bn(128), bn(64), bn(32)
      dec_bn = [self.dec_bn1, self.dec_bn2, self.dec_bn3, self.dec_bn4]
    convs = [self.t_conv1, self.t_conv2, self.t_conv3, self.t_conv4]
    self.decoder = nn.Sequential(
      *[m for c, n in zip(convs, dec_bn) for m in (c, n, self.relu)], self.t_conv5, self.tanh
    )

  def forward(self, x):
    return self.decoder(self.encoder(x))

  def encode(self, x):
    """The latent (bn5's output), [N, 8, H/8, W/8]."""
    return self.encoder(x)


def _gauss(size: int, sigma: float) -> np.ndarray:
  x = np.arange(size) - size // 2
  g = np.exp(-(x**2) / (2 * sigma**2))
  return g / g.sum()


class MSSSIML1(nn.Module):
  """MS-SSIM + Gaussian L1 (alpha 0.84, data range 2) with channel-major masks: output channel
  5c + s filters input channel c with sigma s (what the original meant to compute)."""

  def __init__(
    self,
    sigmas=(0.5, 1.0, 2.0, 4.0, 8.0),
    data_range: float = 2.0,
    alpha: float = 0.84,
    compensation: float = 1.0,
  ):
    super().__init__()
    size = int(4 * sigmas[-1] + 1)
    masks = np.zeros((3 * len(sigmas), 1, size, size), np.float32)
    for c in range(3):
      for s, sig in enumerate(sigmas):
        masks[len(sigmas) * c + s, 0] = np.outer(_gauss(size, sig), _gauss(size, sig))
    self.register_buffer("masks", torch.from_numpy(masks))
    self.register_buffer("l1_masks", torch.from_numpy(masks[len(sigmas) - 1 :: len(sigmas)].copy()))
    self.s, self.pad, self.dr, self.alpha, self.comp = len(sigmas), size // 2, data_range, alpha, compensation
    self.c1, self.c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

  def forward(self, x, y):
    f = lambda z: F.conv2d(z, self.masks, groups=3, padding=self.pad)
    mux, muy = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mux**2, f(y * y) - muy**2, f(x * y) - mux * muy
    lum = (2 * mux * muy + self.c1) / (mux**2 + muy**2 + self.c1)
    cs = (2 * sxy + self.c2) / (sxx + syy + self.c2)
    b, _, h, w = x.shape
    lum, cs = lum.view(b, 3, self.s, h, w), cs.view(b, 3, self.s, h, w)
    msssim = (lum[:, :, -1] * cs.prod(dim=2)).mean(dim=1)
    gl1 = F.conv2d((x - y).abs(), self.l1_masks, groups=3, padding=self.pad).mean(1)
    return self.comp * (self.alpha * (1 - msssim) + (1 - self.alpha) * gl1 / self.dr).mean()


def load_flax_params(model: Autoencoder, params, batch_stats=None) -> None:
  """Copies aejax `KeyframeAE` parameters (NHWC kernels; Flax transposed-conv convention) in place."""
  t = lambda a: torch.from_numpy(np.array(a, np.float32))
  with torch.no_grad():
    for j in range(1, 6):
      p = params[f"conv{j}"]
      getattr(model, f"conv{j}").weight.copy_(t(np.transpose(p["kernel"], (3, 2, 0, 1))))
      getattr(model, f"conv{j}").bias.copy_(t(p["bias"]))
      p = params[f"t_conv{j}"]  # Flax [kh, kw, in, out] unflipped -> torch [in, out, kh, kw] flipped
      getattr(model, f"t_conv{j}").weight.copy_(t(np.transpose(p["kernel"][::-1, ::-1], (2, 3, 0, 1))))
      getattr(model, f"t_conv{j}").bias.copy_(t(p["bias"]))
    names = ["bn0", "bn1", "bn2", "bn3", "bn4", "bn5"] + [
      n for n in ("dec_bn1", "dec_bn2", "dec_bn3", "dec_bn4") if n in params
    ]
    for n in names:
      getattr(model, n).weight.copy_(t(params[n]["scale"]))
      getattr(model, n).bias.copy_(t(params[n]["bias"]))
      if batch_stats is not None:
        getattr(model, n).running_mean.copy_(t(batch_stats[n]["mean"]))
        getattr(model, n).running_var.copy_(t(batch_stats[n]["var"]))
