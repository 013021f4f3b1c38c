"""Shared layers (aejax/models/layers.py): the sub-pixel 4x4 stride-2 transposed conv against an
independent NumPy scatter-add of PyTorch's ConvTranspose2d and against Flax's nn.ConvTranspose."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from aejax.models.layers import ConvTranspose4x4


def torch_conv_transpose2d(x, weight, bias, stride: int = 2, padding: int = 0):
  """PyTorch `F.conv_transpose2d` on NHWC `x` with a PyTorch weight [in, out, k, k]: every input
  pixel (i, j) adds x[i, j] @ weight[:, :, ky, kx] at output (s i + ky - p, s j + kx - p)."""
  b, h, w, _ = x.shape
  k, cout = weight.shape[-1], weight.shape[1]
  full = np.zeros((b, (h - 1) * stride + k, (w - 1) * stride + k, cout))
  for i in range(h):
    for j in range(w):
      for ky in range(k):
        for kx in range(k):
          full[:, stride * i + ky, stride * j + kx] += x[:, i, j] @ weight[:, :, ky, kx]
  return full[:, padding : full.shape[1] - padding, padding : full.shape[2] - padding] + bias


def _data(seed: int, cin: int = 3, cout: int = 4, hw=(5, 7)):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(2, *hw, cin))
  weight = rng.normal(size=(cin, cout, 4, 4))  # PyTorch layout [in, out, kH, kW]
  bias = rng.normal(size=(cout,))
  return x, weight, bias


@pytest.mark.parametrize("padding", [0, 1, 2])  # 0: the conv VAE, 1: the key-frame AE (2x upsample)
def test_matches_numpy_pytorch_conv_transpose(padding):
  x, weight, bias = _data(padding)
  want = torch_conv_transpose2d(x, weight, bias, padding=padding)
  assert want.shape == (2, 2 * 5 + 2 - 2 * padding, 2 * 7 + 2 - 2 * padding, 4)
  # PyTorch weight -> Flax kernel: flip both spatial axes, [in, out, kH, kW] -> [kH, kW, in, out].
  kernel = np.transpose(weight[:, :, ::-1, ::-1], (2, 3, 0, 1))
  v = {"params": {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}}
  got = ConvTranspose4x4(4, padding=padding).apply(v, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("padding", [0, 1])
def test_values_and_gradients_equal_flax_conv_transpose(padding):
  x, weight, bias = _data(10 + padding)
  x = jnp.asarray(x, jnp.float32)
  v = {
    "params": {
      "kernel": jnp.asarray(np.transpose(weight, (2, 3, 0, 1)), jnp.float32),
      "bias": jnp.asarray(bias, jnp.float32),
    }
  }
  ref = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((3 - padding, 3 - padding),) * 2)
  new = ConvTranspose4x4(4, padding=padding)

  @jax.jit
  def both(v, x):
    f = lambda mod: lambda v, x: jnp.sum(jnp.sin(mod.apply(v, x)))
    return (ref.apply(v, x), new.apply(v, x), jax.grad(f(ref), (0, 1))(v, x), jax.grad(f(new), (0, 1))(v, x))

  y_ref, y, g_ref, g = both(v, x)
  assert y.shape == y_ref.shape == (2, 12 - 2 * padding, 16 - 2 * padding, 4)
  np.testing.assert_allclose(y, y_ref, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), g, g_ref)


def test_parameters_and_bad_input():
  shapes = jax.eval_shape(
    lambda: ConvTranspose4x4(6, padding=1).init(jax.random.key(0), jnp.zeros((1, 3, 3, 5)))
  )
  assert jax.tree.map(lambda s: s.shape, shapes["params"]) == {"kernel": (4, 4, 5, 6), "bias": (6,)}
  with pytest.raises(ValueError, match="ConvTranspose4x4"):
    ConvTranspose4x4(6, padding=-1).init(jax.random.key(0), jnp.zeros((1, 3, 3, 5)))
  with pytest.raises(ValueError, match="ConvTranspose4x4"):
    ConvTranspose4x4(6).init(jax.random.key(0), jnp.zeros((3, 3, 5)))
