"""Embedded synthetic sets: determinism, structure, and the properties the experiments rely on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aejax.data import synthetic
from aejax.data.scan import scan_videos
from aejax.data.video import VideoReader


def test_textured_images_deterministic_and_natural():
  a = synthetic.textured_images(4, (48, 64), seed=3)
  b = synthetic.textured_images(4, (48, 64), seed=3)
  c = synthetic.textured_images(4, (48, 64), seed=4)
  assert a.shape == (4, 48, 64, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)
  assert np.abs(a.astype(int) - c).mean() > 10
  # Image i depends on (seed, i) only.
  np.testing.assert_array_equal(synthetic.textured_images(2, (48, 64), seed=3), a[:2])
  assert all(img.std() > 10 for img in a)
  # Natural-image-like spectrum: power falls with frequency (low band >> high band).
  g = a.astype(np.float64).mean(-1)
  p = np.abs(np.fft.fft2(g - g.mean(axis=(1, 2), keepdims=True))) ** 2
  f = np.hypot(*np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(48)))
  low, high = p[:, (f > 0) & (f < 0.1)].mean(), p[:, f > 0.35].mean()
  assert low > 20 * high


def test_shapes_video_masks_motion_and_scaling():
  d = synthetic.shapes_video(40, (64, 80), num_objects=3, seed=1)
  v, m = d["video"], d["masks"]
  assert v.shape == (40, 64, 80, 3) and m.shape == (40, 64, 80)
  assert v.dtype == np.uint8 and m.dtype == np.uint8
  assert set(np.unique(m)) <= {0, 1, 2, 3}
  np.testing.assert_array_equal(synthetic.shapes_video(40, (64, 80), 3, seed=1)["video"], v)
  areas = np.stack([(m == k).sum((1, 2)) for k in (1, 2, 3)], -1)  # [T, K]
  assert (areas.max(0) > 0).all()  # every object is visible at some time
  # Smooth motion: the background and objects move a little per frame, far less than a cut.
  step = np.abs(np.diff(v.astype(np.float32), axis=0)).mean()
  other = synthetic.shapes_video(40, (64, 80), 3, seed=2)["video"]
  assert step < 0.4 * np.abs(v.astype(np.float32) - other).mean()
  # Object centroids move by at most a few pixels per frame.
  for k in (1, 2, 3):
    ys, xs = [], []
    for t in range(40):
      yy, xx = np.nonzero(m[t] == k)
      if len(yy) > 50:
        ys.append(yy.mean())
        xs.append(xx.mean())
    if len(ys) > 2:
      assert np.abs(np.diff(ys)).max() < 8 and np.abs(np.diff(xs)).max() < 8
  # Objects change size over time (scaling and occlusion).
  assert (areas.max(0) / np.maximum(areas.min(0), 1)).max() > 1.2


def test_shapes_video_objects_occlude():
  d = synthetic.SyntheticVideo((64, 80), num_objects=4, seed=3).render(40, amodal=True)
  vis = np.stack([d["masks"] == k for k in range(1, 5)], 1)  # [T, K, H, W]
  amodal = d["amodal"]
  assert amodal.shape == vis.shape
  assert not (vis & ~amodal).any()  # visible pixels lie inside the object's silhouette
  hidden = (amodal & ~vis).sum((2, 3))  # [T, K] pixels hidden by objects in front
  assert hidden[:, -1].max() == 0  # the front object is never occluded
  assert hidden[:, :-1].max() > 20  # objects behind are occluded at times
  np.testing.assert_array_equal(d["video"], synthetic.shapes_video(40, (64, 80), 4, seed=3)["video"])


def test_scene_cut_video_records_cuts():
  d = synthetic.scene_cut_video(36, (48, 64), num_shots=4, seed=2)
  assert d["video"].shape == (36, 48, 64, 3)
  cuts = d["cuts"]
  assert len(cuts) == 3 and cuts == sorted(cuts) and 0 < cuts[0] and cuts[-1] < 36
  np.testing.assert_array_equal(np.flatnonzero(np.diff(d["shot_ids"])) + 1, cuts)
  diff = np.abs(np.diff(d["video"].astype(np.float32), axis=0)).mean((1, 2, 3))  # [T-1]
  at_cut = diff[np.asarray(cuts) - 1]
  within = np.delete(diff, np.asarray(cuts) - 1)
  assert at_cut.min() > 3 * within.max()
  with pytest.raises(ValueError, match="num_shots"):
    synthetic.scene_cut_video(2, 16, num_shots=3)


def test_write_davis_like_layout_and_palette(tmp_path):
  root = synthetic.write_davis_like(
    tmp_path / "davis", num_sequences=3, num_frames=4, size=(40, 56), seed=0, num_train=1
  )
  seqs = synthetic.davis_like(3, 4, (40, 56), seed=0)
  sets = root / "ImageSets" / "2017"
  assert (sets / "train.txt").read_text().split() == [seqs[0]["name"]]
  assert (sets / "val.txt").read_text().split() == [s["name"] for s in seqs[1:]]
  for s in seqs:
    jpgs = sorted((root / "JPEGImages" / "480p" / s["name"]).glob("*.jpg"))
    pngs = sorted((root / "Annotations" / "480p" / s["name"]).glob("*.png"))
    assert [p.name for p in jpgs] == [f"{t:05d}.jpg" for t in range(4)]
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(4)]
    with Image.open(pngs[2]) as im:
      assert im.mode == "P"
      np.testing.assert_array_equal(np.asarray(im), s["masks"][2])
      pal = np.asarray(im.getpalette()[:9]).reshape(3, 3)
    np.testing.assert_array_equal(pal, [[0, 0, 0], [128, 0, 0], [0, 128, 0]])
    jpg = np.asarray(Image.open(jpgs[1]).convert("RGB"), np.float32)
    assert np.abs(jpg - s["video"][1]).mean() < 12  # JPEG quality 95, 4:2:0 chroma


def test_davis_palette_matches_voc_colormap():
  p = synthetic.DAVIS_PALETTE
  assert p.shape == (256, 3)
  np.testing.assert_array_equal(
    p[:6], [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128]]
  )
  assert len({tuple(c) for c in p}) == 256


def test_moving_digits_generator_rules():
  # One all-255 28x28 "digit": every frame holds exactly one 28x28 square inside the canvas.
  digit = np.full((1, 28, 28), 255, np.uint8)
  d = synthetic.moving_digits(3, num_frames=20, size=64, num_digits=1, seed=0, digits=(digit, np.array([7])))
  v = d["video"][..., 0]
  assert d["video"].shape == (3, 20, 64, 64, 1) and (d["labels"] == 7).all()
  assert ((v > 0).sum((2, 3)) == 784).all()
  pos = np.array([[np.argwhere(f)[0] for f in seq] for seq in v])  # [n, T, 2] top-left corner
  assert ((pos >= 0) & (pos <= 36)).all()
  assert np.abs(np.diff(pos, axis=1)).max() <= 5  # step 0.1 of the 36-px range, rounded
  # Labels follow the digits: digits of constant value = label, one digit per sequence.
  imgs = np.stack([np.full((28, 28), 10 * (k + 1), np.uint8) for k in range(10)])
  d = synthetic.moving_digits(6, num_digits=1, digits=(imgs, np.arange(10)), seed=1)
  np.testing.assert_array_equal(d["video"].max((1, 2, 3, 4)), 10 * (d["labels"][:, 0] + 1))
  # Two digits combine by maximum, deterministic by seed.
  a = synthetic.moving_digits(2, seed=5)
  np.testing.assert_array_equal(a["video"], synthetic.moving_digits(2, seed=5)["video"])
  assert a["labels"].shape == (2, 2) and set(a["labels"].ravel()) <= set(range(10))


def test_procedural_digits_centred_like_mnist():
  imgs, labels = synthetic.procedural_digits(per_class=3, seed=0)
  assert imgs.shape == (30, 28, 28) and imgs.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(labels), [3] * 10)
  for im in imgs:
    ys, xs = np.nonzero(im > 30)
    assert ys.max() - ys.min() <= 21 and xs.max() - xs.min() <= 21
    cy, cx = np.array(np.nonzero(im)).mean(1)
    assert abs(cy - 14) < 3 and abs(cx - 14) < 3


def test_write_video_folder_kinetics_layout(tmp_path):
  paths = synthetic.write_video_folder(
    tmp_path / "vids", n=3, num_frames=12, size=(32, 48), fps=25.0, classes=["a", "b"], seed=0
  )
  assert [p.parent.name for p in paths] == ["a", "b", "a"]
  infos = scan_videos(tmp_path / "vids", cache_path=False)
  assert [(i.label, i.num_frames, i.height, i.width) for i in infos] == [
    ("a", 12, 32, 48),
    ("a", 12, 32, 48),
    ("b", 12, 32, 48),
  ]
  assert all(abs(i.fps - 25.0) < 1e-3 for i in infos)
  ref = synthetic.shapes_video(12, (32, 48), seed=0)["video"]
  got = VideoReader(paths[0]).read([5])[0]
  assert np.abs(got.astype(np.float32) - ref[5]).mean() < 15  # mp4v is lossy
