"""3D convolutional compression autoencoder with a learned codebook (ae_compressed_vision).

Gaurav Mitra's ae_compressed_vision (UT Austin, 2024), itself the 3D extension (Habibian et al.,
"Video Compression with Rate-Distortion Autoencoders", ICCV 2019) of the Mentzer et al. (CVPR
2018) image-compression autoencoder. For a clip [B, 20, 64, 64, 1]:

  E1  conv k5 s(1,2,2) SAME -> 64, BN, ReLU            [B, 20, 32, 32, 64]
  E2  conv k5 s(1,2,2) SAME -> 128, BN, ReLU           [B, 20, 16, 16, 128]
  E3  residual stack: x + [5 x (y + 3 blocks(y)), 1 block](x)   (16 blocks, 32 convs 3^3)
  E4  conv k5 s(1,2,2) SAME -> 32, BN                  [B, 20, 8, 8, 32] = latent z
  Q   quantiser (K scalar centroids by default)
  D1  conv-transpose k3 s(1,2,2) -> 128, BN, ReLU      [B, 20, 16, 16, 128]
  D2  residual stack
  D3  conv-transpose k5 s(1,2,2) -> 64, BN, ReLU       [B, 20, 32, 32, 64]
  D4  conv-transpose k5 s(1,2,2) -> 1, BN (no output activation)   [B, 20, 64, 64, 1]

PyTorch's ConvTranspose3d(padding p, output_padding (0,1,1)) is reproduced by explicit Flax
padding (k-1-p, k-1-p+op) per axis. With separate encoder and decoder stacks (the author's final
version) the model has 31,023,971 + K parameters; `share_residual_stack=True` (the earlier
version) has 16,855,907 + K. Kernels and biases use PyTorch's default U(+-1/sqrt(fan_in)) init.

Values: the original trains on 0..255 pixels; aejax feeds [0, 1] pixels (the output BatchNorm
learns the gain either way).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from aejax.models.layers import ResidualBlock, torch_uniform_init
from aejax.models.quantizers import ScalarQuantizer, VectorQuantizer

QUANTIZERS = ("scalar", "vq", "none")
_DN3, _DN2 = ("NDHWC", "DHWIO", "NDHWC"), ("NHWC", "HWIO", "NHWC")


def _same_padding(sizes, kernel, strides):
  """TensorFlow 'SAME' padding (extra pixel at the end), as the original's same_pad()."""
  pads = []
  for n, k, s in zip(sizes, kernel, strides):
    total = max((-(-n // s) - 1) * s + k - n, 0)
    pads.append((total // 2, total - total // 2))
  return pads


def conv3d(x, kernel, strides, padding, unrolled: bool):
  """3D conv [B,T,H,W,I] x [kt,kh,kw,I,O] (time stride 1 when `unrolled`).

  `unrolled` computes the same sum as kt 2D convs over time-shifted frames: XLA:CPU has fast 2D
  convolution kernels but a slow generic path for 3D ones (measured 3x here).
  """
  if not unrolled:
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DN3)
  if strides[0] != 1:
    raise ValueError(f"conv3d: the unrolled path needs time stride 1, got {strides}")
  kt, b = kernel.shape[0], x.shape[0]
  xp = jnp.pad(x, ((0, 0), padding[0], (0, 0), (0, 0), (0, 0)))
  t_out = xp.shape[1] - kt + 1
  out = 0.0
  for dt in range(kt):
    frames = xp[:, dt : dt + t_out].reshape((b * t_out,) + x.shape[2:])
    out = out + lax.conv_general_dilated(frames, kernel[dt], strides[1:], padding[1:], dimension_numbers=_DN2)
  return out.reshape((b, t_out) + out.shape[1:])


def _phase_taps(k: int, pad_lo: int, r: int, s: int):
  """Kernel taps that reach output phase r of a stride-s transposed conv, and the input offset
  of the first one: y[s*m + r] = sum_j x[m + d0 + j] K[taps[j]]."""
  taps = [kk for kk in range(k) if (r + kk - pad_lo) % s == 0]
  return taps, (r + taps[0] - pad_lo) // s


def conv_transpose3d(x, kernel, strides, padding, unrolled: bool):
  """Flax/lax `conv_transpose` (kernel not flipped) with explicit padding.

  `unrolled` splits the spatially strided transposed conv into s_h * s_w stride-1 convs on the
  input grid, one per output phase (sub-pixel convolution), interleaved; each runs through
  `conv3d`. XLA:CPU runs its own lhs-dilated 3D conv and its gradients ~100x slower.
  """
  b, t, h, w, _ = x.shape
  _, sh, sw = strides
  kt, kh, kw = kernel.shape[:3]
  out_h = (h - 1) * sh + 1 + sum(padding[1]) - kh + 1
  out_w = (w - 1) * sw + 1 + sum(padding[2]) - kw + 1
  if not unrolled or strides[0] != 1 or out_h % sh or out_w % sw:
    return lax.conv_transpose(x, kernel, strides, padding, dimension_numbers=_DN3)
  mh, mw = out_h // sh, out_w // sw
  phases = []
  for rh in range(sh):
    for rw in range(sw):
      th, dh = _phase_taps(kh, padding[1][0], rh, sh)
      tw, dw = _phase_taps(kw, padding[2][0], rw, sw)
      sub = kernel[:, jnp.asarray(th)][:, :, jnp.asarray(tw)]
      pad_h = (-dh, mh - 1 + dh + len(th) - 1 - (h - 1))
      pad_w = (-dw, mw - 1 + dw + len(tw) - 1 - (w - 1))
      phases.append(conv3d(x, sub, (1, 1, 1), [tuple(padding[0]), pad_h, pad_w], True))
  y = jnp.stack(phases, 0).reshape((sh, sw) + phases[0].shape)  # [sh, sw, B, T, mh, mw, O]
  y = y.transpose(2, 3, 4, 0, 5, 1, 6)  # [B, T, mh, sh, mw, sw, O]
  return y.reshape(y.shape[:2] + (out_h, out_w, y.shape[-1]))


class Conv3D(nn.Module):
  """A 3D conv or transposed conv with `kernel` [k,k,k,I,O] and `bias` (nn.Conv's names and
  layout) and PyTorch's default U(+-1/sqrt(fan_in)) init; padding 'SAME' or explicit pairs.

  `unrolled=None` picks the time-unrolled 2D path on CPU and XLA's native 3D ops elsewhere.
  """

  features: int
  kernel_size: int
  strides: tuple[int, int, int] = (1, 1, 1)
  padding: str | Sequence[tuple[int, int]] = "SAME"
  transpose: bool = False
  unrolled: bool | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, T, H, W, C] -> [B, T', H', W', features] (strided, or transposed when `transpose`)."""
    k = (self.kernel_size,) * 3
    cin = x.shape[-1]
    # PyTorch's fan_in: in_channels * k^3 for Conv3d, out_channels * k^3 for ConvTranspose3d.
    init: Callable = torch_uniform_init((self.features if self.transpose else cin) * k[0] ** 3)
    kernel = self.param("kernel", init, k + (cin, self.features), self.param_dtype)
    bias = self.param("bias", init, (self.features,), self.param_dtype)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    unrolled = jax.default_backend() == "cpu" if self.unrolled is None else self.unrolled
    if self.transpose:
      y = conv_transpose3d(x, kernel, self.strides, list(self.padding), unrolled)
    else:
      pad = _same_padding(x.shape[1:4], k, self.strides) if self.padding == "SAME" else list(self.padding)
      y = conv3d(x, kernel, self.strides, pad, unrolled)
    return y + bias.astype(self.dtype)


class ResidualStack(nn.Module):
  """resblock_c: x + [num_stages x (y + blocks_per_stage blocks(y)), one block](x)."""

  num_stages: int = 5
  blocks_per_stage: int = 3
  unrolled: bool | None = None
  axis_name: str | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """[B, T, H, W, C] -> [B, T, H, W, C]."""
    conv = functools.partial(Conv3D, unrolled=self.unrolled, dtype=self.dtype, param_dtype=self.param_dtype)

    def block(name):
      return ResidualBlock(
        kernel_size=3,
        axis_name=self.axis_name,
        conv=conv,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=name,
      )

    y = x
    for s in range(self.num_stages):
      h = y
      for b in range(self.blocks_per_stage):
        h = block(f"stage{s}_block{b}")(h, train=train)
      y = y + h
    y = block("last_block")(y, train=train)
    return x + y


class VQAE3D(nn.Module):
  """The ae_compressed_vision autoencoder; `__call__(x [B,T,H,W,C]) -> (recon, aux)`.

  Attributes:
    features: channels of E1 and E2 (and of D3 and D1).
    latent_features: channels of the latent z.
    kernel_size: kernel of E1, E2, E4, D3 and D4 (D1 is always 3).
    num_stages, blocks_per_stage: shape of the residual stack (5 and 3 in the original).
    share_residual_stack: one stack for encoder and decoder (earlier version) or two (final).
    out_channels: channels of the reconstruction.
    quantizer: `scalar` (K centroids), `vq` (vector quantiser over the latent channels, with
      `num_codebooks` groups) or `none`.
    num_codes: K (scalar centroids or entries per codebook).
    quantizer_mode: scalar mode `ste` | `hard` | `legacy` (see `ScalarQuantizer`).
    num_codebooks: VQ channel groups.
    commitment_cost, ema_decay, restart_threshold: VQ settings.
    unrolled: compute the 3D convs as 2D convs over time (None: on CPU only; same numbers).
    output_init: initial (scale, bias) of the output BatchNorm; (1, 0) as in PyTorch. The net
      must otherwise learn the output gain (pixel std ~0.2 on [0, 1] MovingMNIST) at Adam's
      ~lr per step, which takes most of a short CPU run.
  """

  features: Sequence[int] = (64, 128)
  latent_features: int = 32
  kernel_size: int = 5
  num_stages: int = 5
  blocks_per_stage: int = 3
  share_residual_stack: bool = False
  out_channels: int = 1
  quantizer: str = "scalar"
  num_codes: int = 128
  quantizer_mode: str = "ste"
  sigma: float = 1.0
  num_codebooks: int = 1
  commitment_cost: float = 0.25
  ema_decay: float = 0.99
  restart_threshold: float = 0.1
  unrolled: bool | None = None
  output_init: tuple[float, float] = (1.0, 0.0)
  axis_name: str | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    """Builds the encoder, quantiser and decoder (validating the configuration)."""
    if self.quantizer not in QUANTIZERS:
      raise ValueError(f"VQAE3D: quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")
    f1, f2 = self.features
    k = self.kernel_size
    common = {"dtype": self.dtype, "param_dtype": self.param_dtype}
    stride = (1, 2, 2)

    def conv(cin, cout, name):
      del cin
      return Conv3D(cout, k, stride, "SAME", unrolled=self.unrolled, name=name, **common)

    def convt(cin, cout, kk, name):
      # PyTorch padding p = (kk-1)//2 and output_padding (0, 1, 1) -> (kk-1-p, kk-1-p+op).
      del cin
      p = kk - 1 - (kk - 1) // 2
      return Conv3D(
        cout,
        kk,
        stride,
        ((p, p), (p, p + 1), (p, p + 1)),
        transpose=True,
        unrolled=self.unrolled,
        name=name,
        **common,
      )

    def bn(name, scale=1.0, bias=0.0):
      return nn.BatchNorm(
        momentum=0.9,
        epsilon=1e-5,
        axis_name=self.axis_name,
        name=name,
        scale_init=nn.initializers.constant(scale),
        bias_init=nn.initializers.constant(bias),
        **common,
      )

    def stack(name):
      return ResidualStack(
        self.num_stages,
        self.blocks_per_stage,
        unrolled=self.unrolled,
        axis_name=self.axis_name,
        name=name,
        **common,
      )

    self.enc_conv1, self.enc_bn1 = conv(self.out_channels, f1, "enc_conv1"), bn("enc_bn1")
    self.enc_conv2, self.enc_bn2 = conv(f1, f2, "enc_conv2"), bn("enc_bn2")
    self.enc_stack = stack("residual_stack" if self.share_residual_stack else "enc_stack")
    self.enc_conv3, self.enc_bn3 = conv(f2, self.latent_features, "enc_conv3"), bn("enc_bn3")
    self.dec_conv1, self.dec_bn1 = convt(self.latent_features, f2, 3, "dec_conv1"), bn("dec_bn1")
    self.dec_stack = self.enc_stack if self.share_residual_stack else stack("dec_stack")
    self.dec_conv2, self.dec_bn2 = convt(f2, f1, k, "dec_conv2"), bn("dec_bn2")
    self.dec_conv3 = convt(f1, self.out_channels, k, "dec_conv3")
    self.dec_bn3 = bn("dec_bn3", *self.output_init)
    shared = dict(commitment_cost=self.commitment_cost, axis_name=self.axis_name)
    if self.quantizer == "scalar":
      self.quant = ScalarQuantizer(self.num_codes, mode=self.quantizer_mode, sigma=self.sigma, **shared)
    elif self.quantizer == "vq":
      vq = dict(
        num_codebooks=self.num_codebooks, decay=self.ema_decay, restart_threshold=self.restart_threshold
      )
      self.quant = VectorQuantizer(self.num_codes, **vq, **shared)

  def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Clips [B, T, H, W, C] in [0, 1] -> continuous latent z [B, T, H/8, W/8, latent]."""
    if x.ndim != 5:
      raise ValueError(f"VQAE3D: expected clips [B, T, H, W, C], got shape {x.shape}")
    ura = not train
    h = nn.relu(self.enc_bn1(self.enc_conv1(x), use_running_average=ura))  # [B, T, H/2, W/2, 64]
    h = nn.relu(self.enc_bn2(self.enc_conv2(h), use_running_average=ura))  # [B, T, H/4, W/4, 128]
    h = self.enc_stack(h, train=train)
    return self.enc_bn3(self.enc_conv3(h), use_running_average=ura)  # [B, T, H/8, W/8, 32]

  def quantize(self, z: jax.Array, *, train: bool = False):
    """z -> (quantised z, aux with indices, loss, perplexity, usage)."""
    if self.quantizer == "none":
      zero = jnp.zeros((), jnp.float32)
      return z, {"indices": jnp.zeros(z.shape, jnp.int32), "loss": zero, "perplexity": zero, "usage": zero}
    return self.quant(z, train=train)

  def decode(self, zq: jax.Array, *, train: bool = False) -> jax.Array:
    """Quantised latent [B, T, h, w, latent] -> reconstruction [B, T, 8h, 8w, C]."""
    ura = not train
    h = nn.relu(self.dec_bn1(self.dec_conv1(zq), use_running_average=ura))  # [B, T, 2h, 2w, 128]
    h = self.dec_stack(h, train=train)
    h = nn.relu(self.dec_bn2(self.dec_conv2(h), use_running_average=ura))  # [B, T, 4h, 4w, 64]
    return self.dec_bn3(self.dec_conv3(h), use_running_average=ura)  # [B, T, 8h, 8w, C]

  def __call__(self, x: jax.Array, *, train: bool = False):
    """Video [B, T, H, W, C] -> (reconstruction, aux: the quantiser's aux plus `z`, `zq`)."""
    z = self.encode(x, train=train)
    zq, qaux = self.quantize(z, train=train)
    recon = self.decode(zq, train=train)
    aux = dict(qaux)
    aux["z"], aux["zq"] = z, zq
    return recon, aux


def sends_floats(model: VQAE3D) -> bool:
  """True when the decoder needs continuous latent values (`none`, or the scalar `legacy` mode,
  whose forward value is a distance, not a centroid): no finite code describes them."""
  return model.quantizer == "none" or (model.quantizer == "scalar" and model.quantizer_mode == "legacy")


def symbols_per_position(model: VQAE3D) -> int:
  """Values sent per latent position (t, y, x): one code per channel (scalar, none) or per
  codebook (vq)."""
  return model.num_codebooks if model.quantizer == "vq" else model.latent_features


def bits_per_position(model: VQAE3D, float_bits: int = 32) -> float:
  """The fixed-length rate of one latent position in bits: log2 K per code, or `float_bits` per
  value in the float modes (`sends_floats`), the honest rate of a continuous latent."""
  if sends_floats(model):
    return float(float_bits * model.latent_features)
  return symbols_per_position(model) * math.log2(model.num_codes)


def dequantize(model: VQAE3D, variables, indices: jax.Array) -> jax.Array:
  """Codes [..., symbols_per_position] -> the quantised latent [..., latent_features] the decoder
  takes: scalar centroids element-wise, or each codebook's entries concatenated (vq). Computed as
  a plain lookup, the same at the sender and the receiver."""
  if sends_floats(model):
    mode = f"{model.quantizer}/{model.quantizer_mode}"
    raise ValueError(f"VQAE3D: the {mode} quantiser sends floats, not codes")
  if model.quantizer == "scalar":
    zq = variables["params"]["quant"]["centroids"][indices]
  else:
    book = variables["batch_stats"]["quant"]["codebook"]  # [G, K, d]
    zq = book[jnp.arange(book.shape[0]), indices]  # [..., G, d]
    zq = zq.reshape(indices.shape[:-1] + (-1,))
  return zq.astype(model.dtype)
