"""Every video read and write of aejax: a frame reader, a sampled stream, a camera, a streaming
writer (atomic), and a cached, validating folder scan. Nothing else in the package opens videos.

OpenCV's `CAP_PROP_FRAME_COUNT` is unreliable (it reports 444 frames for a 68-frame cinepak AVI
and 1 for a 79-frame MPEG-1 file in `../shared/realdata/videos`), so the scan counts frames by
grabbing them once and caches the result beside the dataset (or in `cache_path`). Validation
replaces the shell scripts of the SiamMAE replication: corrupt, too-short and wrong-fps files are
dropped and listed in a written report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mpeg", ".mpg", ".mov", ".m4v")
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG",
          ".webm": "VP90"}
CACHE_NAME = ".aejax_video_index.json"

log = logging.getLogger(__name__)


def _open_capture(path: Path) -> cv2.VideoCapture:
  if not path.exists():
    raise FileNotFoundError(f"{path}: video file not found")
  if path.is_dir():
    raise ValueError(f"{path}: is a folder, not a video file")
  if path.stat().st_size == 0:
    raise ValueError(f"{path}: empty (zero-byte) video file")
  cap = cv2.VideoCapture(str(path))
  if not cap.isOpened():
    raise ValueError(f"{path}: OpenCV cannot open this video (corrupt or unsupported codec)")
  return cap


def count_frames(path: str | Path) -> int:
  """Decodable frame count, by grabbing every frame (the container's count is not trusted)."""
  cap = _open_capture(Path(path))
  n = 0
  while cap.grab():
    n += 1
  cap.release()
  return n


class VideoReader:
  """Random-access frames of one video file, decoded by OpenCV, as RGB uint8.

  Frames are decoded sequentially (seeking is unreliable across codecs); reading indices in
  increasing order reuses the open decoder, going backwards reopens the file.

  Args:
    path: the video file.
    num_frames: the frame count when already known (e.g. from `scan_videos`); counted lazily
      otherwise.
  """

  def __init__(self, path: str | Path, num_frames: int | None = None):
    self.path = Path(path)
    cap = _open_capture(self.path)
    self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 0.0
    self.size = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    self._cap, self._pos = cap, 0
    self._num_frames = num_frames

  @property
  def num_frames(self) -> int:
    if self._num_frames is None:
      self._num_frames = count_frames(self.path)
    return self._num_frames

  def __len__(self) -> int:
    return self.num_frames

  def __repr__(self) -> str:
    return f"VideoReader({str(self.path)!r})"

  def _rewind(self) -> None:
    if self._cap is not None:
      self._cap.release()
    self._cap, self._pos = _open_capture(self.path), 0

  def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Frames at `indices` (any order, repeats allowed): [len(indices), H, W, 3] uint8 RGB.

    Raises:
      ValueError: naming the file when a frame cannot be decoded (truncated or corrupt file).
    """
    indices = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not indices:
      return np.zeros((0, *self.size, 3), np.uint8)
    if min(indices) < 0:
      raise IndexError(f"{self.path}: negative frame index {min(indices)}")
    wanted = sorted(set(indices))
    if self._cap is None or wanted[0] < self._pos:
      self._rewind()
    got: dict[int, np.ndarray] = {}
    for idx in wanted:
      while self._pos < idx:
        if not self._cap.grab():
          raise ValueError(f"{self.path}: cannot decode frame {self._pos} (file has fewer "
                           f"frames than requested or is truncated)")
        self._pos += 1
      ok, frame = self._cap.read()
      if not ok or frame is None:
        raise ValueError(f"{self.path}: cannot decode frame {idx} (file has fewer frames than "
                         f"requested or is truncated)")
      self._pos += 1
      got[idx] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return np.stack([got[i] for i in indices])

  def __iter__(self) -> Iterator[np.ndarray]:
    self._rewind()
    while True:
      ok, frame = self._cap.read()
      if not ok:
        break
      self._pos += 1
      yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

  def read_all(self) -> np.ndarray:
    """Every decodable frame: [T, H, W, 3] uint8 RGB."""
    frames = list(self)
    if not frames:
      raise ValueError(f"{self.path}: no decodable frames")
    self._num_frames = len(frames)
    return np.stack(frames)

  def close(self) -> None:
    if self._cap is not None:
      self._cap.release()
      self._cap = None

  def __enter__(self) -> VideoReader:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __getstate__(self):  # picklable for Grain workers: the decoder is reopened on demand
    state = self.__dict__.copy()
    state["_cap"], state["_pos"] = None, 0
    return state

  @property
  def container_frames(self) -> int:
    """The frame count the container reports (fast; wrong for some AVI/MPEG files, 0 if unknown)."""
    cap = self._cap if self._cap is not None else _open_capture(self.path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if cap is not self._cap:
      cap.release()
    return max(n, 0)

  def stream(self, keep=None, max_frames: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """`(index, RGB frame)` in file order; frames with `keep(index)` false are grabbed, not decoded.

    Stops at the end of the decodable frames (a truncated file ends early, without an error) or
    after `max_frames` frames (0: all). `self.frames_seen` counts the frames walked so far.
    """
    self._rewind()
    self.frames_seen = 0
    i = 0
    while (not max_frames or i < max_frames) and self._cap.grab():
      self._pos = i + 1
      self.frames_seen = i + 1
      if keep is None or keep(i):
        ok, frame = self._cap.retrieve()
        if ok and frame is not None:
          yield i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
      i += 1


def open_video(path: str | Path, fps: float = 0.0) -> VideoReader:
  """A `VideoReader` whose `fps` is `fps` when given (> 0), else the file's.

  Raises a one-line ValueError naming the file when neither gives a usable frame rate.
  """
  reader = VideoReader(path)
  if fps and fps > 0:
    reader.fps = float(fps)
  if not (reader.fps > 0 and np.isfinite(reader.fps)):
    reader.close()
    raise ValueError(f"{path}: the file reports no frame rate; give one explicitly (fps)")
  return reader


def read_frames(path: str | Path, max_frames: int = 0) -> tuple[np.ndarray, float]:
  """Every frame of a video (or the first `max_frames`) as [T, H, W, 3] RGB uint8, and its fps.

  The fps is the file's, or 25 when the file reports none.
  """
  with VideoReader(path) as r:
    frames = [f for _, f in r.stream(max_frames=max_frames)]
    fps = r.fps or 25.0
  if not frames:
    raise ValueError(f"{path}: no decodable frames")
  return np.stack(frames), fps


def iter_frames(path: str | Path, max_frames: int = 0) -> Iterator[np.ndarray]:
  """RGB uint8 frames of a video file, one at a time (memory stays flat in the video's length)."""
  with VideoReader(path) as r:
    for _, f in r.stream(max_frames=max_frames):
      yield f


def camera_frames(index: int, max_frames: int = 0) -> Iterator[np.ndarray]:
  """RGB uint8 frames from camera `index` (OpenCV), until it stops or `max_frames` (0: no limit)."""
  cap = cv2.VideoCapture(int(index))
  if not cap.isOpened():
    raise ValueError(f"camera {index}: OpenCV cannot open it")
  n = 0
  try:
    while not max_frames or n < max_frames:
      ok, f = cap.read()
      if not ok:
        break
      n += 1
      yield cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
  finally:
    cap.release()


class VideoWriter:
  """Streams RGB uint8 frames [H, W, 3] (or grey [H, W]) into a video file, one at a time.

  The codec follows the extension (mp4v for .mp4, MJPG for .avi/.mkv, VP9 for .webm; the OpenCV
  wheels have no H.264 encoder). Frames go to a temporary file in the same folder, renamed onto
  `path` by `close()`, so an interrupted run never leaves a half-written video under `path`.
  The size is taken from the first frame unless given as `size=(H, W)`.
  """

  def __init__(self, path: str | Path, fps: float = 30.0, size: tuple[int, int] | None = None):
    self.path = Path(path)
    self.fps = float(fps)
    self.fourcc = FOURCC.get(self.path.suffix.lower())
    if self.fourcc is None:
      raise ValueError(f"{self.path}: cannot write extension {self.path.suffix!r}; use one of "
                       f"{list(FOURCC)}")
    self._tmp = self.path.with_name(f".{self.path.stem}.tmp{os.getpid()}{self.path.suffix}")
    self._w = None
    self.size = None
    self.frames_written = 0
    if size is not None:
      self._open(tuple(size))

  def _open(self, size: tuple[int, int]) -> None:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    self._w = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
    if not self._w.isOpened():
      self._w = None
      raise ValueError(f"{self.path}: OpenCV VideoWriter did not open (codec {self.fourcc})")
    self.size = (h, w)

  def write(self, frame: np.ndarray) -> None:
    """Appends one uint8 frame ([H, W, 3] RGB or [H, W] grey) of the writer's size."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
      frame = np.repeat(frame[..., None], 3, axis=-1)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
      raise ValueError(f"{self.path}: expected uint8 frames [H, W, 3], got {frame.dtype} "
                       f"{frame.shape}")
    if self._w is None:
      self._open(frame.shape[:2])
    if frame.shape[:2] != self.size:
      raise ValueError(f"{self.path}: frame size {frame.shape[:2]} differs from the video's {self.size}")
    self._w.write(np.ascontiguousarray(frame[..., ::-1]))
    self.frames_written += 1

  def close(self) -> Path:
    """Finishes the file and moves it onto `path`; returns `path`."""
    if self._w is None:
      if self._tmp.exists():
        self._tmp.unlink()
      if self.frames_written == 0 and not self.path.exists():
        raise ValueError(f"{self.path}: no frames to write")
      return self.path
    self._w.release()
    self._w = None
    if not self._tmp.is_file() or self._tmp.stat().st_size == 0:
      self._tmp.unlink(missing_ok=True)
      raise ValueError(f"{self.path}: OpenCV wrote no data (codec {self.fourcc})")
    os.replace(self._tmp, self.path)
    return self.path

  def abort(self) -> None:
    """Drops the temporary file; `path` is left as it was."""
    if self._w is not None:
      self._w.release()
      self._w = None
    self._tmp.unlink(missing_ok=True)

  def __enter__(self) -> VideoWriter:
    return self

  def __exit__(self, exc_type, *exc) -> None:
    if exc_type is None:
      self.close()
    else:
      self.abort()


def write_video(path: str | Path, frames: np.ndarray, fps: float = 30.0) -> Path:
  """Writes RGB uint8 frames [T, H, W, 3] (or [T, H, W] grey) through `VideoWriter`; returns the path."""
  path = Path(path)
  frames = np.asarray(frames)
  if frames.ndim not in (3, 4) or len(frames) == 0:
    raise ValueError(f"{path}: expected frames [T, H, W, 3] with T > 0, got {frames.shape}")
  if frames.dtype != np.uint8:
    raise ValueError(f"{path}: expected uint8 frames, got {frames.dtype}")
  with VideoWriter(path, fps) as w:
    for f in frames:
      w.write(f)
  return path


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """One scanned video: `path` absolute, `label` its class folder ('' when flat)."""

  path: str
  fps: float
  num_frames: int
  height: int
  width: int
  label: str = ""
  ok: bool = True
  reason: str = ""


def find_videos(root: str | Path, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
  """Video files under `root` (recursively, sorted); `root` may also be one video file."""
  root = Path(root)
  if not root.exists():
    raise FileNotFoundError(f"{root}: video path not found")
  if root.is_file():
    return [root]
  exts = {e.lower() for e in extensions}
  return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def probe_video(path: str | Path, label: str = "", exact_count: bool = True) -> VideoInfo:
  """fps, frame count and size of one file; `ok=False` with a reason when unreadable.

  `exact_count` counts decodable frames by grabbing them all; otherwise the container's count is
  trusted (fast, but wrong for some AVI/MPEG files) once the first frame decodes.
  """
  path = Path(path)
  try:
    cap = _open_capture(path)
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 0.0
    h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    n = 0
    if not exact_count and header > 1:  # MPEG-1 streams report 1
      n = header if cap.grab() else 0
    else:
      while cap.grab():
        n += 1
    cap.release()
    if n == 0:
      return VideoInfo(str(path), fps, 0, h, w, label, False, "no decodable frames")
    return VideoInfo(str(path), fps, n, h, w, label)
  except (ValueError, FileNotFoundError) as e:
    return VideoInfo(str(path), 0.0, 0, 0, 0, label, False, str(e).split(": ", 1)[-1])


def _load_cache(path: Path | None) -> dict:
  if path is None or not path.is_file():
    return {}
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return {}


def scan_videos(root: str | Path, *, extensions: Sequence[str] = VIDEO_EXTENSIONS,
                min_frames: int = 1, fps: float | None = None, fps_tolerance: float = 0.5,
                cache_path: str | Path | None | bool = True, report_path: str | Path | None = None,
                return_rejected: bool = False, exact_count: bool = True):
  """Scans a video folder (flat or Kinetics-style `<class>/<video>`), validating every file.

  Args:
    root: a folder (searched recursively) or one video file.
    min_frames: files with fewer decodable frames are rejected ("too short").
    fps: when set, files whose fps differs by more than `fps_tolerance` are rejected.
    cache_path: the metadata cache (JSON, keyed by path, size and mtime). True: `root/` +
      `.aejax_video_index.json` when `root` is writable, else no cache; False/None: no cache.
    report_path: where to write the validation report (JSON: kept count, rejected files and
      reasons). Written whenever given.
    return_rejected: also return the rejected `VideoInfo`s.
    exact_count: count frames by decoding (default; cached) rather than trusting the container
      (fast for Kinetics-scale folders; a wrong count is then caught as a skip at read time).

  Returns:
    The valid `VideoInfo`s, sorted by path (and the rejected ones when `return_rejected`).

  Raises:
    FileNotFoundError / ValueError: one line naming `root` when it is missing, holds no video
      file, or no file passes validation.
  """
  root = Path(root)
  files = find_videos(root, extensions)
  if not files:
    raise ValueError(f"{root}: no video files ({', '.join(extensions)}) found")
  if cache_path is True:
    cache_path = root / CACHE_NAME if root.is_dir() and os.access(root, os.W_OK) else None
  cache_path = Path(cache_path) if cache_path else None
  cache = _load_cache(cache_path)
  infos, dirty = [], False
  for f in files:
    st = f.stat()
    key = str(f.resolve())
    label = f.parent.name if root.is_dir() and f.parent != root else ""
    ent = cache.get(key)
    if (ent and ent.get("size") == st.st_size and ent.get("mtime") == st.st_mtime
        and ent.get("exact", True) >= exact_count):
      info = VideoInfo(**{**ent["info"], "label": label})
    else:
      info = probe_video(f, label, exact_count)
      cache[key] = {"size": st.st_size, "mtime": st.st_mtime, "exact": exact_count,
                    "info": dataclasses.asdict(info)}
      dirty = True
    infos.append(info)
  if dirty and cache_path is not None:
    try:
      cache_path.write_text(json.dumps(cache, indent=1))
    except OSError as e:
      log.warning("%s: cannot write the video metadata cache (%s)", cache_path, e)
  valid, rejected = [], []
  for info in infos:
    if info.ok and info.num_frames < min_frames:
      info = dataclasses.replace(info, ok=False,
                                 reason=f"too short: {info.num_frames} < {min_frames} frames")
    if info.ok and fps is not None and abs(info.fps - fps) > fps_tolerance:
      info = dataclasses.replace(info, ok=False, reason=f"fps {info.fps:.3g} != {fps:.3g}")
    (valid if info.ok else rejected).append(info)
  for info in rejected:
    log.warning("skipping %s: %s", info.path, info.reason)
  if report_path is not None:
    write_report(report_path, root, len(valid), [(i.path, i.reason) for i in rejected])
  if not valid:
    reasons = "; ".join(sorted({i.reason for i in rejected}))
    raise ValueError(f"{root}: none of {len(files)} video files is usable ({reasons})")
  return (valid, rejected) if return_rejected else valid


def write_report(path: str | Path, root: str | Path, kept: int,
                 skipped: Sequence[tuple[str, str]]) -> Path:
  """Writes a skip report (JSON): the dataset root, kept count, skipped (path, reason) pairs."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"root": str(root), "kept": kept, "skipped_count": len(skipped),
                              "skipped": [{"path": str(p), "reason": r} for p, r in skipped]},
                             indent=1))
  return path
