"""Shared building blocks for the aejax models (residual blocks, attention blocks)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn


def torch_uniform_init(fan_in: int):
  """PyTorch's default conv/linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for any shape."""
  bound = 1.0 / float(np.sqrt(max(fan_in, 1)))

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class ResidualBlock(nn.Module):
  """conv -> norm -> ReLU -> conv -> norm, plus an identity skip (He et al., CVPR 2016).

  Serves 1D, 2D and 3D inputs alike: the number of spatial axes is `x.ndim - 2`
  (`[B, *spatial, C]`), and `kernel_size` applies to each of them. As in the Mentzer et al.
  (CVPR 2018) compression autoencoder there is no activation after the addition unless
  `post_activation`. When `features` differs from the input channels the skip is a 1x1 conv.

  Attributes:
    features: output channels (default: the input channels).
    kernel_size: kernel extent along every spatial axis.
    use_norm: BatchNorm after each conv.
    use_bias: conv biases (the faithful ae_compressed_vision count keeps them before BatchNorm).
    post_activation: ReLU after the addition.
    torch_init: PyTorch's default U(+-1/sqrt(fan_in)) init for kernels and biases (else Flax's).
    momentum, epsilon: BatchNorm settings (Flax momentum 0.9 == PyTorch momentum 0.1).
  """

  features: int | None = None
  kernel_size: int = 3
  use_norm: bool = True
  use_bias: bool = True
  post_activation: bool = False
  torch_init: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: str | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def _conv(self, x, features, kernel, name):
    kw = {}
    if self.torch_init:
      init = torch_uniform_init(x.shape[-1] * self.kernel_size ** (x.ndim - 2) if kernel > 1
                                else x.shape[-1])
      kw = {"kernel_init": init, "bias_init": init}
    return nn.Conv(features, (kernel,) * (x.ndim - 2), padding="SAME", use_bias=self.use_bias,
                   dtype=self.dtype, param_dtype=self.param_dtype, name=name, **kw)(x)

  def _norm(self, x, train, name):
    if not self.use_norm:
      return x
    return nn.BatchNorm(use_running_average=not train, momentum=self.momentum,
                        epsilon=self.epsilon, axis_name=self.axis_name, dtype=self.dtype,
                        param_dtype=self.param_dtype, name=name)(x)

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if x.ndim < 3:
      raise ValueError(f"ResidualBlock: expected [B, *spatial, C], got shape {x.shape}")
    features = self.features or x.shape[-1]
    skip = x if features == x.shape[-1] else self._conv(x, features, 1, "skip")
    y = self._conv(x, features, self.kernel_size, "conv1")
    y = nn.relu(self._norm(y, train, "norm1"))
    y = self._conv(y, features, self.kernel_size, "conv2")
    y = self._norm(y, train, "norm2") + skip
    return nn.relu(y) if self.post_activation else y
