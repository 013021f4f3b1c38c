"""PyTorch reference of the Quixel conv VAE (abdullahchand/VariationalAutoEncoder, model/autoencoder.py).

The layers as `specs/seeds_keyframe_oval_vae.md` §3.2 lists them (NCHW, 3x254x254, 3,297,571
parameters), the original's KL + BCE loss (both summed), and `load_flax_params`, which copies an
`aejax.models.vae.ConvVAE` parameter tree into this module so both sides compute the same loss.
Only the benchmark imports it (torch is in bench/requirements.txt, not in the library's).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Encoder(nn.Module):
  def __init__(self, latent_dim: int = 512):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 32, 3, stride=2)
    self.conv2 = nn.Conv2d(32, 64, 3, stride=2)
    self.bn1 = nn.BatchNorm2d(64)
    self.conv3 = nn.Conv2d(64, 64, 3, stride=2)
    self.conv4 = nn.Conv2d(64, 128, 3, stride=2)
    self.bn2 = nn.BatchNorm2d(128)
    self.conv5 = nn.Conv2d(128, 128, 3, stride=2)
    self.conv6 = nn.Conv2d(128, 256, 3, stride=2)
    self.conv7 = nn.Conv2d(256, 256, 1)
    self.mu = nn.Linear(1024, latent_dim)
    self.log_var = nn.Linear(1024, latent_dim)

  def forward(self, x):
    x = F.relu(self.conv1(x))
    x = F.relu(self.bn1(self.conv2(x)))
    x = F.relu(self.conv3(x))
    x = F.relu(self.bn2(self.conv4(x)))
    x = F.relu(self.conv5(x))
    x = F.relu(self.conv6(x))
    x = F.relu(self.conv7(x)).flatten(1)  # [B, 1024]
    return self.mu(x), self.log_var(x)


class Decoder(nn.Module):
  def __init__(self, latent_dim: int = 512):
    super().__init__()
    self.fc = nn.Linear(latent_dim, 1024)
    self.t_conv0 = nn.ConvTranspose2d(256, 256, 1)
    chans = [256, 128, 128, 64, 64, 32, 3]
    for i in range(6):
      setattr(self, f"t_conv{i + 1}", nn.ConvTranspose2d(chans[i], chans[i + 1], 4, stride=2))

  def forward(self, z):
    x = self.fc(z).view(-1, 256, 2, 2)
    x = F.relu(self.t_conv0(x))
    for i in range(1, 6):
      x = F.relu(getattr(self, f"t_conv{i}")(x))
    return self.t_conv6(x)  # logits; the original applies a sigmoid here


class VAE(nn.Module):
  def __init__(self, latent_dim: int = 512):
    super().__init__()
    self.encoder = Encoder(latent_dim)
    self.decoder = Decoder(latent_dim)

  def forward(self, x, eps=None):
    mu, log_var = self.encoder(x)
    eps = torch.randn_like(mu) if eps is None else eps
    z = mu + eps * torch.exp(0.5 * log_var)
    return torch.sigmoid(self.decoder(z).float()), mu, log_var, z  # float32 as aejax's ConvVAE


def vae_loss(x_hat, x, mu, log_var):
  """The original trainer's loss: KL + BCE, both summed over the batch."""
  kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
  return kl + F.binary_cross_entropy(x_hat, x, reduction="sum")


def load_flax_params(model: VAE, params) -> VAE:
  """Copies a ConvVAE parameter tree (NHWC kernels) into `model` (NCHW weights)."""
  t = lambda a: torch.from_numpy(np.array(a, np.float32, order="C", copy=True))
  enc, dec = params["encoder"], params["decoder"]
  with torch.no_grad():
    for name in [f"conv{i}" for i in range(1, 8)]:
      getattr(model.encoder, name).weight.copy_(t(np.transpose(enc[name]["kernel"], (3, 2, 0, 1))))
      getattr(model.encoder, name).bias.copy_(t(enc[name]["bias"]))
    for name in ("bn1", "bn2"):
      getattr(model.encoder, name).weight.copy_(t(enc[name]["scale"]))
      getattr(model.encoder, name).bias.copy_(t(enc[name]["bias"]))
    for name in ("mu", "log_var"):
      getattr(model.encoder, name).weight.copy_(t(np.transpose(enc[name]["kernel"])))
      getattr(model.encoder, name).bias.copy_(t(enc[name]["bias"]))
    model.decoder.fc.weight.copy_(t(np.transpose(dec["fc"]["kernel"])))
    model.decoder.fc.bias.copy_(t(dec["fc"]["bias"]))
    for i in range(7):
      name = f"t_conv{i}"
      # Flax's ConvTranspose (transpose_kernel=False) is an input-dilated conv with the kernel
      # as stored; PyTorch's is the adjoint of a conv, i.e. the spatially flipped kernel.
      k = np.asarray(dec[name]["kernel"])[::-1, ::-1]  # [kh, kw, in, out]
      getattr(model.decoder, name).weight.copy_(t(np.transpose(k, (2, 3, 0, 1))))
      getattr(model.decoder, name).bias.copy_(t(dec[name]["bias"]))
  return model
