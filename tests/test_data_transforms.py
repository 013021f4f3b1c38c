"""Transforms: aligned spatial ops on pairs/clips/masks, colour spaces, noise, normalisation."""

from __future__ import annotations

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.data import transforms as T


def _all_colours(n=6000, seed=0):
  rng = np.random.default_rng(seed)
  u8 = rng.integers(0, 256, (n, 3)).astype(np.uint8)
  corners = np.array([[a, b, c] for a in (0, 255) for b in (0, 255) for c in (0, 255)], np.uint8)
  grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1)
  return np.concatenate([u8, corners, grey])


@pytest.mark.parametrize("space", T.SPACES)
def test_colour_round_trip_uint8(space):
  u8 = _all_colours()
  x = u8.astype(np.float64) / 255
  back = T.convert_color_inverse(T.convert_color(x, space), space)
  assert np.abs(np.rint(back * 255) - u8).max() <= 1
  xj = jnp.asarray(x, jnp.float32)
  yj = T.convert_color(xj, space)
  np.testing.assert_allclose(np.asarray(yj), T.convert_color(x, space), atol=2e-5)
  backj = np.asarray(T.convert_color_inverse(yj, space))
  assert np.abs(np.rint(backj * 255) - u8).max() <= 1
  # Usable inside jitted, differentiated model code.
  jitted = jax.jit(lambda a: T.convert_color_inverse(T.convert_color(a, space), space))
  np.testing.assert_allclose(np.asarray(jitted(xj[:64])), x[:64], atol=1e-5)
  grad = jax.grad(lambda a: T.convert_color(a, space).sum())(xj[:64])
  assert bool(jnp.isfinite(grad).all())


def test_colour_spaces_match_opencv_and_known_values():
  img = _all_colours(4096)[:4096].reshape(64, 64, 3)
  x = img.astype(np.float32) / 255
  hsv_cv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # H in degrees
  hsv = T.convert_color(x.astype(np.float64), "hsv")
  np.testing.assert_allclose(hsv[..., 0] * 360, hsv_cv[..., 0], atol=1e-2)
  np.testing.assert_allclose(hsv[..., 1:], hsv_cv[..., 1:], atol=1e-5)
  ycc_cv = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float64)  # Y, Cr, Cb in uint8
  ycc = T.convert_color(x.astype(np.float64), "ycbcr") * 255
  assert np.abs(ycc[..., [0, 2, 1]] - ycc_cv).max() <= 1.5  # OpenCV rounds in fixed point
  lab_cv = cv2.cvtColor(x, cv2.COLOR_RGB2Lab)  # L in [0, 100], a/b unshifted
  lab = T.convert_color(x.astype(np.float64), "lab")
  np.testing.assert_allclose(lab[..., 0] * 100, lab_cv[..., 0], atol=0.5)
  np.testing.assert_allclose(lab[..., 1:] * 255 - 128, lab_cv[..., 1:], atol=0.5)
  white, red = np.ones(3), np.array([1.0, 0, 0])
  np.testing.assert_allclose(T.convert_color(red, "hsv"), [0, 1, 1])
  np.testing.assert_allclose(T.convert_color(white, "ycbcr"), [1, 0.5, 0.5], atol=1e-6)
  np.testing.assert_allclose(T.convert_color(white, "lab"), [1, 128 / 255, 128 / 255], atol=2e-4)
  np.testing.assert_array_equal(T.convert_color(red, "bgr"), [0, 0, 1])
  with pytest.raises(ValueError, match="colour space"):
    T.convert_color(red, "xyz")


def _ramp_pair(h=40, w=56):
  rng = np.random.default_rng(0)
  f0 = rng.integers(0, 200, (h, w, 3)).astype(np.uint8)
  return np.stack([f0, f0 + 30])  # second frame = first + 30 everywhere


def _assert_offset(a, b, k):
  """a - b == k up to OpenCV's fixed-point interpolation rounding (±1 here and there)."""
  d = a.astype(int) - b
  assert np.abs(d - k).max() <= 1 and abs(d.mean() - k) < 0.1


def test_random_resized_crop_identical_for_pair_and_clip():
  frames = _ramp_pair()
  video = np.stack([frames[0] + t for t in range(5)])
  t = T.RandomResizedCrop((24, 24), scale=(0.3, 0.9))
  for seed in range(5):
    out = t.random_map({"frames": frames, "video": video}, np.random.default_rng(seed))
    f, v = out["frames"], out["video"]
    assert f.shape == (2, 24, 24, 3) and v.shape == (5, 24, 24, 3)
    # Same box for every frame and entry: resizing is linear, so the +30 offset survives.
    _assert_offset(f[1], f[0], 30)
    for k in range(5):
      _assert_offset(v[k], v[0], k)
    np.testing.assert_array_equal(v[0], f[0])


def test_random_resized_crop_matches_reference_box_and_mask_alignment():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 4, (10, 14)).repeat(4, 0).repeat(4, 1).astype(np.uint8)  # [40, 56]
  image = np.repeat(ids[..., None] * 60, 3, -1).astype(np.uint8)
  t = T.RandomResizedCrop((20, 28), scale=(0.4, 1.0))
  out = t.random_map({"image": image, "mask": ids}, np.random.default_rng(3))
  y0, x0, ch, cw = T.sample_crop(np.random.default_rng(3), 40, 56, (0.4, 1.0), (3 / 4, 4 / 3))
  ref = cv2.resize(image[y0 : y0 + ch, x0 : x0 + cw], (28, 20), interpolation=cv2.INTER_AREA)
  np.testing.assert_array_equal(out["image"], ref)
  ref_m = cv2.resize(ids[y0 : y0 + ch, x0 : x0 + cw], (28, 20), interpolation=cv2.INTER_NEAREST)
  np.testing.assert_array_equal(out["mask"], ref_m)
  assert out["mask"].dtype == np.uint8 and set(np.unique(out["mask"])) <= {0, 1, 2, 3}


def test_sample_crop_respects_scale_and_ratio():
  rng = np.random.default_rng(0)
  for _ in range(200):
    y0, x0, ch, cw = T.sample_crop(rng, 120, 160, (0.5, 1.0), (3 / 4, 4 / 3))
    assert 0 <= y0 and y0 + ch <= 120 and 0 <= x0 and x0 + cw <= 160
    assert 0.48 <= ch * cw / (120 * 160) <= 1.0
    assert 0.73 <= cw / ch <= 1.36


def test_repeated_pairs_get_independent_crops_and_flips():
  f = _ramp_pair(32, 32)
  frames = np.stack([f] * 8)  # [R=8, 2, H, W, 3]
  crop = T.RandomResizedCrop(16, scale=(0.2, 0.6))
  out = crop.random_map({"frames": frames}, np.random.default_rng(0))["frames"]
  assert out.shape == (8, 2, 16, 16, 3)
  _assert_offset(out[:, 1], out[:, 0], 30)  # aligned within a pair
  assert len({out[r, 0].tobytes() for r in range(8)}) > 1  # independent between pairs
  flip = T.RandomFlip(0.5).random_map({"frames": frames}, np.random.default_rng(1))["frames"]
  flipped = [np.array_equal(flip[r], frames[r][:, :, ::-1]) for r in range(8)]
  kept = [np.array_equal(flip[r], frames[r]) for r in range(8)]
  assert all(a or b for a, b in zip(flipped, kept)) and any(flipped) and any(kept)


def test_flip_resize_center_crop():
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
  m = rng.integers(0, 3, (30, 40)).astype(np.uint8)
  out = T.RandomFlip(1.0).random_map({"image": img, "mask": m}, rng)
  np.testing.assert_array_equal(out["image"], img[:, ::-1])
  np.testing.assert_array_equal(out["mask"], m[:, ::-1])
  same = T.RandomFlip(0.0).random_map({"image": img}, rng)
  np.testing.assert_array_equal(same["image"], img)
  assert T.Resize(15).map({"image": img})["image"].shape == (15, 20, 3)
  r = T.Resize((10, 10)).map({"video": np.stack([img, img]), "mask": m})
  assert r["video"].shape == (2, 10, 10, 3) and r["mask"].shape == (10, 10)
  np.testing.assert_array_equal(r["video"][0], cv2.resize(img, (10, 10), interpolation=cv2.INTER_AREA))
  c = T.CenterCrop((10, 20)).map({"image": img, "mask": m})
  np.testing.assert_array_equal(c["image"], img[10:20, 10:30])
  np.testing.assert_array_equal(c["mask"], m[10:20, 10:30])
  with pytest.raises(ValueError, match="smaller than the crop"):
    T.CenterCrop(64).map({"image": img})


def test_to_float_normalize_noise_colorspace():
  img = np.array([[[0, 51, 255]]], np.uint8)
  e = T.ToFloat().map({"image": img, "mask": np.ones((1, 1), np.uint8)})
  np.testing.assert_allclose(e["image"], [[[0, 0.2, 1.0]]], atol=1e-7)
  assert e["image"].dtype == np.float32 and e["mask"].dtype == np.uint8
  n = T.Normalize((0.5, 0.5, 0.5), (0.25, 0.5, 1.0)).map(e)
  np.testing.assert_allclose(n["image"], [[[-2.0, -0.6, 0.5]]], atol=1e-6)
  with pytest.raises(ValueError, match="ToFloat"):
    T.Normalize().map({"image": img})
  x = {"image": np.full((64, 64, 3), 0.5, np.float32)}
  noisy = T.GaussianNoise(0.1).random_map(x, np.random.default_rng(0))["image"]
  assert abs((noisy - 0.5).std() - 0.1) < 0.005 and abs((noisy - 0.5).mean()) < 0.005
  clipped = T.GaussianNoise(1.0).random_map(x, np.random.default_rng(0))["image"]
  assert clipped.min() == 0.0 and clipped.max() == 1.0
  hsv = T.ColorSpace("hsv").map({"image": e["image"]})["image"]
  np.testing.assert_allclose(hsv, T.convert_color(e["image"], "hsv"), atol=1e-6)
