"""Layers of a learned transform codec: GDN / IGDN and a learned factorized latent density.

`GDN` is the generalized divisive normalization of Ballé, Laparra and Simoncelli (ICLR 2016 / 2017):
y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2), and its approximate inverse IGDN (multiplying
instead), with beta and gamma reparametrised as squares of parameters bounded from below (as
CompressAI's `GDN`). `FactorizedDensity` is the "fully factorized" prior of Ballé et al. (ICLR 2018,
appendix 6.1; CompressAI's `EntropyBottleneck`): one learned monotone cumulative function per
latent channel, c(x) = sigmoid(f_K(...f_1(x))), each f_k an affine map with positive weights
(softplus) plus a tanh nonlinearity with a learned, bounded gain; the probability of an integer
symbol s at quantiser step `step` is c((s + 1/2) step) - c((s - 1/2) step). In training the
latent gets additive uniform noise U(-1/2, 1/2) and the same expression is its density; at test
time the latent is rounded and `pmf_grid` tabulates the probabilities for the range coder.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

LIKELIHOOD_BOUND = 1e-9
_PEDESTAL = (2.0**-18) ** 2


class GDN(nn.Module):
  """GDN over the last axis (`inverse=True`: IGDN); beta starts at 1, gamma at 0.1 I."""

  inverse: bool = False
  beta_min: float = 1e-6
  gamma_init: float = 0.1

  @nn.compact
  def __call__(self, x):
    """x [..., C] -> GDN(x) (or IGDN(x)) of the same shape."""
    c = x.shape[-1]
    beta_p = self.param("beta", lambda k, s: jnp.sqrt(jnp.ones(s) + _PEDESTAL), (c,))
    gamma_p = self.param("gamma", lambda k, s: jnp.sqrt(self.gamma_init * jnp.eye(s[0]) + _PEDESTAL), (c, c))
    beta = jnp.maximum(beta_p, np.sqrt(self.beta_min + _PEDESTAL)) ** 2 - _PEDESTAL
    gamma = jnp.maximum(gamma_p, np.sqrt(_PEDESTAL)) ** 2 - _PEDESTAL
    norm = jnp.sqrt(beta + jnp.einsum("...j,ij->...i", x * x, gamma))
    return x * norm if self.inverse else x / norm


class FactorizedDensity(nn.Module):
  """A learned density per channel of a latent [..., C] (see the module docstring).

  Attributes:
    channels: the latent's channels C.
    filters: hidden widths of the cumulative function's stack (CompressAI's default (3, 3, 3)).
    init_scale: the initial density is roughly uniform over +-init_scale.
  """

  channels: int
  filters: Sequence[int] = (3, 3, 3)
  init_scale: float = 10.0

  def setup(self):
    """The per-channel matrices, biases and tanh gains of the cumulative function."""
    f = (1, *self.filters, 1)
    scale = self.init_scale ** (1.0 / (len(f) - 1))
    uniform = lambda k, s: jax.random.uniform(k, s, minval=-0.5, maxval=0.5)
    const = lambda i: nn.initializers.constant(np.log(np.expm1(1.0 / scale / f[i + 1])))
    self.matrices = [
      self.param(f"matrix{i}", const(i), (self.channels, f[i + 1], f[i])) for i in range(len(f) - 1)
    ]
    self.biases = [self.param(f"bias{i}", uniform, (self.channels, f[i + 1], 1)) for i in range(len(f) - 1)]
    self.factors = [
      self.param(f"factor{i}", nn.initializers.zeros, (self.channels, f[i + 1], 1)) for i in range(len(f) - 2)
    ]

  def logits_cdf(self, v):
    """Logits of the cumulative function at v [C, N] (each row its channel's points) -> [C, N]."""
    h = v[:, None, :]
    for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
      h = jnp.matmul(nn.softplus(m), h) + b
      if i < len(self.factors):
        h = h + jnp.tanh(self.factors[i]) * jnp.tanh(h)
    return h[:, 0, :]

  def _interval(self, v, half):
    """P(v - half < X < v + half) per entry of v [C, N] (the sign trick keeps the tails precise)."""
    lower, upper = self.logits_cdf(v - half), self.logits_cdf(v + half)
    sign = jax.lax.stop_gradient(-jnp.sign(lower + upper))
    sign = jnp.where(sign == 0, 1.0, sign)
    return jnp.abs(nn.sigmoid(sign * upper) - nn.sigmoid(sign * lower))

  def __call__(self, z):
    """Likelihoods of the (noisy or rounded) latent z [..., C] at step 1, bounded below."""
    flat = jnp.asarray(z, jnp.float32).reshape(-1, self.channels).T  # [C, N]
    lik = jnp.maximum(self._interval(flat, 0.5), LIKELIHOOD_BOUND)
    return lik.T.reshape(z.shape)

  def pmf_grid(self, step: float = 1.0, radius: int = 255):
    """(probabilities [C, 2 radius + 1] of the symbols -radius..radius at quantiser `step` (the
    latent is coded as round(z / step)), mass below -radius - 1/2 [C], above radius + 1/2 [C])."""
    s = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    grid = jnp.broadcast_to(s * step, (self.channels, s.size))
    pmf = self._interval(grid, 0.5 * step)
    edge = jnp.full((self.channels, 1), (radius + 0.5) * step, jnp.float32)
    below = nn.sigmoid(self.logits_cdf(-edge))[:, 0]
    above = nn.sigmoid(-self.logits_cdf(edge))[:, 0]
    return pmf, below, above


def rate_bits(likelihoods) -> jax.Array:
  """-sum log2 of the likelihoods: the ideal code length in bits."""
  return -jnp.sum(jnp.log2(likelihoods))


def block_transform(k: int) -> np.ndarray:
  """An orthonormal k x k block transform of RGB [k, k, 3, 3 k^2]: the 2-D DCT-II of each channel of
  an opponent colour transform ((R + G + B) / sqrt 3, (R - B) / sqrt 2, (R - 2 G + B) / sqrt 6);
  output channel index = colour * k^2 + u k + v (u, v the vertical / horizontal frequency)."""
  n = np.arange(k)
  norm = np.sqrt(np.where(n == 0, 1.0, 2.0) / k)[:, None]
  dct = norm * np.cos(np.pi * (2 * n[None] + 1) * n[:, None] / (2 * k))
  colour = np.array([[1, 1, 1] / np.sqrt(3), [1, 0, -1] / np.sqrt(2), [1, -2, 1] / np.sqrt(6)])
  return np.einsum("ua,vb,kc->abckuv", dct, dct, colour).reshape(k, k, 3, 3 * k * k)


def block_transform_inits(k: int, gain: float) -> tuple[dict, dict]:
  """(encoder conv, decoder conv-transpose) `kernel_init` / `bias_init` that make a k x k stride-k
  layer pair start as `block_transform(k)` scaled by `gain` and its exact inverse, on inputs in
  [0, 1] centred at 1/2 (the decoder's output is then linear, `OVAL.output="linear"`)."""
  b = block_transform(k).astype(np.float32)
  dc = np.zeros(3 * k * k, np.float32)
  dc[0] = -gain * 0.5 * k * np.sqrt(3.0)  # the luma DC of a grey-1/2 block
  const = lambda a: lambda key, shape, dtype=jnp.float32: jnp.asarray(a, dtype).reshape(shape)
  enc = dict(kernel_init=const(gain * b), bias_init=const(dc))
  dec = dict(kernel_init=const(b.transpose(0, 1, 3, 2)[::-1, ::-1] / gain), bias_init=const(np.full(3, 0.5)))
  return enc, dec
