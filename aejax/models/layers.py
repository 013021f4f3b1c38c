"""Shared building blocks for the aejax models (transposed convs, residual blocks, attention blocks)."""

from __future__ import annotations

import functools
from collections.abc import Callable

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


def batch_norm(module: nn.Module, name: str, **kwargs) -> nn.BatchNorm:
  """`nn.BatchNorm` with `module`'s momentum, epsilon, axis_name, dtype and param_dtype."""
  m = module
  kw = dict(momentum=m.momentum, epsilon=m.epsilon, axis_name=m.axis_name, dtype=m.dtype)
  return nn.BatchNorm(**kw, param_dtype=m.param_dtype, name=name, **kwargs)


class ConvTranspose4x4(nn.Module):
  """PyTorch's `ConvTranspose2d(k=4, stride=2, padding=p)` (n -> 2n + 2 - 2p), computed sub-pixel.

  Same `kernel` [4, 4, in, out] and `bias` parameters and the same outputs as Flax's
  `nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((3 - p, 3 - p),) * 2)`, i.e.
  "VALID" for p = 0 (the conv VAE's decoder) and 2 per side for p = 1, the exact 2x upsample of
  the key-frame AE. Flax's kernel is PyTorch's weight [in, out, 4, 4] flipped in both spatial
  axes and moved to [4, 4, in, out].

  It runs as one stride-1 2x2 conv to 4 * out channels on the input padded by one, then
  depth-to-space, then the first and last `padding` rows and columns are cut off: output row
  2m + a of the unpadded (p = 0) result gathers input rows m - 1 and m with kernel rows (1, 3)
  for a = 0 and (0, 2) for a = 1 (likewise for columns). The gradient is then a plain conv:
  XLA:CPU computes the gradient of an input-dilated conv (Flax's form) 30-50x slower; on GPU the
  two are alike.

  Attributes:
    features: output channels.
    padding: PyTorch's `padding` p >= 0 (implicit zero rows/columns cut from each side).
  """

  features: int
  padding: int = 0
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, H, W, in] -> [B, 2H + 2 - 2p, 2W + 2 - 2p, features]."""
    p = self.padding
    if x.ndim != 4 or p < 0 or min(x.shape[1:3]) < p:
      raise ValueError(
        f"ConvTranspose4x4: expected [B, H, W, C] with H, W >= padding {p} >= 0, got {x.shape}"
      )
    cin = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (4, 4, cin, self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    taps = np.array([[1, 3], [0, 2]])  # kernel rows (columns) used by output parity 0 and 1
    sub = kernel[taps][:, :, taps]  # [py, ty, px, tx, in, out]
    sub = jnp.transpose(sub, (1, 3, 4, 0, 2, 5)).reshape(2, 2, cin, 4 * self.features)
    # Padding by hand: XLA:CPU's kernel gradient of a conv with `padding=((1, 1), (1, 1))` is ~25x
    # slower than that of a VALID conv on the padded input.
    x = jnp.pad(jnp.asarray(x, self.dtype), ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = jax.lax.conv_general_dilated(
      x, sub.astype(self.dtype), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    b, h, w, _ = y.shape  # [B, H + 1, W + 1, 4 * out], channels ordered (py, px, out)
    y = y.reshape(b, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(b, 2 * h, 2 * w, self.features)  # [B, 2H + 2, 2W + 2, out]
    if p:
      y = y[:, p : 2 * h - p, p : 2 * w - p]  # [B, 2H + 2 - 2p, 2W + 2 - 2p, out]
    return y + bias.astype(self.dtype)


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
    conv: optional factory `conv(features, kernel_size, name=...) -> module` used instead of
      nn.Conv for the kernel_size convs (it must create `kernel`/`bias` as nn.Conv does), e.g.
      a faster 3D conv on CPU.
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
  conv: Callable[..., nn.Module] | None = None

  def _conv(self, x, features, kernel, name):
    if self.conv is not None and kernel > 1:
      return self.conv(features, kernel, name=name)(x)
    kw = {}
    if self.torch_init:
      init = torch_uniform_init(x.shape[-1] * self.kernel_size ** (x.ndim - 2) if kernel > 1 else x.shape[-1])
      kw = {"kernel_init": init, "bias_init": init}
    return nn.Conv(
      features,
      (kernel,) * (x.ndim - 2),
      padding="SAME",
      use_bias=self.use_bias,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=name,
      **kw,
    )(x)

  def _norm(self, x, train, name):
    if not self.use_norm:
      return x
    return batch_norm(self, name, use_running_average=not train)(x)

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """[B, *spatial, C] -> [B, *spatial, features] (BatchNorm statistics update when `train`)."""
    if x.ndim < 3:
      raise ValueError(f"ResidualBlock: expected [B, *spatial, C], got shape {x.shape}")
    features = self.features or x.shape[-1]
    skip = x if features == x.shape[-1] else self._conv(x, features, 1, "skip")
    y = self._conv(x, features, self.kernel_size, "conv1")
    y = nn.relu(self._norm(y, train, "norm1"))
    y = self._conv(y, features, self.kernel_size, "conv2")
    y = self._norm(y, train, "norm2") + skip
    return nn.relu(y) if self.post_activation else y


# ------------------------------------------------------------------------------ transformers


def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
  """MAE's `get_1d_sincos_pos_embed_from_grid`: [..., dim] = concat(sin(pos·ω), cos(pos·ω))."""
  if dim % 2:
    raise ValueError(f"sin-cos embedding needs an even width, got {dim}")
  omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
  out = np.asarray(pos, np.float64)[..., None] * omega  # [..., dim/2]
  return np.concatenate([np.sin(out), np.cos(out)], axis=-1)


def sincos_2d(
  dim: int, grid_hw: tuple[int, int], cls_token: bool = False, base_grid: tuple[int, int] | None = None
) -> np.ndarray:
  """Fixed 2D sin-cos position embeddings, [h*w (+1), dim] float32 (MAE `get_2d_sincos_pos_embed`).

  As in MAE, the first half of the channels encodes the column (w) index and the second half the
  row index (MAE's `np.meshgrid(grid_w, grid_h)` puts w first); rows are raster order. A leading
  row of zeros stands for [CLS] when `cls_token`. Non-square grids are allowed.

  With `base_grid` (the grid the model was trained on) a different grid is mapped onto it, the
  continuous counterpart of DINO's `interpolate_pos_encoding`: cell i of n sits at position
  (i + 0.5) * base / n - 0.5 (half-pixel centres, as a resize with align_corners=False).
  """
  if dim % 4:
    raise ValueError(f"2D sin-cos embedding needs a width divisible by 4, got {dim}")
  h, w = grid_hw
  bh, bw = base_grid if base_grid is not None else (h, w)
  ys = (np.arange(h) + 0.5) * bh / h - 0.5 if bh != h else np.arange(h)
  xs = (np.arange(w) + 0.5) * bw / w - 0.5 if bw != w else np.arange(w)
  rows, cols = np.meshgrid(ys, xs, indexing="ij")
  emb = np.concatenate(
    [sincos_1d(dim // 2, cols.reshape(-1)), sincos_1d(dim // 2, rows.reshape(-1))], axis=-1
  )  # [h*w, dim]
  if cls_token:
    emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
  return emb.astype(np.float32)


def xavier_dense(features: int, name: str, dtype, param_dtype, use_bias: bool = True):
  """A Dense layer with MAE's init: xavier-uniform kernel, zero bias."""
  return nn.Dense(
    features,
    use_bias=use_bias,
    dtype=dtype,
    param_dtype=param_dtype,
    name=name,
    kernel_init=nn.initializers.xavier_uniform(),
  )


class Attention(nn.Module):
  """Multi-head attention through `jax.nn.dot_product_attention` (timm `Attention` layout).

  Self-attention (`kv=None`) uses one fused `qkv` projection, as timm, so timm weights load
  one-to-one; cross-attention uses `q` and `kv` projections. `kv_lengths` [B] (int32) masks
  padded keys (see `ViT.token_multiple`), which the cuDNN fused kernel also supports.

  Attributes:
    num_heads: number of heads; head width = features / num_heads.
    qkv_bias: biases on the input projections (timm / MAE default True).
    implementation: passed to `jax.nn.dot_product_attention` (None: XLA picks; "cudnn": fused).
  """

  num_heads: int
  qkv_bias: bool = True
  implementation: str | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self, x: jax.Array, kv: jax.Array | None = None, kv_lengths: jax.Array | None = None
  ) -> jax.Array:
    """x [B, N, D] attends to itself, or to `kv` [B, M, D] when given -> [B, N, D]."""
    b, n, d = x.shape  # [B, N, D]
    if d % self.num_heads:
      raise ValueError(f"width {d} is not divisible by {self.num_heads} heads")
    hd = d // self.num_heads
    dense = functools.partial(xavier_dense, dtype=self.dtype, param_dtype=self.param_dtype)
    if kv is None:
      qkv = dense(3 * d, "qkv", use_bias=self.qkv_bias)(x).reshape(b, n, 3, self.num_heads, hd)
      q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, N, H, hd]
    else:
      m = kv.shape[1]
      q = dense(d, "q", use_bias=self.qkv_bias)(x).reshape(b, n, self.num_heads, hd)
      kvp = dense(2 * d, "kv", use_bias=self.qkv_bias)(kv).reshape(b, m, 2, self.num_heads, hd)
      k, v = kvp[:, :, 0], kvp[:, :, 1]  # [B, M, H, hd]
    out = jax.nn.dot_product_attention(
      q, k, v, key_value_seq_lengths=kv_lengths, implementation=self.implementation
    )  # [B, N, H, hd]
    return dense(d, "proj")(out.reshape(b, n, d))


class Mlp(nn.Module):
  """fc1 -> exact (erf) GELU -> fc2, as timm `Mlp`."""

  hidden: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[..., D] -> [..., D]."""
    y = xavier_dense(self.hidden, "fc1", self.dtype, self.param_dtype)(x)
    y = nn.gelu(y, approximate=False)
    return xavier_dense(x.shape[-1], "fc2", self.dtype, self.param_dtype)(y)


def layer_norm(name: str, dtype, param_dtype, eps: float = 1e-6) -> nn.LayerNorm:
  """LayerNorm over features, eps 1e-6 (timm ViT / MAE); statistics in float32."""
  return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=param_dtype, name=name)


class Block(nn.Module):
  """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)) (timm `Block` names).

  With `cross=True` it is SiamMAE's cross-self decoder block: x + CrossAttn(LN(x), LN(ctx)), then
  x + SelfAttn(LN(x)), then x + MLP(LN(x)); `self_attn=False` drops the self-attention (the
  paper's cross-only decoder ablation).
  """

  num_heads: int
  mlp_ratio: float = 4.0
  cross: bool = False
  self_attn: bool = True
  implementation: str | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    ctx: jax.Array | None = None,
    lengths: jax.Array | None = None,
    ctx_lengths: jax.Array | None = None,
  ):
    """Tokens x [B, N, D] (and context `ctx` [B, M, D] for cross blocks) -> [B, N, D]."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    attn = functools.partial(Attention, self.num_heads, implementation=self.implementation, **kw)
    if self.cross:
      if ctx is None:
        raise ValueError("a cross-attention block needs a context")
      c = layer_norm("norm_ctx", **kw)(ctx)
      x = x + attn(name="cross_attn")(layer_norm("norm_cross", **kw)(x), c, ctx_lengths)
    if self.self_attn:
      x = x + attn(name="attn")(layer_norm("norm1", **kw)(x), None, lengths)
    x = x + Mlp(int(x.shape[-1] * self.mlp_ratio), **kw, name="mlp")(layer_norm("norm2", **kw)(x))
    return x
