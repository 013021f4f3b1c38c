"""SSIM / MS-SSIM / PSNR against an independent NumPy + SciPy reference, and the MS-SSIM+L1 loss
against a NumPy port of the original PyTorch code (grouped 33x33 convolutions)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage, signal

from aejax import losses, metrics

WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


# ------------------------------------------------------------------- NumPy/SciPy references


def _gauss(size, sigma):
  x = np.arange(size) - (size - 1) / 2
  g = np.exp(-(x**2) / (2 * sigma**2))
  return g / g.sum()


def _blur_valid(img, size=11, sigma=1.5):
  """Gaussian filtering of a 2-D float64 image, 'valid' region only (as tf.image.ssim)."""
  g = _gauss(size, sigma)
  return signal.convolve2d(img, np.outer(g, g), mode="valid")


def _ssim_cs_channel(x, y, max_val):
  """Mean SSIM and mean cs of one channel (Wang et al. 2004), float64, no clipping (TF)."""
  c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
  mx, my = _blur_valid(x), _blur_valid(y)
  sxx = _blur_valid(x * x) - mx * mx
  syy = _blur_valid(y * y) - my * my
  sxy = _blur_valid(x * y) - mx * my
  cs = (2 * sxy + c2) / (sxx + syy + c2)
  lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
  return (lum * cs).mean(), cs.mean()


def _pool(img):
  """tf.image.ssim_multiscale's downsampling: zero-pad odd sizes at the end, 2x2 average."""
  h, w = img.shape
  img = np.pad(img, ((0, h % 2), (0, w % 2)))
  return img.reshape(img.shape[0] // 2, 2, img.shape[1] // 2, 2).mean(axis=(1, 3))


def ref_ssim(a, b, max_val=1.0):
  return np.mean([_ssim_cs_channel(a[..., c], b[..., c], max_val)[0] for c in range(a.shape[-1])])


def ref_ms_ssim(a, b, max_val=1.0, scales=5):
  w = WEIGHTS[:scales] / WEIGHTS[:scales].sum()
  per_channel = []
  for c in range(a.shape[-1]):
    x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
    val = 1.0
    for s in range(scales):
      full, cs = _ssim_cs_channel(x, y, max_val)
      val *= max(full if s == scales - 1 else cs, 0.0) ** w[s]
      x, y = _pool(x), _pool(y)
    per_channel.append(val)
  return float(np.mean(per_channel))


def _photo(realdata, name, size=(200, 264)):
  im = cv2.imread(str(realdata / "photos" / name), cv2.IMREAD_COLOR)
  assert im is not None, name
  im = cv2.cvtColor(im, cv2.COLOR_BGR2RGB)
  return im[: size[0], : size[1]].astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def photo_pairs(realdata):
  rng = np.random.default_rng(0)
  baboon = _photo(realdata, "opencv_baboon.jpg")
  fruits = _photo(realdata, "opencv_fruits.jpg")
  noisy = np.clip(baboon + rng.normal(0, 0.08, baboon.shape), 0, 1).astype(np.float32)
  blurred = cv2.GaussianBlur(fruits, (0, 0), 2.0)
  ok, enc = cv2.imencode(".jpg", (fruits * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 10])
  jpeg = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0
  graf1, graf3 = _photo(realdata, "opencv_graf1.png"), _photo(realdata, "opencv_graf3.png")
  # odd sizes exercise the padding rule
  return [
    (baboon, noisy),
    (fruits, blurred),
    (fruits, jpeg),
    (graf1, graf3),
    (baboon[:199, :263], noisy[:199, :263]),
  ]


# ------------------------------------------------------------------------------ the metrics


def test_ssim_matches_reference_on_real_photos(photo_pairs):
  for a, b in photo_pairs[:4]:
    got = float(metrics.ssim(a[None], b[None])[0])
    assert got == pytest.approx(ref_ssim(a, b), abs=1e-4)


def test_ms_ssim_matches_reference_on_real_photos(photo_pairs):
  a = np.stack([p[0] for p in photo_pairs[:4]])
  b = np.stack([p[1] for p in photo_pairs[:4]])
  got = np.asarray(metrics.ms_ssim(a, b))
  want = [ref_ms_ssim(x, y) for x, y in zip(a, b)]
  np.testing.assert_allclose(got, want, atol=1e-4)
  assert len(set(np.round(got, 3))) == 4  # four different pairs, four different values
  a, b = photo_pairs[4]
  assert float(metrics.ms_ssim(a[None], b[None])[0]) == pytest.approx(ref_ms_ssim(a, b), abs=1e-4)


def test_ms_ssim_max_val_scales_constants(photo_pairs):
  a, b = photo_pairs[0]
  got = float(metrics.ms_ssim(a[None] * 255, b[None] * 255, max_val=255.0)[0])
  assert got == pytest.approx(ref_ms_ssim(a, b), abs=1e-4)


def test_identity_gives_one(photo_pairs):
  a = photo_pairs[0][0][None]
  assert float(metrics.ms_ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-6)
  assert float(metrics.ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-6)


def test_small_images_use_fewer_scales_with_renormalised_weights(photo_pairs):
  assert metrics.ms_ssim_num_scales(176, 300) == 5
  assert metrics.ms_ssim_num_scales(175, 300) == 4
  assert metrics.ms_ssim_num_scales(96, 192) == 4
  assert metrics.ms_ssim_num_scales(11, 11) == 1
  a, b = (p[:96, :192] for p in photo_pairs[0])
  got = float(metrics.ms_ssim(a[None], b[None])[0])
  assert got == pytest.approx(ref_ms_ssim(a, b, scales=4), abs=1e-4)
  two = float(metrics.ms_ssim(a[None], b[None], num_scales=2)[0])
  assert two == pytest.approx(ref_ms_ssim(a, b, scales=2), abs=1e-4)
  with pytest.raises(ValueError, match="num_scales"):
    metrics.ms_ssim(a[None], b[None], num_scales=5)
  with pytest.raises(ValueError, match="smaller than"):
    metrics.ms_ssim(np.zeros((1, 10, 40, 3)), np.zeros((1, 10, 40, 3)))


def test_psnr_closed_form():
  x = np.full((2, 8, 8, 3), 0.5, np.float32)
  y = x + np.array([0.1, 0.01], np.float32)[:, None, None, None]
  np.testing.assert_allclose(metrics.psnr(x, y), [20.0, 40.0], atol=1e-3)
  assert float(metrics.psnr(x * 255, y * 255, max_val=255.0)[0]) == pytest.approx(20.0, abs=1e-3)


def test_shape_errors_are_one_line():
  with pytest.raises(ValueError, match="same shape"):
    metrics.ssim(np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 17, 3)))


# ------------------------------------------------------------------------------- the loss


def _torch_style_loss(x, y, alpha, data_range, compensation, legacy):
  """NumPy port of psyrocloud's MS_SSIM_L1_LOSS (NCHW logic, 33x33 masks, zero padding 16)."""
  sigmas = [0.5, 1.0, 2.0, 4.0, 8.0]
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  g = [np.outer(_gauss(33, s), _gauss(33, s)) for s in sigmas]

  def filt(img, mask):  # zero-padded 'same' correlation (symmetric mask)
    return ndimage.correlate(img, mask, mode="constant", cval=0.0)

  if legacy:  # output channel j: input channel j // 5, mask j -> sigma j // 3
    pairs = [(j // 5, j // 3) for j in range(15)]
  else:
    pairs = [(c, s) for c in range(3) for s in range(5)]
  ls, css = [], []
  for c, s in pairs:
    a, b = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
    mx, my = filt(a, g[s]), filt(b, g[s])
    sxx, syy, sxy = filt(a * a, g[s]) - mx**2, filt(b * b, g[s]) - my**2, filt(a * b, g[s]) - mx * my
    ls.append((2 * mx * my + c1) / (mx**2 + my**2 + c1))
    css.append((2 * sxy + c2) / (sxx + syy + c2))
  if legacy:
    msssim = ls[-1] * ls[-2] * ls[-3] * np.prod(css, axis=0)
  else:
    msssim = np.mean([ls[5 * c + 4] * np.prod(css[5 * c : 5 * c + 5], axis=0) for c in range(3)], axis=0)
  l1 = np.abs(x - y).astype(np.float64)
  gl1 = np.mean([filt(l1[..., c], g[4]) for c in range(3)], axis=0)
  return compensation * np.mean(alpha * (1 - msssim) + (1 - alpha) * gl1 / data_range)


@pytest.mark.parametrize("legacy", [False, True])
def test_ms_ssim_l1_matches_numpy_port(photo_pairs, legacy):
  a, b = photo_pairs[1]
  x, y = a[:40, :56] * 2 - 1, b[:40, :56] * 2 - 1  # [-1, 1]
  for kw in ({"alpha": 0.84, "data_range": 2.0, "compensation": 1.0}, {**losses.ORIGINAL_KWARGS}):
    got = float(losses.ms_ssim_l1_loss(x[None], y[None], legacy_grouping=legacy, **kw))
    want = _torch_style_loss(x, y, legacy=legacy, **kw)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_ms_ssim_l1_original_scale_figures():
  """The spec's hand checks of the original loss: 0, ~18 (+0.1), ~64 (independent noise)."""
  r = np.random.default_rng(0)
  a, b = r.random((2, 1, 96, 192, 3), dtype=np.float32)  # the training size (borders matter)
  kw = dict(losses.ORIGINAL_KWARGS, legacy_grouping=True)
  assert float(losses.ms_ssim_l1_loss(a, a, **kw)) == 0.0
  assert 17.0 < float(losses.ms_ssim_l1_loss(a, a + 0.1, **kw)) < 19.0
  assert 63.0 < float(losses.ms_ssim_l1_loss(a, b, **kw)) < 65.5
  per = losses.ms_ssim_l1_loss(a, b, reduction="per_example")
  assert per.shape == (1,) and float(per.mean()) == pytest.approx(float(losses.ms_ssim_l1_loss(a, b)))


def test_blur_bank_matches_scipy():
  z = np.random.default_rng(1).random((1, 20, 30, 2)).astype(np.float32)
  got = np.asarray(losses.gaussian_blur_bank(z, (1.0, 3.0), 13))
  for s_i, s in enumerate((1.0, 3.0)):
    for c in range(2):
      want = ndimage.correlate(
        z[0, ..., c].astype(np.float64), np.outer(_gauss(13, s), _gauss(13, s)), mode="constant"
      )
      np.testing.assert_allclose(got[0, ..., c, s_i], want, atol=1e-5)


def test_plain_losses():
  x = np.array([[0.0, 1.0], [2.0, 4.0]], np.float32)
  y = np.zeros_like(x)
  assert float(losses.mse(x, y)) == pytest.approx(21 / 4)
  np.testing.assert_allclose(losses.mse(x, y, reduction="per_example"), [0.5, 10.0])
  assert float(losses.mae(x, y, reduction="sum")) == pytest.approx(7.0)
  # torch's BCELoss clamps log at -100: p = 0 with target 1 costs exactly 100
  assert float(losses.bce(np.array([0.0]), np.array([1.0]))) == pytest.approx(100.0)
  p = np.array([0.2, 0.7], np.float32)
  t = np.array([1.0, 0.0], np.float32)
  want = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
  assert float(losses.bce(p, t)) == pytest.approx(want, rel=1e-6)
  logits = np.log(p / (1 - p))
  assert float(losses.bce_with_logits(logits, t)) == pytest.approx(want, rel=1e-5)
  with pytest.raises(ValueError, match="reduction"):
    losses.mse(x, y, reduction="avg")
