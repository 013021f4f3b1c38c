"""A convolutional LSTM (Shi et al., NeurIPS 2015) scanned over time: OVAL's `--lstm` option.

`ConvLSTMCell` is one step (gates i, f, o, g from one convolution over [x, h], as
ndrplz/ConvLSTM_pytorch); `ConvLSTM` scans it over [B, T, H, W, C] with one `lax.scan`, the (h, c)
carry passed in and returned, `tbptt=K` cutting the gradient through the carry every K frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from aejax.models.layers import torch_uniform_init


class ConvLSTMCell(nn.Module):
  """One ConvLSTM step (Shi et al., NeurIPS 2015, as ndrplz/ConvLSTM_pytorch): carry (h, c), x.

  gates = conv([x, h]) split into i, f, o, g; c' = sigmoid(f) c + sigmoid(i) tanh(g);
  h' = sigmoid(o) tanh(c'). Returns ((h', c'), h').
  """

  features: int = 10
  kernel_size: int = 3
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, carry, x):
    """One ConvLSTM step: (carry (h, c), x [B, H, W, C]) -> (new carry, h)."""
    h, c = carry
    k = self.kernel_size
    fan_in = (x.shape[-1] + self.features) * k * k
    gates = nn.Conv(
      4 * self.features,
      (k, k),
      padding="SAME",
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=torch_uniform_init(fan_in),
      bias_init=torch_uniform_init(fan_in),
      name="gates",
    )(jnp.concatenate([x, h.astype(x.dtype)], axis=-1))
    i, f, o, g = jnp.split(gates.astype(jnp.float32), 4, axis=-1)
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


class _TBPTTCell(nn.Module):
  """A ConvLSTM step that cuts the gradient through the incoming carry every `tbptt` frames."""

  features: int
  tbptt: int
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  @nn.compact
  def __call__(self, carry, inputs):
    x, t = inputs
    if self.tbptt > 0:
      cut = (t % self.tbptt) == 0
      carry = jax.tree.map(lambda a: jnp.where(cut, jax.lax.stop_gradient(a), a), carry)
    return ConvLSTMCell(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="cell")(carry, x)


class ConvLSTM(nn.Module):
  """A ConvLSTM over [B, T, h, w, C] with one `lax.scan` over T; returns (h for every T, carry)."""

  features: int = 10
  tbptt: int = 0
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, carry=None):
    """Runs the cell over x [B, T, H, W, C] (scan over T): (hidden states, final carry)."""
    b, t, h, w, _ = x.shape
    if carry is None:
      carry = self.initial_carry(b, (h, w))
    scan = nn.scan(
      _TBPTTCell, variable_broadcast="params", split_rngs={"params": False}, in_axes=1, out_axes=1
    )
    steps = jnp.broadcast_to(jnp.arange(t), (b, t))  # [B, T]
    carry, hs = scan(self.features, self.tbptt, self.dtype, self.param_dtype, name="scan")(carry, (x, steps))
    return hs, carry

  def initial_carry(self, batch: int, size: Sequence[int]):
    """Zero (h, c) state for `batch` frames of spatial `size`."""
    zeros = jnp.zeros((batch, *size, self.features), jnp.float32)
    return zeros, zeros
