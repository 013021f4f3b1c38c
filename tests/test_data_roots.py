"""Data roots: a prepared set and the raw folder it came from feed every experiment the same data.

Tiny sets are written by the synthetic writers and prepared by `python -m aejax.data.prepare`; the
prepared and the raw source give the same pairs / clips / images for the same seed, up to JPEG
error: exactly the raw frames passed through the same JPEG encoder and decoder.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aejax.data import roots, synthetic
from aejax.data.images import decode_image
from aejax.data.prepare import encode_frame, main
from aejax.data.prepare_videos import PreparedVideos, video_folder
from aejax.data.sources import ImageFolderSource, VideoFiles


def jpeg(frames: np.ndarray, quality: int = 95) -> np.ndarray:
  """Frames [..., H, W, 3] through the JPEG encoder and decoder `prepare` uses."""
  flat = frames.reshape(-1, *frames.shape[-3:])
  return np.stack([decode_image(encode_frame(f, "jpeg", quality)) for f in flat]).reshape(frames.shape)


class JpegVideos:
  """A raw video collection whose frames go through JPEG: what preparing it at q95 stores."""

  def __init__(self, videos):
    self.videos = videos

  def __len__(self):
    return len(self.videos)

  def info(self, i):
    return self.videos.info(i)

  def read(self, i, indices):
    return jpeg(self.videos.read(i, indices))

  def __repr__(self):
    return f"JpegVideos({self.videos!r})"


def _same(raw: np.ndarray, prep: np.ndarray):
  """`prep` is `raw` up to JPEG error: exactly the JPEG round trip of `raw`."""
  assert raw.shape == prep.shape and raw.dtype == prep.dtype == np.uint8
  np.testing.assert_array_equal(jpeg(raw), prep)


@pytest.fixture
def jpeg_raw(monkeypatch):
  """`roots.videos` of a raw folder passes its frames through JPEG (prepared sets unchanged)."""
  real = roots.videos
  monkeypatch.setattr(
    roots,
    "videos",
    lambda root, **kw: JpegVideos(real(root, **kw)) if roots.prepared(root)[0] is None else real(root, **kw),
  )


@pytest.fixture(scope="module")
def video_roots(tmp_path_factory):
  """(raw Kinetics-style folder, its prepared set)."""
  tmp = tmp_path_factory.mktemp("videos")
  raw = tmp / "raw"
  synthetic.write_video_folder(raw, n=4, num_frames=20, size=(40, 48), classes=["jump", "swim"])
  assert (
    main(
      [
        "videos",
        "--src",
        str(raw),
        "--out",
        str(tmp / "prep"),
        "--workers",
        "1",
        "--quality",
        "95",
        "--videos-per-shard",
        "2",
      ]
    )
    == 0
  )
  return raw, tmp / "prep"


def test_layout_is_recognised(video_roots, tmp_path):
  raw, prep = video_roots
  assert roots.prepared(raw) == (None, raw)
  # The --out folder, the aejax_videos folder and the version folder prepare prints.
  for p in (prep, prep / "aejax_videos", video_folder(prep)):
    assert roots.prepared(p) == ("videos", prep)
  assert isinstance(roots.videos(prep), PreparedVideos)
  assert isinstance(roots.videos(video_folder(prep)), PreparedVideos)
  assert isinstance(roots.videos(raw), VideoFiles)
  with pytest.raises(ValueError, match="a prepared videos set, but images are needed"):
    roots.images(prep, "train")
  (tmp_path / "aejax_images").mkdir()
  with pytest.raises(ValueError, match="prepare videos"):
    roots.videos(tmp_path)


def test_siammae_pairs_prepared_equal_raw(video_roots, jpeg_raw):
  """Same seed: the same videos, frame indices, crops and flips; frames equal up to JPEG."""
  from experiments import siammae

  raw, prep = video_roots
  data = siammae.smoke().data
  data.update(image_size=24, batch_size=4, repeats=2, gap=(2, 8), worker_count=0)
  a, b = (siammae.train_source(_with_root(data, r)) for r in (raw, prep))
  assert len(a) == len(b) == 4
  for i in range(len(a)):
    ea, eb = a[i], b[i]
    np.testing.assert_array_equal(ea["frame_index"], eb["frame_index"])
    np.testing.assert_array_equal(ea["gap"], eb["gap"])
    np.testing.assert_array_equal(ea["frames"], eb["frames"])  # raw frames through JPEG
  # Through the real loader (crop + flip per pair): the same batches.
  ita, itb = (siammae.train_loader(_with_root(data, r)) for r in (raw, prep))
  for _ in range(3):
    ba, bb = next(ita), next(itb)
    assert ba["frames"].shape == (2, 2, 2, 24, 24, 3)  # [B/R, R, 2, S, S, 3]
    np.testing.assert_array_equal(ba["frame_index"], bb["frame_index"])
    np.testing.assert_array_equal(ba["frames"], bb["frames"])


def test_raw_frames_differ_from_prepared_only_by_jpeg(video_roots):
  raw, prep = video_roots
  a, b = roots.videos(raw), roots.videos(prep)
  for i in range(len(a)):
    fa, fb = a.read(i, [0, 7, 19]), b.read(i, [0, 7, 19])
    _same(fa, fb)
    assert not np.array_equal(fa, fb)  # lossy: the round trip is not the identity


def test_oval_and_3d_ae_clips_prepared_equal_raw(video_roots, jpeg_raw):
  from aejax.codec.oval_train import train_source
  from aejax.data.movingmnist import video_clips
  from experiments import oval

  raw, prep = video_roots
  data = oval.smoke().data
  data.update(batch_size=4, clip_len=4)
  (sa, la), (sb, lb) = [train_source(_with_root(data, r)) for r in (raw, prep)]
  assert la == lb == 4 and len(sa) == len(sb) == 4 * 5
  for i in (0, 1, 7, 19):
    np.testing.assert_array_equal(sa[i]["video"], sb[i]["video"])
  ca = video_clips(raw, 6, 4)
  cb = video_clips(prep, 6, 4)
  assert ca.shape == cb.shape == (6, 4, 64, 64, 1) and ca.dtype == np.uint8
  np.testing.assert_array_equal(ca, cb)


def _with_root(data, root):
  d = data.copy_and_resolve_references()
  d.root = str(root)
  return d


@pytest.fixture(scope="module")
def image_roots(tmp_path_factory):
  """(raw image folder in class folders, prepared unsplit, prepared 80/20 with seed 42)."""
  pytest.importorskip("tensorflow_datasets")
  tmp = tmp_path_factory.mktemp("images")
  raw = tmp / "raw"
  for k, im in enumerate(synthetic.textured_images(15, (20, 24), seed=3)):
    (raw / f"{k % 3:03d}.cls").mkdir(parents=True, exist_ok=True)
    Image.fromarray(im).save(raw / f"{k % 3:03d}.cls" / f"{k}.png")
  for name, frac in (("whole", "0"), ("split", "0.2")):
    assert (
      main(["images", "--src", str(raw), "--out", str(tmp / name), "--valid-fraction", frac, "--seed", "42"])
      == 0
    )
  return raw, tmp / "whole", tmp / "split"


def test_images_prepared_equal_raw(image_roots):
  from experiments import keyframes, vae

  raw, whole, split = image_roots
  for prep, frac in ((whole, 0.2), (whole, 0.4), (split, 0.2)):
    for s in ("train", "valid"):
      ref = ImageFolderSource(raw, split=s, valid_fraction=frac, seed=42)
      got = roots.images(prep, s, valid_fraction=frac, seed=42)
      assert len(got) == len(ref)
      for i in range(len(ref)):
        assert got[i]["label"] == ref[i]["label"] and got[i]["index"] == i
        _same(ref[i]["image"], got[i]["image"])
  # The experiments take the prepared set as their data root.
  kd = keyframes.smoke().data
  kd.update(root=str(whole), valid_fraction=0.2, split_seed=42)
  ktr, kva, _ = keyframes.image_sources(kd)
  vd = vae.smoke().data
  vd.update(root=str(split), valid_fraction=0.2, split_seed=42)
  vtr, vva = vae.image_sources(vd)
  assert (len(ktr), len(kva)) == (len(vtr), len(vva)) == (12, 3)
  np.testing.assert_array_equal(ktr[5]["image"], vtr[5]["image"])
  with pytest.raises(ValueError, match="a prepared images set, but videos"):
    roots.videos(whole)


def test_prepared_davis_propagates_as_the_raw_folder(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  from aejax import labelprop

  raw = synthetic.write_davis_like(
    tmp_path / "davis", num_sequences=2, num_frames=4, size=(32, 48), num_train=0
  )
  assert main(["davis", "--src", str(raw), "--out", str(tmp_path / "prep")]) == 0
  assert roots.davis_sequences(raw) == raw
  seqs = roots.davis_sequences(tmp_path / "prep")
  assert len(seqs) == 2

  def feats(x):  # colour of 4x4 cells as features
    t, h, w, _ = x.shape
    return x.reshape(t, h // 4, 4, w // 4, 4, 3).mean((2, 4))

  kw = dict(size=None, patch=4, context=2, topk=3, radius=3, log=None)
  a = labelprop.propagate_davis(feats, raw, tmp_path / "a", **kw)
  b = labelprop.propagate_davis(feats, seqs, tmp_path / "b", **kw)
  # The same sequences and ground truth; the frames differ by JPEG (q95 of 32x48 frames).
  assert abs(a["J&F-Mean"] - b["J&F-Mean"]) < 0.1 and 0.3 < b["J&F-Mean"] <= 1
  names = lambda d: sorted(str(p.relative_to(d)) for p in d.glob("synth-*/*.png"))  # noqa: E731
  assert names(tmp_path / "a") == names(tmp_path / "b") and len(names(tmp_path / "a")) == 8
