"""Image quality metrics: SSIM, MS-SSIM and PSNR on NHWC batches, one value per image.

SSIM is dm-pix's (Wang et al., "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004: 11-tap Gaussian window, sigma 1.5, K = (0.01, 0.03), 'valid'
filtering), run here with a separable convolution as its `filter_fn` (same numbers, much faster
than dm-pix's vmapped 1-D convolutions on CPU).

MS-SSIM follows Wang, Simoncelli and Bovik, "Multiscale structural similarity for image quality
assessment" (Asilomar 2003) as `tf.image.ssim_multiscale` and pytorch-msssim compute it: five
scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); at each scale the contrast-structure
term `cs` (and at the coarsest also the full SSIM) is averaged over space per channel and clipped
at 0; the per-channel product of powers is averaged over channels; between scales the image is
2x2 average-pooled after zero-padding odd sizes at the end (TensorFlow's convention).

Small images: the standard definition needs the coarsest scale to be at least the 11-pixel
window, i.e. a shorter side of at least 11 * 2**4 = 176 pixels. Below that, `ms_ssim` uses the
largest number of scales m for which `min(H, W) >= 11 * 2**(m - 1)` and the first m weights
renormalised to sum to 1 (so MS-SSIM(x, x) is still 1); `num_scales` fixes m explicitly. Images
shorter than 11 pixels are an error.
"""

from __future__ import annotations

import math

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
FILTER_SIGMA = 1.5


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
  """A normalised 1-D Gaussian with taps at `arange(size) - (size - 1) / 2` (float32 [size])."""
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  g = np.exp(-0.5 * (x / sigma) ** 2)
  return (g / g.sum()).astype(np.float32)


def separable_filter(z: jax.Array, kernel: np.ndarray, padding: str = "VALID") -> jax.Array:
  """Filters every channel of NHWC `z` with `kernel` along H then W (depthwise, float32)."""
  c = z.shape[-1]
  k = jnp.asarray(kernel, jnp.float32)
  dn = ("NHWC", "HWIO", "NHWC")
  kh = jnp.tile(k.reshape(-1, 1, 1, 1), (1, 1, 1, c))  # [K, 1, 1, C]
  kw = jnp.tile(k.reshape(1, -1, 1, 1), (1, 1, 1, c))  # [1, K, 1, C]
  hp = jax.lax.Precision.HIGHEST
  z = jax.lax.conv_general_dilated(
    z, kh, (1, 1), padding, dimension_numbers=dn, feature_group_count=c, precision=hp
  )
  return jax.lax.conv_general_dilated(
    z, kw, (1, 1), padding, dimension_numbers=dn, feature_group_count=c, precision=hp
  )


def _check(a, b, name: str, min_side: int = FILTER_SIZE) -> tuple[jax.Array, jax.Array]:
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  if a.ndim != 4 or a.shape != b.shape:
    raise ValueError(f"{name}: expected two NHWC batches of the same shape, got {a.shape} and {b.shape}")
  if min(a.shape[1:3]) < min_side:
    raise ValueError(
      f"{name}: images of {a.shape[1]}x{a.shape[2]} are smaller than the {min_side}-pixel window"
    )
  return a, b


def _filter_fn(z: jax.Array) -> jax.Array:
  return separable_filter(z, gaussian_kernel_1d(FILTER_SIZE, FILTER_SIGMA))


def ssim(a, b, *, max_val: float = 1.0) -> jax.Array:
  """Mean SSIM per image (dm-pix, averaged over space and channels).

  Args:
    a, b: [N, H, W, C] float images with values in [0, max_val]; H, W >= 11.
    max_val: the dynamic range (1 for [0, 1] images, 255 for uint8 values, 2 for [-1, 1]).

  Returns:
    [N] float32.
  """
  a, b = _check(a, b, "ssim")
  return pix.ssim(a, b, max_val=max_val, filter_fn=_filter_fn)


def _ssim_terms(a: jax.Array, b: jax.Array, max_val: float) -> tuple[jax.Array, jax.Array]:
  """Per-channel spatial means of the SSIM and cs maps (dm-pix's clipping): ([N, C], [N, C])."""
  mu0, mu1 = _filter_fn(a), _filter_fn(b)
  mu00, mu11, mu01 = mu0 * mu0, mu1 * mu1, mu0 * mu1
  eps = jnp.finfo(jnp.float32).eps ** 2
  s00 = jnp.maximum(eps, _filter_fn(a * a) - mu00)
  s11 = jnp.maximum(eps, _filter_fn(b * b) - mu11)
  s01 = _filter_fn(a * b) - mu01
  s01 = jnp.sign(s01) * jnp.minimum(jnp.sqrt(s00 * s11), jnp.abs(s01))
  c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
  cs = (2 * s01 + c2) / (s00 + s11 + c2)
  lum = (2 * mu01 + c1) / (mu00 + mu11 + c1)
  return jnp.mean(lum * cs, axis=(1, 2)), jnp.mean(cs, axis=(1, 2))


def _downsample(z: jax.Array) -> jax.Array:
  """2x2 average pooling after zero-padding odd H/W at the end (as tf.image.ssim_multiscale)."""
  h, w = z.shape[1:3]
  z = jnp.pad(z, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
  n, hh, ww, c = z.shape
  return z.reshape(n, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))


def ms_ssim_num_scales(height: int, width: int) -> int:
  """How many scales (at most 5) `ms_ssim` uses for an image of this size."""
  side = min(height, width)
  if side < FILTER_SIZE:
    raise ValueError(f"ms_ssim: images of {height}x{width} are smaller than the {FILTER_SIZE}-pixel window")
  return min(len(MS_SSIM_WEIGHTS), 1 + int(math.floor(math.log2(side / FILTER_SIZE))))


def ms_ssim(a, b, *, max_val: float = 1.0, num_scales: int | None = None) -> jax.Array:
  """Multi-scale SSIM per image (standard definition; see the module docstring for small images).

  Args:
    a, b: [N, H, W, C] float images with values in [0, max_val].
    max_val: the dynamic range.
    num_scales: how many scales to use (default: 5, or fewer when the image is below 176 px; the
      weights used are the first `num_scales` of Wang et al.'s, renormalised to sum to 1 when
      fewer than five).

  Returns:
    [N] float32.
  """
  a, b = _check(a, b, "ms_ssim")
  fit = ms_ssim_num_scales(*a.shape[1:3])
  m = fit if num_scales is None else int(num_scales)
  if not 1 <= m <= fit:
    raise ValueError(
      f"ms_ssim: num_scales={num_scales} does not fit {a.shape[1]}x{a.shape[2]} images (at most {fit})"
    )
  weights = np.asarray(MS_SSIM_WEIGHTS[:m], np.float64)
  weights = weights / weights.sum()
  values = []
  for s in range(m):
    full, cs = _ssim_terms(a, b, max_val)
    values.append(jax.nn.relu(full if s == m - 1 else cs))  # [N, C]
    if s < m - 1:
      a, b = _downsample(a), _downsample(b)
  stacked = jnp.stack(values, axis=0)  # [m, N, C]
  per_channel = jnp.prod(stacked ** jnp.asarray(weights, jnp.float32)[:, None, None], axis=0)
  return jnp.mean(per_channel, axis=-1)


def psnr(a, b, *, max_val: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio in dB per image: 10 log10(max_val^2 / MSE) ([N] float32)."""
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  if a.ndim != 4 or a.shape != b.shape:
    raise ValueError(f"psnr: expected two NHWC batches of the same shape, got {a.shape} and {b.shape}")
  mse = jnp.mean((a - b) ** 2, axis=(1, 2, 3))
  return 10.0 * jnp.log10(max_val**2 / mse)
