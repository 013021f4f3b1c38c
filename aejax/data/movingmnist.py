"""MovingMNIST clips for the 3D autoencoder: generated, the original file, or grey clips of videos.

`load_clips(data)` reads the experiment's `data` config (`aejax.data.digits` draws the bouncing
digits):

* `source="generated"` over `digits` = an MNIST `.npz` path (the real digits; `find_mnist` gives the
  project's copy): training clips over `x_train`, validation clips over `x_test`, so no validation
  digit was seen in training; `digits` = None or "procedural": the embedded digits, one set of
  `num_clips` clips split 80/20 by `split_seed`.
* `source=PATH` of the original `mnist_test_seq.npy` ([T, N, 64, 64]) or a video folder / prepared
  `aejax_videos` set (consecutive `num_frames`-frame clips, grey, resized to 64x64), split 80/20;
  their digit labels are unknown (-1).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from aejax.data import roots
from aejax.data.digits import moving_digits
from aejax.data.sources import MovingMNISTSource, VideoClipSource

FRAME = (64, 64, 1)  # MovingMNIST frames [H, W, C]


def grey_frame(frame: np.ndarray, size=FRAME[:2]) -> np.ndarray:
  """An RGB (or grey) uint8 frame -> grey [H, W, 1] uint8 at `size` (area resampling)."""
  g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 and frame.shape[-1] == 3 else frame
  g = g.reshape(g.shape[:2])
  return cv2.resize(g, tuple(size)[::-1], interpolation=cv2.INTER_AREA)[..., None]


def video_clips(root, num_clips: int, num_frames: int) -> np.ndarray:
  """Up to `num_clips` clips [N, num_frames, 64, 64, 1] uint8 (grey) of the videos under `root`."""
  src = VideoClipSource(roots.videos(root), num_frames=num_frames, hop=num_frames)
  out = [np.stack([grey_frame(f) for f in src[i]["video"]]) for i in range(min(num_clips, len(src)))]
  return np.stack(out) if out else np.zeros((0, num_frames, *FRAME), np.uint8)


def frames_to_clips(frames: Iterable[np.ndarray], num_frames: int) -> Iterator[np.ndarray]:
  """Streams frames (RGB or grey) as consecutive grey 64x64 clips [num_frames, 64, 64, 1] uint8;
  a last partial clip is dropped."""
  buf = []
  for f in frames:
    buf.append(grey_frame(f))
    if len(buf) == num_frames:
      yield np.stack(buf)
      buf = []


def _split(clips: dict, valid_fraction: float, seed: int) -> dict:
  n = len(clips["video"])
  if n < 2:
    raise ValueError(f"need at least 2 clips, got {n}")
  perm = np.random.default_rng(seed).permutation(n)
  n_valid = max(1, int(round(valid_fraction * n)))
  return {
    split: {k: v[idx] for k, v in clips.items()}
    for split, idx in (("train", perm[n_valid:]), ("valid", perm[:n_valid]))
  }


def load_clips(data) -> dict:
  """MovingMNIST clips of the `data` config: {train, valid} -> {video [N,T,64,64,1] uint8, labels}.

  `data` has `source`, `digits`, `num_clips`, `num_frames`, `num_digits`, `valid_fraction`,
  `split_seed` (see the module docstring).
  """
  d = data
  if d.source == "generated":
    gen = lambda n, seed, split="train": moving_digits(
      n, d.num_frames, FRAME[0], d.num_digits, seed=seed, digits=d.digits, split=split
    )
    if isinstance(d.digits, (str, Path)) and str(d.digits) not in ("", "procedural"):
      # training clips over the training digits, validation clips over the test digits
      n_valid = max(1, int(round(d.valid_fraction * d.num_clips)))
      train = gen(d.num_clips - n_valid, d.split_seed)
      return {"train": train, "valid": gen(n_valid, d.split_seed + 1, "test")}
    clips = gen(d.num_clips, d.split_seed)
  elif Path(d.source).is_dir():
    clips = {"video": video_clips(d.source, d.num_clips, d.num_frames)}
  else:
    src = MovingMNISTSource(d.source)
    clips = {"video": np.stack([src[i]["video"][: d.num_frames] for i in range(min(d.num_clips, len(src)))])}
  clips.setdefault("labels", np.full((len(clips["video"]), d.num_digits), -1, np.int32))
  try:
    return _split(clips, d.valid_fraction, d.split_seed)
  except ValueError as e:
    raise ValueError(f"{d.source}: {e}") from None


def clip_stream(*, video=None, clips=None, num_frames: int = 20) -> tuple[Iterator[np.ndarray], float | None]:
  """(clips [T, 64, 64, 1] uint8 one at a time, the source's fps or None) of a video file (cut into
  consecutive grey clips of `num_frames`, streamed) or a `.npy` of uint8 clips [N, T, 64, 64(, 1)]."""
  from aejax.data.video import VideoReader, iter_frames

  if video:
    with VideoReader(video) as r:
      fps = r.fps or None
    return frames_to_clips(iter_frames(video), num_frames), fps
  arr = np.load(clips, mmap_mode="r")
  if arr.dtype != np.uint8 or arr.ndim not in (4, 5) or arr.shape[2:4] != FRAME[:2]:
    raise ValueError(f"{clips}: expected uint8 clips [N, T, 64, 64(, 1)], got {arr.dtype} {arr.shape}")
  return (np.asarray(c).reshape(*c.shape[:3], 1) for c in arr), None
