"""The folder scan: which video files a root holds, their fps, frame count and size, validated.

`scan_videos` walks a folder (flat or Kinetics-style `<class>/<video>`) and probes each file
through the same PyAV opening as `aejax.data.video`. Container frame counts are not always right:
OpenCV and PyAV report 444 frames for a 68-frame cinepak AVI in `../shared/realdata/videos`, and
MPEG-1 streams report none. The scan reads the container's count where it is a sample table
(MP4/MOV), counts packets (demuxing, no decoding) elsewhere, and decodes every frame only with
`exact_count=True`. A count that is still wrong surfaces at read time as
`aejax.data.video.FrameCountError` (a `ValueError`), which the video sources count as a skip. The
scan caches what it has read in the user's cache (never in the dataset) as it goes, atomically, so
an interrupted scan resumes; corrupt, too-short and wrong-fps files are dropped and listed in a
report (`write_report`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import cv2

from aejax.data.video import VIDEO_EXTENSIONS, _av, _decode_all, _open, _open_capture, _rate
from aejax.io import write_json

# Containers whose frame count is a sample table (exact unless the file is damaged).
_TABLE_FORMATS = ("mov", "mp4")
_LEVEL = {False: 0, None: 1, True: 2}  # exact_count -> how much of the file the count reads
# The scan rewrites its cache at most this often (seconds; 0: after every file), and otherwise
# never spends more than a tenth of its time doing so.
CACHE_FLUSH_SECONDS = 5.0

log = logging.getLogger(__name__)


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


def probe_video(path: str | Path, label: str = "", exact_count: bool | None = True) -> VideoInfo:
  """fps, frame count and size of one file; `ok=False` with a reason when unreadable.

  `exact_count`: True decodes every frame and counts them; None reads the container's count where
  it is a sample table (MP4/MOV) and counts packets (demuxing, no decoding) elsewhere; False
  trusts any container count above 1 (fast, wrong for some AVI files), counting packets without
  one. Without True, the first frame is still decoded, to reject files the codec cannot read.
  """
  path = Path(path)
  try:
    c, s = _open(path)
  except (ValueError, FileNotFoundError) as e:
    return VideoInfo(str(path), 0.0, 0, 0, 0, label, False, str(e).split(": ", 1)[-1])
  av, level = _av(), _LEVEL[exact_count]
  try:
    fps = _rate(s)
    if not fps:  # PyAV found no rate: ask OpenCV
      cap = _open_capture(path)
      fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
      cap.release()
    h, w = int(s.codec_context.height), int(s.codec_context.width)
    if level == 2:
      n = sum(1 for _ in _decode_all(c, s, keep=lambda i: False))
    else:
      table = set(c.format.name.split(",")) & set(_TABLE_FORMATS) or level == 0
      table = int(s.frames or 0) if table else 0
      n, first = 0, False
      for pkt in c.demux(s):
        n += bool(pkt.size)
        first = first or any(True for _ in s.codec_context.decode(pkt if pkt.size else None))
        if first and table > 1:
          n = table
          break
      n = n if first else 0
  except (av.FFmpegError, ValueError) as e:
    return VideoInfo(
      str(path), 0.0, 0, 0, 0, label, False, f"cannot decode ({getattr(e, 'strerror', None) or e})"
    )
  finally:
    c.close()
  if n == 0:
    return VideoInfo(str(path), fps, 0, h, w, label, False, "no decodable frames")
  return VideoInfo(str(path), fps, n, h, w, label)


def _load_cache(path: Path | None) -> dict:
  if path is None or not path.is_file():
    return {}
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return {}


def default_cache_path(root: str | Path) -> Path:
  """The metadata cache of a video root: `$AEJAX_CACHE` (default `$XDG_CACHE_HOME/aejax`, else
  `~/.cache/aejax`) / `video_index/<hash of the resolved root>.json`, outside the dataset."""
  base = (
    os.environ.get("AEJAX_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aejax"
  )
  key = hashlib.sha1(str(Path(root).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:20]
  return Path(base) / "video_index" / f"{key}.json"


def _cached_level(ent: dict) -> int:
  return int(ent["level"]) if "level" in ent else _LEVEL[bool(ent.get("exact", True))]


def scan_videos(
  root: str | Path,
  *,
  extensions: Sequence[str] = VIDEO_EXTENSIONS,
  min_frames: int = 1,
  fps: float | None = None,
  fps_tolerance: float = 0.5,
  cache_path: str | Path | None | bool = True,
  report_path: str | Path | None = None,
  return_rejected: bool = False,
  exact_count: bool | None = None,
):
  """Scans a video folder (flat or Kinetics-style `<class>/<video>`), validating every file.

  Args:
    root: a folder (searched recursively) or one video file.
    min_frames: files with fewer frames are rejected ("too short").
    fps: when set, files whose fps differs by more than `fps_tolerance` are rejected.
    cache_path: the metadata cache (JSON, keyed by path, size and mtime), rewritten atomically
      every few seconds while scanning and at the end (also when interrupted), so a new scan
      resumes. True: one file per root in the user's cache (`default_cache_path`), so nothing is
      written into the dataset; False/None: no cache.
    report_path: where to write the validation report (JSON: kept count, rejected files and
      reasons). Written whenever given.
    return_rejected: also return the rejected `VideoInfo`s.
    exact_count: None (default): container metadata, no decoding beyond the first frame
      (packets counted where the container's count is unreliable); True: decode every frame;
      False: any container count (see `probe_video`). A count that is still wrong is caught as a
      skip at read time (`FrameCountError`).

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
    cache_path = default_cache_path(root)
  cache_path = Path(cache_path) if cache_path else None
  cache = _load_cache(cache_path)
  level = _LEVEL[exact_count]
  infos, dirty, last, cost = [], False, time.monotonic(), 0.0

  def flush() -> None:
    nonlocal dirty, cache_path, last, cost
    t = time.monotonic()
    try:
      write_json(cache_path, cache, indent=None, separators=(",", ":"))
    except OSError as e:
      log.warning("%s: cannot write the video metadata cache (%s)", cache_path, e)
      cache_path = None
    dirty, last, cost = False, time.monotonic(), time.monotonic() - t

  try:
    for f in files:
      st = f.stat()
      key = str(f.resolve())
      label = f.parent.name if root.is_dir() and f.parent != root else ""
      ent = cache.get(key)
      if (
        ent
        and ent.get("size") == st.st_size
        and ent.get("mtime") == st.st_mtime
        and _cached_level(ent) >= level
      ):
        info = VideoInfo(**{**ent["info"], "label": label})
      else:
        info = probe_video(f, label, exact_count)
        cache[key] = {
          "size": st.st_size,
          "mtime": st.st_mtime,
          "level": level,
          "info": dataclasses.asdict(info),
        }
        dirty = True
        wait = max(CACHE_FLUSH_SECONDS, 10 * cost) if CACHE_FLUSH_SECONDS > 0 else 0.0
        if cache_path is not None and time.monotonic() - last >= wait:
          flush()
      infos.append(info)
  finally:
    if dirty and cache_path is not None:
      flush()
  valid, rejected = [], []
  for info in infos:
    if info.ok and info.num_frames < min_frames:
      info = dataclasses.replace(info, ok=False, reason=f"too short: {info.num_frames} < {min_frames} frames")
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


def write_report(path: str | Path, root: str | Path, kept: int, skipped: Sequence[tuple[str, str]]) -> Path:
  """Writes a skip report (JSON): the dataset root, kept count, skipped (path, reason) pairs."""
  return write_json(
    path,
    {
      "root": str(root),
      "kept": kept,
      "skipped_count": len(skipped),
      "skipped": [{"path": str(p), "reason": r} for p, r in skipped],
    },
    indent=1,
  )
