"""Grain random-access sources: image folders, arrays, video pairs and clips, DAVIS-2017, MovingMNIST.

Every source has `__len__`, `__getitem__` and a deterministic `__repr__` (Grain compares it when
restoring an iterator). Sources whose elements are random draws (video pairs, clips, generated
MovingMNIST) also have `random_getitem(index, rng)`: `make_loader` uses it so each epoch draws new
pairs, while `source[i]` stays a fixed function of (seed, i).

Bad files are skipped and counted (`.skipped`, and a JSON report when `report_path` is given);
a missing or empty dataset is a one-line error naming the path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aejax.data.images import (
  IMAGE_EXTENSIONS,
  ImageFolderSource,
  decode_image,
  load_image,
  split_indices,
  to_rgb_uint8,
)
from aejax.data.scan import VideoInfo, scan_videos, write_report
from aejax.data.sequences import DavisSource, MovingMNISTSource, read_indexed_png
from aejax.data.video import VideoReader

__all__ = [
  "IMAGE_EXTENSIONS",
  "ArraySource",
  "DavisSource",
  "ImageFolderSource",
  "MovingMNISTSource",
  "Subset",
  "VideoClipSource",
  "VideoFiles",
  "VideoPairSource",
  "as_videos",
  "decode_image",
  "load_image",
  "read_indexed_png",
  "split_indices",
  "to_rgb_uint8",
]

log = logging.getLogger(__name__)


class ArraySource:
  """In-memory arrays as a source: element i is `{k: v[i]}` (plus `index`)."""

  def __init__(self, arrays: dict[str, np.ndarray], name: str = ""):
    if not arrays:
      raise ValueError("ArraySource: no arrays given")
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    lens = {k: len(v) for k, v in self.arrays.items()}
    if len(set(lens.values())) != 1:
      raise ValueError(f"ArraySource: arrays differ in length: {lens}")
    self._n, self.name = next(iter(lens.values())), name

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    out = {k: v[int(index)] for k, v in self.arrays.items()}
    out.setdefault("index", np.int32(index))
    return out

  def __repr__(self) -> str:
    fields = ", ".join(f"{k}={v.dtype}{list(v.shape)}" for k, v in self.arrays.items())
    return f"ArraySource({self.name!r}, {fields})"


class Subset:
  """Elements `indices` of another source, renumbered: element i is `source[indices[i]]`
  with `index` = i (a seeded split of a prepared set, as `ImageFolderSource` splits a folder)."""

  def __init__(self, source, indices, name: str = ""):
    self.source, self.indices, self.name = source, np.asarray(indices, np.int64), name

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {**self.source[int(self.indices[int(index)])], "index": np.int32(index)}

  def __repr__(self) -> str:
    return f"Subset({self.source!r}, {self.name!r}, n={len(self.indices)})"


# ---------------------------------------------------------------------------------- videos


class VideoFiles:
  """A list of scanned video files with frame access: the collection behind pair/clip sources.

  Each thread keeps its own open `VideoReader` (FFmpeg decoders must not be shared between the
  threads Grain reads with).
  """

  def __init__(self, infos: Sequence[VideoInfo], root: str | Path = ""):
    self.infos, self.root = list(infos), str(root)
    self._local = threading.local()

  def __len__(self) -> int:
    return len(self.infos)

  def info(self, i: int) -> VideoInfo:
    """The `VideoInfo` of video `i`."""
    return self.infos[i]

  def _reader(self, i: int) -> VideoReader:
    info = self.infos[i]
    reader = getattr(self._local, "reader", None)
    if reader is None or str(reader.path) != info.path:
      if reader is not None:
        reader.close()
      reader = self._local.reader = VideoReader(info.path, num_frames=info.num_frames)
    return reader

  def read(self, i: int, indices: Sequence[int]) -> np.ndarray:
    """Frames `indices` of video `i`: uint8 [len(indices), H, W, 3]."""
    return self._reader(i).read(indices)

  def seek_points(self, i: int) -> np.ndarray:
    """The frames of video `i` a decode can start from (`VideoReader.seek_points`)."""
    return self._reader(i).seek_points()

  def __getstate__(self):
    return {k: v for k, v in self.__dict__.items() if k != "_local"}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._local = threading.local()

  def __repr__(self) -> str:
    return f"VideoFiles(root={self.root!r}, n={len(self.infos)})"


def as_videos(videos, **scan_kwargs):
  """A folder / file path, a list of `VideoInfo`, or a collection (`VideoFiles`, prepared)."""
  if isinstance(videos, (str, Path)):
    return VideoFiles(scan_videos(videos, **scan_kwargs), root=videos)
  if isinstance(videos, (list, tuple)):
    return VideoFiles(videos)
  return videos


def _fps_scale(fps: float, reference_fps: float | None) -> float:
  return 1.0 if not reference_fps or fps <= 0 else fps / reference_fps


class _VideoSampler:
  """Shared machinery: a video collection, per-video limits, skip-and-count, repeatable draws."""

  def _setup(self, videos, seed, report_path, need, scan_kwargs):
    self.videos = as_videos(videos, **scan_kwargs)
    self.seed = seed
    self.skipped: list[tuple[str, str]] = []
    self.keep = []
    for i in range(len(self.videos)):
      info = self.videos.info(i)
      reason = need(info)
      if reason:
        self.skipped.append((info.path, reason))
        log.warning("skipping %s: %s", info.path, reason)
      else:
        self.keep.append(i)
    if report_path is not None:
      write_report(report_path, getattr(self.videos, "root", ""), len(self.keep), self.skipped)
    if not self.keep:
      raise ValueError(
        f"{getattr(self.videos, 'root', '') or 'videos'}: no usable video "
        f"({self.skipped[0][1] if self.skipped else 'empty list'})"
      )

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return self.random_getitem(index, np.random.default_rng([self.seed, int(index)]))

  def random_getitem(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(self.keep)
    base = self._video_of(int(index))
    for k in range(n):
      v = self.keep[(base + k) % n]
      try:
        out = self._sample(v, rng)
      except (ValueError, OSError) as e:  # truncated / corrupt despite the scan: skip it
        log.warning("skipping %s", e)
        self.skipped.append((self.videos.info(v).path, str(e)))
        continue
      out["index"] = np.int32(index)
      return out
    raise ValueError(f"{getattr(self.videos, 'root', '') or 'videos'}: no video could be decoded")


class VideoPairSource(_VideoSampler):
  """Frame pairs (f1, f2) with f2 - f1 = gap drawn uniformly from `gap` frames at `reference_fps`.

  SiamMAE samples gaps of 4–48 frames at 30 fps; for a video at another fps the range is scaled
  by fps / 30. Videos not longer than the (scaled) minimum gap are skipped and counted.

  Elements: `frames` [2, H, W, 3] uint8 (or [R, 2, H, W, 3] with `repeats=R`: R pairs from one
  decoded video, the repeated sampling of MAE-ST/SiamMAE), `gap` int32 (or [R]), `frame_index`
  [2] int32 (or [R, 2]), `index`.

  `seek_window=w` (off by default) trades sampling fidelity for decoding cost on raw files: each
  pair's first frame is drawn among the frames at most `w` after a seek point (key frame) of the
  file instead of uniformly, so the decoder starts at or near it (a raw pair then costs about the
  gap in decoded frames, instead of up to a GOP more per frame). First frames then cluster after
  key frames (with a key frame every 30 frames and w=7, 8 of every 30 positions); gaps keep their
  distribution. Collections without `seek_points` (prepared sets: every frame is one) are
  sampled uniformly as before.
  """

  def __init__(
    self,
    videos,
    *,
    gap: tuple[int, int] = (4, 48),
    reference_fps: float | None = 30.0,
    repeats: int = 1,
    seed: int = 0,
    report_path: str | Path | None = None,
    seek_window: int | None = None,
    **scan_kwargs,
  ):
    if not 1 <= gap[0] <= gap[1]:
      raise ValueError(f"gap must satisfy 1 <= min <= max, got {gap}")
    if seek_window is not None and seek_window < 0:
      raise ValueError(f"seek_window must be >= 0 (or None), got {seek_window}")
    self.gap, self.reference_fps, self.repeats = tuple(gap), reference_fps, repeats
    self.seek_window = seek_window

    def need(info: VideoInfo) -> str:
      gmin = self._gaps(info)[0]
      if info.num_frames <= gmin:
        return f"shorter than the gap: {info.num_frames} frames <= gap {gmin}"
      return ""

    self._setup(videos, seed, report_path, need, scan_kwargs)

  def _gaps(self, info: VideoInfo) -> tuple[int, int]:
    s = _fps_scale(info.fps, self.reference_fps)
    gmin = max(1, int(round(self.gap[0] * s)))
    gmax = max(gmin, int(round(self.gap[1] * s)))
    return gmin, min(gmax, max(gmin, info.num_frames - 1))

  def __len__(self) -> int:
    return len(self.keep)

  def _video_of(self, index: int) -> int:
    return index % len(self.keep)

  def _sample(self, v: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    info = self.videos.info(v)
    gmin, gmax = self._gaps(info)
    gaps = rng.integers(gmin, gmax + 1, self.repeats)
    if self.seek_window is not None and hasattr(self.videos, "seek_points"):
      starts = _near_seek_points(self.videos.seek_points(v), self.seek_window, info.num_frames - gaps, rng)
    else:
      starts = rng.integers(0, info.num_frames - gaps)
    idx = np.stack([starts, starts + gaps], -1)  # [R, 2]
    frames = self.videos.read(v, idx.reshape(-1))  # [R * 2, H, W, 3]
    frames = frames.reshape(*idx.shape, *frames.shape[1:])  # [R, 2, H, W, 3]
    if self.repeats == 1:
      return {"frames": frames[0], "gap": np.int32(gaps[0]), "frame_index": idx[0].astype(np.int32)}
    return {"frames": frames, "gap": gaps.astype(np.int32), "frame_index": idx.astype(np.int32)}

  def __repr__(self) -> str:
    window = "" if self.seek_window is None else f", seek_window={self.seek_window}"
    return (
      f"VideoPairSource({self.videos!r}, gap={self.gap}, reference_fps={self.reference_fps}"
      f", repeats={self.repeats}, seed={self.seed}{window}, n={len(self.keep)})"
    )


def _near_seek_points(points: np.ndarray, window: int, limits: np.ndarray, rng: np.random.Generator):
  """One start per limit: uniform among the frames < limit at most `window` after a seek point
  (uniform below the limit when there is none)."""
  frames = np.arange(int(np.max(limits)))
  k = np.searchsorted(points, frames, side="right") - 1
  near = frames[(k >= 0) & (frames - points[np.maximum(k, 0)] <= window)]
  starts = []
  for limit in limits:
    ok = near[near < limit]
    starts.append(ok[rng.integers(len(ok))] if len(ok) else rng.integers(0, limit))
  return np.asarray(starts)


class VideoClipSource(_VideoSampler):
  """Clips of `num_frames` frames taken every `stride` frames.

  With `hop=None` each element is one clip at a random start in one video (len = number of
  videos); with `hop=k` the source enumerates every clip start 0, k, 2k, ... of every video.
  With `reference_fps`, the stride is scaled by fps / reference_fps (at least 1).

  Elements: `video` [T, H, W, 3] uint8, `label` int32 (class-folder index, -1 when flat),
  `start` int32, `index`.
  """

  def __init__(
    self,
    videos,
    *,
    num_frames: int = 16,
    stride: int = 1,
    hop: int | None = None,
    reference_fps: float | None = None,
    seed: int = 0,
    report_path: str | Path | None = None,
    **scan_kwargs,
  ):
    if num_frames < 1 or stride < 1:
      raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
    self.num_frames, self.stride, self.hop, self.reference_fps = num_frames, stride, hop, reference_fps

    def need(info: VideoInfo) -> str:
      span = self._span(info)
      return f"too short for a clip: {info.num_frames} < {span} frames" if info.num_frames < span else ""

    self._setup(videos, seed, report_path, need, scan_kwargs)
    labels = sorted({self.videos.info(i).label for i in self.keep} - {""})
    self.labels = {name: c for c, name in enumerate(labels)}
    if hop is not None:
      self.clips = [
        (v, s)
        for v in self.keep
        for s in range(0, self.videos.info(v).num_frames - self._span(self.videos.info(v)) + 1, hop)
      ]

  def _stride(self, info: VideoInfo) -> int:
    return max(1, int(round(self.stride * _fps_scale(info.fps, self.reference_fps))))

  def _span(self, info: VideoInfo) -> int:
    return (self.num_frames - 1) * self._stride(info) + 1

  def __len__(self) -> int:
    return len(self.clips) if self.hop is not None else len(self.keep)

  def _video_of(self, index: int) -> int:
    if self.hop is not None:
      return self.keep.index(self.clips[index][0])
    return index % len(self.keep)

  def _sample(self, v: int, rng: np.random.Generator, start: int | None = None) -> dict:
    info = self.videos.info(v)
    if start is None:
      start = int(rng.integers(0, info.num_frames - self._span(info) + 1))
    idx = start + self._stride(info) * np.arange(self.num_frames)
    return {
      "video": self.videos.read(v, idx),
      "start": np.int32(start),
      "label": np.int32(self.labels.get(info.label, -1)),
    }

  def random_getitem(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One clip: random start, or the `index`-th fixed clip when `hop` is set (unreadable videos skipped)."""
    if self.hop is None:
      return super().random_getitem(index, rng)
    n = len(self.clips)
    for k in range(n):
      v, s = self.clips[(int(index) + k) % n]
      try:
        return {**self._sample(v, rng, start=s), "index": np.int32(index)}
      except (ValueError, OSError) as e:  # truncated / corrupt despite the scan: skip it
        log.warning("skipping %s", e)
        self.skipped.append((self.videos.info(v).path, str(e)))
    raise ValueError(f"{getattr(self.videos, 'root', '') or 'videos'}: no video could be decoded")

  def __repr__(self) -> str:
    return (
      f"VideoClipSource({self.videos!r}, num_frames={self.num_frames}, stride={self.stride}"
      f", hop={self.hop}, reference_fps={self.reference_fps}, seed={self.seed}, "
      f"n={len(self)})"
    )
