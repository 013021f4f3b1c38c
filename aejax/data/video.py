"""Video files through OpenCV: a frame reader, a checked writer, and a cached, validating scan.

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


def write_video(path: str | Path, frames: np.ndarray, fps: float = 30.0) -> Path:
  """Writes RGB uint8 frames [T, H, W, 3] (or [T, H, W] grey) with OpenCV; returns the path.

  Codec by extension: mp4v for .mp4, MJPG for .avi/.mkv, VP9 for .webm (H.264 is not available
  in the OpenCV wheels). Raises ValueError naming the path when the writer does not open.
  """
  path = Path(path)
  frames = np.asarray(frames)
  if frames.ndim == 3:
    frames = np.repeat(frames[..., None], 3, axis=-1)
  if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
    raise ValueError(f"{path}: expected frames [T, H, W, 3] with T > 0, got {frames.shape}")
  if frames.dtype != np.uint8:
    raise ValueError(f"{path}: expected uint8 frames, got {frames.dtype}")
  fourcc = FOURCC.get(path.suffix.lower())
  if fourcc is None:
    raise ValueError(f"{path}: cannot write extension {path.suffix!r}; use one of {list(FOURCC)}")
  path.parent.mkdir(parents=True, exist_ok=True)
  h, w = frames.shape[1:3]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
  if not writer.isOpened():
    raise ValueError(f"{path}: OpenCV VideoWriter did not open (codec {fourcc})")
  for f in frames:
    writer.write(np.ascontiguousarray(f[..., ::-1]))
  writer.release()
  if not path.is_file() or path.stat().st_size == 0:
    raise ValueError(f"{path}: OpenCV wrote no data (codec {fourcc})")
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
