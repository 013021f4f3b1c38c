"""Convolutional VAE of abdullahchand/VariationalAutoEncoder ("for Quixel Test", 2022).

A variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014) with
the layers of the original `model/autoencoder.py` (see `specs/seeds_keyframe_oval_vae.md` §3.2):

  encoder: six 3x3 stride-2 unpadded convs (32, 64, 64, 128, 128, 256 channels, BatchNorm before
           the ReLU of the 2nd and 4th), a 1x1 conv, flatten (256x2x2 = 1024 at 254x254) and two
           linear heads to a 512-d mean and log-variance;
  decoder: linear 512 -> 1024 (no activation), reshape to 256x2x2, a 1x1 transposed conv and six
           4x4 stride-2 unpadded transposed convs back to 3x254x254, sigmoid.

At 254x254 the model has exactly 3,297,571 parameters (encoder 1,688,704, decoder 1,608,867) and
386 BatchNorm statistics, as the original. Unpadded stride-2 convs map n -> (n - 3) // 2 + 1 and the
transposed convs map n -> 2n + 2, so with six layers only sizes 64s + 126 (190, 254, 318, ...) come
back to themselves; any other size is a ValueError naming the nearest sizes that work. Fewer or
wider layers are set with `features`.

The flatten happens in channel-first order (as PyTorch's `view`), so weights port one to one, and
every layer starts from PyTorch's default init (uniform, bound 1/sqrt(fan_in)).
Inputs are NHWC in [0, 1]; `__call__` returns `(x_hat, aux)` with `aux` = `mu`, `logvar`, `z` and
`logits` (the pre-sigmoid decoder output, for a numerically stable BCE). The reparameterisation
draws from the `sample` RNG stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from aejax.models.layers import ConvTranspose4x4, torch_uniform_init

Dtype = Any


def _init(fan_in: int) -> dict:
  """PyTorch's default init of a conv / linear layer: kernel and bias U(+-1/sqrt(fan_in))."""
  return {"kernel_init": torch_uniform_init(fan_in), "bias_init": torch_uniform_init(fan_in)}


def encoded_size(n: int, num_layers: int) -> int:
  """Side of the encoder's feature map for an input side `n` (0 or less: too small)."""
  for _ in range(num_layers):
    n = (n - 3) // 2 + 1 if n >= 3 else 0
  return n


def decoded_size(n: int, num_layers: int) -> int:
  """Side of the decoder output for a feature-map side `n` (4x4 stride-2 VALID: n -> 2n + 2)."""
  for _ in range(num_layers):
    n = 2 * n + 2
  return n


def valid_sizes(num_layers: int = 6, limit: int = 1024) -> list[int]:
  """Every input side up to `limit` that the encoder/decoder pair reproduces exactly."""
  out, s = [], 1
  while (n := decoded_size(s, num_layers)) <= limit:
    out.append(n)
    s += 1
  return out


def check_image_size(image_size: Sequence[int], num_layers: int) -> tuple[int, int]:
  """Returns the latent map size `(h, w)`; ValueError when a side cannot be reproduced."""
  if len(image_size) != 2:
    raise ValueError(f"ConvVAE: image_size must be (height, width), got {tuple(image_size)}")
  latent = []
  for side in image_size:
    e = encoded_size(int(side), num_layers)
    if e < 1 or decoded_size(e, num_layers) != side:
      ok = valid_sizes(num_layers, limit=max(2 * int(side), 512))
      near = sorted(ok, key=lambda v: abs(v - int(side)))[:2]
      raise ValueError(
        f"ConvVAE: input side {side} is not reproduced by {num_layers} stride-2 layers "
        f"(sides that work: {2**num_layers}s+{2 ** (num_layers + 1) - 2}, e.g. {sorted(near)})"
      )
    latent.append(e)
  return latent[0], latent[1]


class Encoder(nn.Module):
  """x [B, H, W, 3] in [0, 1] -> (mu, logvar), each [B, latent_dim]."""

  features: Sequence[int] = (32, 64, 64, 128, 128, 256)
  batchnorm_after: Sequence[int] = (1, 3)  # zero-based conv indices (the 2nd and 4th conv)
  latent_dim: int = 512
  bn_momentum: float = 0.9  # PyTorch momentum 0.1
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    """x [B, H, W, 3] in [0, 1] -> (mu, logvar), each [B, latent_dim]."""
    x = x.astype(self.dtype)
    for i, f in enumerate(self.features):
      x = nn.Conv(
        f,
        (3, 3),
        strides=(2, 2),
        padding="VALID",
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=f"conv{i + 1}",
        **_init(9 * x.shape[-1]),
      )(x)
      if i in self.batchnorm_after:
        x = nn.BatchNorm(
          use_running_average=not train,
          momentum=self.bn_momentum,
          epsilon=1e-5,
          axis_name=self.axis_name,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          name=f"bn{self.batchnorm_after.index(i) + 1}",
        )(x)
      x = nn.relu(x)
    c = self.features[-1]
    x = nn.relu(
      nn.Conv(
        c,
        (1, 1),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=f"conv{len(self.features) + 1}",
        **_init(x.shape[-1]),
      )(x)
    )  # [B, h, w, C]
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # [B, C*h*w], PyTorch order
    dense = lambda name: nn.Dense(
      self.latent_dim, dtype=self.dtype, param_dtype=self.param_dtype, name=name, **_init(x.shape[-1])
    )
    return dense("mu")(x), dense("log_var")(x)


class Decoder(nn.Module):
  """z [B, latent_dim] -> logits [B, H, W, out_channels] (apply a sigmoid for the image)."""

  features: Sequence[int] = (32, 64, 64, 128, 128, 256)  # the encoder's, mirrored here
  latent_hw: tuple[int, int] = (2, 2)
  out_channels: int = 3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z):
    """z [B, latent_dim] -> logits [B, H, W, out_channels]."""
    h, w = self.latent_hw
    c = self.features[-1]
    x = nn.Dense(c * h * w, dtype=self.dtype, param_dtype=self.param_dtype, name="fc", **_init(z.shape[-1]))(
      z.astype(self.dtype)
    )
    x = jnp.transpose(x.reshape(z.shape[0], c, h, w), (0, 2, 3, 1))  # [B, h, w, C]
    # PyTorch's ConvTranspose2d takes its fan-in from the *output* channels (weight [in, out, k, k]).
    x = nn.relu(
      nn.ConvTranspose(c, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype, name="t_conv0", **_init(c))(
        x
      )
    )
    outs = list(self.features[::-1][1:]) + [self.out_channels]
    for i, f in enumerate(outs):
      x = ConvTranspose4x4(
        f, padding=0, dtype=self.dtype, param_dtype=self.param_dtype, name=f"t_conv{i + 1}", **_init(16 * f)
      )(x)
      if i < len(outs) - 1:
        x = nn.relu(x)
    return x  # [B, H, W, out_channels] logits


class ConvVAE(nn.Module):
  """The Quixel conv VAE (3,297,571 parameters at the default 254x254, 512-d latent).

  Attributes:
    image_size: (height, width) of the inputs; must be a size the layers reproduce.
    latent_dim: size of z (512 in the original).
    features: encoder conv widths (the decoder mirrors them); its length is the depth.
    bn_momentum: Flax BatchNorm momentum (0.9 = PyTorch's default 0.1).
    axis_name: BatchNorm statistics are averaged over this mapped axis (set by the engine).
    dtype: compute dtype; param_dtype: parameter dtype.
  """

  image_size: tuple[int, int] = (254, 254)
  latent_dim: int = 512
  features: Sequence[int] = (32, 64, 64, 128, 128, 256)
  bn_momentum: float = 0.9
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    """Builds the encoder and decoder (checking that the image size fits the conv stack)."""
    latent_hw = check_image_size(self.image_size, len(self.features))
    bn = tuple(i for i in (1, 3) if i < len(self.features))
    self.encoder = Encoder(
      self.features, bn, self.latent_dim, self.bn_momentum, self.axis_name, self.dtype, self.param_dtype
    )
    self.decoder = Decoder(self.features, latent_hw, 3, self.dtype, self.param_dtype)

  def _check_input(self, x):
    if x.ndim != 4 or tuple(x.shape[1:3]) != tuple(self.image_size) or x.shape[-1] != 3:
      raise ValueError(
        f"ConvVAE: expected images [B, {self.image_size[0]}, {self.image_size[1]}, 3], got {tuple(x.shape)}"
      )

  def encode(self, x, *, train: bool = False):
    """x [B, H, W, 3] in [0, 1] -> (mu, logvar), each [B, latent_dim]."""
    self._check_input(x)
    return self.encoder(x, train=train)

  def reparameterize(self, mu, logvar):
    """z = mu + eps * exp(logvar / 2), eps ~ N(0, I) from the `sample` stream."""
    eps = jax.random.normal(self.make_rng("sample"), mu.shape, jnp.float32)
    return mu + eps.astype(mu.dtype) * jnp.exp(0.5 * logvar)

  def decode_logits(self, z):
    """z [B, latent_dim] -> pre-sigmoid logits [B, H, W, 3]."""
    return self.decoder(z)

  def decode(self, z):
    """z [B, latent_dim] -> images [B, H, W, 3] in (0, 1)."""
    return nn.sigmoid(self.decoder(z).astype(jnp.float32))

  def __call__(self, x, *, train: bool = False, sample: bool = True):
    """Encodes, samples z (or takes z = mu when `sample=False`) and decodes.

    Returns:
      `(x_hat [B, H, W, 3], aux)` with `aux` = `mu`, `logvar`, `z` ([B, latent_dim]) and `logits`.
    """
    mu, logvar = self.encode(x, train=train)
    z = self.reparameterize(mu, logvar) if sample else mu
    logits = self.decoder(z).astype(jnp.float32)
    return nn.sigmoid(logits), {"mu": mu, "logvar": logvar, "z": z, "logits": logits}

  def generate(self, n: int):
    """n images [n, H, W, 3] decoded from z ~ N(0, I) (the `sample` stream)."""
    z = jax.random.normal(self.make_rng("sample"), (n, self.latent_dim), jnp.float32)
    return self.decode(z.astype(self.dtype))

  def features_of(self, x, *, sample: bool = False):
    """Latent features for retrieval: mu, or a sampled z as the original's `representation`."""
    mu, logvar = self.encode(x, train=False)
    return self.reparameterize(mu, logvar) if sample else mu
