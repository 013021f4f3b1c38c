"""Data-path CPU knobs: single-threaded decode and OpenCV in loader workers, the quick container
probe of random-access reads, OpenCV flips, transforms writing into one array, small batch arrays
pickled from workers."""

from __future__ import annotations

import dataclasses
import threading

import cv2
import numpy as np
import pytest

from aejax.data import transforms as T
from aejax.data import video
from aejax.data.pipeline import SHM_MIN_BYTES, make_loader
from aejax.data.sources import ArraySource

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  """A small H.264 file with B-frames and several GOPs."""
  rng = np.random.default_rng(0)
  base = rng.integers(0, 255, (48, 64, 3), np.uint8)
  frames = np.stack([np.roll(base, 2 * t, axis=1) for t in range(40)])
  path = tmp_path_factory.mktemp("clip") / "c.mp4"
  return video.write_video(path, frames, 30, codec="libx264", options={"g": 10, "bf": 2})


def test_quick_probe_reads_the_header_only(clip):
  full_c, full_s = video._open(clip)
  quick_c, quick_s = video._open(clip, quick=True)
  try:
    assert full_s.codec_context.format is not None  # the full probe decoded a frame
    assert quick_s.codec_context.format is None  # the quick one decoded nothing
    for s in (full_s, quick_s):
      assert s.codec_context.thread_count == 1  # one decoder thread: loader workers parallelise
    header = lambda c, s: (s.codec_context.width, s.codec_context.height, s.average_rate, s.frames)
    assert header(quick_c, quick_s) == header(full_c, full_s)
  finally:
    full_c.close()
    quick_c.close()
  r = video.VideoReader(clip)
  assert r._s.codec_context.thread_count == 1
  seq, _ = video.read_frames(clip)  # full probe, sequential decode
  idx = [39, 0, 17, 18, 5, 31]
  np.testing.assert_array_equal(r.read(idx), seq[idx])


def _flip_cases():
  rng = np.random.default_rng(1)
  yield rng.integers(0, 255, (7, 9, 3), np.uint8)
  yield rng.integers(0, 255, (7, 9, 1), np.uint8)  # OpenCV drops a trailing 1-channel axis
  yield rng.integers(0, 255, (7, 9), np.uint8)
  yield rng.random((7, 9, 3)).astype(np.float32)
  yield rng.integers(-5, 5, (7, 9), np.int64)  # no OpenCV depth: NumPy
  yield rng.random((7, 9)) > 0.5  # bool: NumPy


@pytest.mark.parametrize("f", list(_flip_cases()), ids=lambda f: f"{f.dtype}{list(f.shape)}")
def test_hflip_equals_numpy(f):
  want = f[:, ::-1]
  got = T._hflip(f)
  assert got.dtype == f.dtype and got.flags.c_contiguous
  np.testing.assert_array_equal(got, want)
  dst = np.zeros_like(f)
  out = T._hflip(f, dst)
  np.testing.assert_array_equal(out.reshape(f.shape), want)


def test_crop_and_flip_of_repeated_pairs_match_a_direct_computation():
  """[R, 2, H, W, C]: one box and one flip per pair, drawn in pair order (the documented draws)."""
  rng0 = np.random.default_rng(2)
  frames = rng0.integers(0, 255, (3, 2, 60, 80, 3), np.uint8)
  crop, flip = T.RandomResizedCrop(32, scale=(0.3, 1.0)), T.RandomFlip()
  cropped = crop.random_map({"frames": frames}, np.random.default_rng(9))
  out = flip.random_map(cropped, np.random.default_rng(4))
  assert out["frames"].shape == (3, 2, 32, 32, 3) and out["frames"].flags.c_contiguous
  draws, flips = np.random.default_rng(9), np.random.default_rng(4)
  for g in range(3):
    y0, x0, h, w = T.sample_crop(draws, 60, 80, (0.3, 1.0), (3 / 4, 4 / 3))
    flipped = flips.uniform() < 0.5
    for k in range(2):
      c = np.ascontiguousarray(frames[g, k, y0 : y0 + h, x0 : x0 + w])
      interp = cv2.INTER_AREA if h > 32 and w > 32 else cv2.INTER_LINEAR
      want = cv2.resize(c, (32, 32), interpolation=interp)
      np.testing.assert_array_equal(out["frames"][g, k], want[:, ::-1] if flipped else want)


@dataclasses.dataclass
class _Report:
  """An element transform that records, in the process that runs it, what the data path runs with."""

  path: str

  def __call__(self, element):
    reader = video.VideoReader(self.path)
    prefetch = [t for t in threading.enumerate() if t.name.startswith("grain-prefetch")]
    return {
      **element,
      "cv2_threads": np.int32(cv2.getNumThreads()),
      "decoder_threads": np.int32(reader._s.codec_context.thread_count),
      "read_threads": np.int32(len(prefetch)),
      "big": np.zeros(SHM_MIN_BYTES, np.uint8),
    }


def test_worker_processes_run_single_threaded(clip):
  src = ArraySource({"label": np.arange(8, dtype=np.int32)}, name="threads")
  it = make_loader(src, batch_size=2, transforms=[_Report(str(clip))], worker_count=1)
  try:
    b = next(it)
  finally:
    it.close()
  assert b["cv2_threads"].tolist() == [1, 1]
  assert b["decoder_threads"].tolist() == [1, 1]
  assert b["read_threads"].tolist() == [1, 1]  # num_threads=None: one read thread per worker
  assert type(b["label"]) is np.ndarray  # small arrays come back pickled
  assert type(b["big"]).__name__ == "SharedMemoryArray"  # large ones through shared memory
