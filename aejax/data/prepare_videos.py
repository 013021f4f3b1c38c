"""`prepare videos`: a video folder decoded once into sharded array_record files, and the reader.

Layout, options, resuming and the JPEG quality are described in `aejax.data.prepare` (the command
line). `prepare_videos` plans shards of `videos_per_shard` files, decodes each video exactly once
(`encode_video`) in `workers` processes, and writes each finished shard (array_record, then its
JSON, renamed into place) so a killed run redoes only unfinished shards. `PreparedVideos` reads a
prepared set back as a video collection for `VideoPairSource` / `VideoClipSource`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from aejax.data import sources as S
from aejax.data.prepare import QUALITY, VERSION, encode_frame, resize_short
from aejax.data.scan import VideoInfo, find_videos, write_report
from aejax.data.video import VideoReader
from aejax.io import clock, write_json

_PLAN = "prepare_plan.json"
_PLAN_KEYS = (
  "format",
  "quality",
  "size",
  "max_frames",
  "min_frames",
  "fps",
  "fps_tolerance",
  "videos_per_shard",
)


def video_folder(data_dir: str | Path) -> Path:
  """Where `prepare videos` writes under `data_dir` (recognised by `aejax_index_train.json`)."""
  return Path(data_dir) / "aejax_videos" / VERSION


def _shard_name(k: int, n: int) -> str:
  return f"aejax_videos-train.array_record-{k:05d}-of-{n:05d}"


def encode_video(path: str | Path, options: dict) -> tuple[list[bytes], dict]:
  """Decodes one video once into encoded frames and its index row; ValueError names a skip."""
  o = options
  r = VideoReader(path)
  try:
    if o.get("fps") and abs(r.fps - o["fps"]) > o.get("fps_tolerance", 0.5):
      raise ValueError(f"fps {r.fps:.3g} != {o['fps']:.3g}")
    frames, h, w = [], 0, 0
    for _, frame in r.stream(max_frames=o.get("max_frames") or 0, format="bgr24"):
      frame = resize_short(frame, o.get("size"))
      h, w = frame.shape[:2]
      frames.append(encode_frame(frame, o.get("format", "jpeg"), o.get("quality", QUALITY), bgr=True))
  finally:
    r.close()
  if not frames:
    raise ValueError("no decodable frames")
  if len(frames) < o.get("min_frames", 1):
    raise ValueError(f"too short: {len(frames)} < {o['min_frames']} frames")
  return frames, {"fps": r.fps, "num_frames": len(frames), "height": h, "width": w}


_TICKS = None  # worker processes: a queue for progress ticks


def _init_worker(queue) -> None:
  global _TICKS
  _TICKS = queue
  cv2.setNumThreads(1)


def prepare_shard(folder: Path, k: int, n: int, files: list, options: dict, tick=None) -> dict:
  """Writes shard `k` of `n` (array_record, then its JSON: rows and skips); returns the JSON."""
  from array_record.python.array_record_module import ArrayRecordWriter

  tick = tick or (_TICKS.put if _TICKS is not None else (lambda t: None))
  rec = folder / _shard_name(k, n)
  tmp = rec.with_name(f".{rec.name}.tmp{os.getpid()}")
  writer = ArrayRecordWriter(str(tmp), "group_size:1")
  rows, skipped = [], []
  try:
    for path, label in files:
      try:
        frames, row = encode_video(path, options)
      except (ValueError, OSError) as e:  # corrupt, too short, wrong fps: listed, not fatal
        skipped.append((path, str(e).split(f"{path}: ", 1)[-1]))
        tick((1, 0, 0, 1))
        continue
      for b in frames:
        writer.write(b)
      rows.append({"path": path, "label": label, **row})
      tick((1, len(frames), sum(map(len, frames)), 0))
    writer.close()
  except BaseException as e:
    with contextlib.suppress(Exception):  # the writer may fail again closing (a full disk)
      writer.close()
    tmp.unlink(missing_ok=True)
    if isinstance(e, RuntimeError) and "write" in str(e).lower():  # array_record's I/O errors
      raise OSError(errno.EIO, str(e).split(";")[0], str(tmp)) from None
    raise
  os.replace(tmp, rec)
  done = {"shard": rec.name, "rows": rows, "skipped": skipped}
  write_json(folder / f"{rec.name}.json", done)
  return done


def _plan(src: Path, folder: Path, options: dict) -> dict:
  opts = {k: options.get(k) for k in _PLAN_KEYS}
  path = folder / _PLAN
  if path.is_file():
    plan = json.loads(path.read_text())
    if plan["src"] != str(src.resolve()):
      raise ValueError(f"{folder}: prepared from {plan['src']}, not {src}; use another --out")
    if plan["options"] != opts:
      raise ValueError(
        f"{folder}: prepared with other options {plan['options']} (now {opts}); "
        f"use another --out or delete it"
      )
    return plan
  files = find_videos(src)
  if not files:
    raise ValueError(f"{src}: no video files found")
  labeled = [(str(f.resolve()), f.parent.name if src.is_dir() and f.parent != src else "") for f in files]
  per = max(1, int(opts["videos_per_shard"]))
  plan = {
    "src": str(src.resolve()),
    "options": opts,
    "shards": [labeled[i : i + per] for i in range(0, len(labeled), per)],
  }
  folder.mkdir(parents=True, exist_ok=True)
  write_json(path, plan)
  return plan


class _Progress:
  """Counts finished videos, prints a progress line every few seconds and the final summary."""

  def __init__(self, total: int, done: int, every: float = 2.0):
    self.total, self.done, self.every = total, done, every
    self.videos = self.frames = self.bytes = self.skipped = 0
    self.t0 = self.last = time.perf_counter()

  def __call__(self, t) -> None:
    self.videos += t[0]
    self.frames += t[1]
    self.bytes += t[2]
    self.skipped += t[3]
    now = time.perf_counter()
    if now - self.last >= self.every:
      self.last = now
      rate = self.videos / max(now - self.t0, 1e-9)
      left = self.total - self.done - self.videos
      eta = clock(left / rate) if rate > 0 else "?"
      print(
        f"prepare videos: {self.done + self.videos}/{self.total} ({self.skipped} skipped), "
        f"{rate:.1f} videos/s, ETA {eta}",
        file=sys.stderr,
        flush=True,
      )


def prepare_videos(
  src: str | Path,
  out: str | Path,
  *,
  workers: int | None = None,
  size: int | None = 256,
  format: str = "jpeg",
  quality: int = QUALITY,
  max_frames: int | None = None,
  min_frames: int = 1,
  fps: float | None = None,
  fps_tolerance: float = 0.5,
  videos_per_shard: int = 64,
  report: str | Path | None = None,
  progress: float | None = 2.0,
  cache_path=None,
) -> Path:
  """Prepares a video folder (see the module docstring); returns the prepared folder.

  `workers`: processes (None: all cores; 1: this process). `progress`: seconds between progress
  lines (None: none). `cache_path` is ignored (nothing is scanned before decoding).
  Raises ValueError naming `src` (and the report) when no video survives.
  """
  del cache_path
  options = {k: v for k, v in locals().items() if k in _PLAN_KEYS}  # the plan's options, as given
  src, out = Path(src), Path(out)
  if not src.exists():
    raise FileNotFoundError(f"{src}: source folder not found")
  folder = video_folder(out)
  plan = _plan(src, folder, options)
  shards, n = plan["shards"], len(plan["shards"])
  results: dict[int, dict] = {}
  for k in range(n):
    marker = folder / f"{_shard_name(k, n)}.json"
    if marker.is_file() and (folder / _shard_name(k, n)).is_file():
      results[k] = json.loads(marker.read_text())
  todo = [k for k in range(n) if k not in results]
  for tmp in folder.glob(".aejax_videos-train.*.tmp*"):  # left by a killed run
    tmp.unlink(missing_ok=True)
  total = sum(len(s) for s in shards)
  prog = _Progress(total, total - sum(len(shards[k]) for k in todo), 1e18 if progress is None else progress)
  asked = workers or len(os.sched_getaffinity(0))
  workers = min(asked, max(1, len(todo)))
  if 1 <= len(todo) < asked:  # a shard is one worker's unit
    per = options.get("videos_per_shard")
    print(
      f"note: {len(todo)} shard(s) to write ({per} videos each): {workers} of {asked} worker(s) busy; "
      "a smaller --videos-per-shard spreads a small set over more workers"
    )
  t0, c0 = time.perf_counter(), _cpu_seconds()
  if workers <= 1:
    for k in todo:
      results[k] = prepare_shard(folder, k, n, shards[k], options, tick=prog)
  elif todo:
    _run_pool(folder, n, shards, todo, options, workers, prog, results)
  wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
  rows, skipped, offset = [], [], 0
  for k in range(n):
    for row in results[k]["rows"]:
      rows.append({**row, "offset": offset, "shard": results[k]["shard"]})
      offset += row["num_frames"]
    skipped += [tuple(s) for s in results[k]["skipped"]]
  report = Path(report) if report else Path(out) / "prepare_report.json"
  write_report(report, src, len(rows), skipped)
  if not rows:
    reasons = "; ".join(sorted({r for _, r in skipped}))
    raise ValueError(f"{src}: none of {total} video files is usable ({reasons}); see {report}")
  write_json(folder / "aejax_index_train.json", rows)
  nbytes = sum((folder / s).stat().st_size for s in dict.fromkeys(r["shard"] for r in rows))
  hours = sum(r["num_frames"] / r["fps"] for r in rows if r["fps"] > 0) / 3600
  done_now = max(prog.frames, 1)
  print(
    f"prepared {len(rows)} videos ({len(skipped)} skipped, listed in {report}): {offset} "
    f"frames, {nbytes / 1e9:.3f} GB ({nbytes / max(offset, 1) / 1e3:.1f} kB/frame), "
    f"{hours:.2f} h of video; this run: {prog.videos} videos in {wall:.1f} s, "
    f"{1e3 * cpu / done_now:.2f} CPU-ms/frame, {workers} worker(s) -> {folder}"
  )
  return folder


def _cpu_seconds() -> float:
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


def _run_pool(folder, n, shards, todo, options, workers, prog, results) -> None:
  import multiprocessing as mp
  import queue as queue_lib

  from aejax.data import prepare_videos as mod  # spawned workers import it by name

  ctx = mp.get_context("spawn")
  ticks = ctx.Queue()
  with ctx.Pool(workers, initializer=mod._init_worker, initargs=(ticks,)) as pool:
    pending = {k: pool.apply_async(mod.prepare_shard, (folder, k, n, shards[k], options)) for k in todo}
    while pending:
      try:
        prog(ticks.get(timeout=0.5))
      except queue_lib.Empty:
        pass
      for k in [k for k, r in pending.items() if r.ready()]:
        results[k] = pending.pop(k).get()  # re-raises a worker's error
    while True:
      try:
        prog(ticks.get_nowait())
      except queue_lib.Empty:
        break
    pool.close()
    pool.join()  # workers exit: their CPU time counts as children's


class PreparedVideos:
  """A prepared video set as a video collection (for `VideoPairSource` / `VideoClipSource`).

  Frame j of video i is record `offsets[i] + j` over the shards in order; only the frames asked
  for are read and decoded. Needs no tensorflow-datasets.
  """

  def __init__(self, data_dir: str | Path, split: str = "train"):
    import grain

    self.root, self.split = str(data_dir), split
    folder = video_folder(data_dir)
    if not folder.is_dir():
      raise FileNotFoundError(f"{Path(data_dir) / 'aejax_videos'}: no prepared 'aejax_videos' data set")
    index = folder / f"aejax_index_{split}.json"
    if (folder / "dataset_info.json").is_file() and not (folder / _PLAN).is_file():
      raise ValueError(f"{folder}: prepared by an older aejax (tfds records); run prepare again")
    if not index.is_file():
      raise FileNotFoundError(
        f"{index}: prepared index missing (the preparation did not finish: "
        f"run the same prepare command again)"
      )
    rows = json.loads(index.read_text())
    self.infos = [
      VideoInfo(r["path"], r["fps"], r["num_frames"], r["height"], r["width"], r["label"]) for r in rows
    ]
    self.offsets = [r["offset"] for r in rows]
    self.shards = list(dict.fromkeys(r["shard"] for r in rows))
    self.source = grain.sources.ArrayRecordDataSource([str(folder / s) for s in self.shards])
    total = sum(r["num_frames"] for r in rows)
    if total != len(self.source):
      raise ValueError(f"{folder}: index lists {total} frames, the shards hold {len(self.source)}")

  def __len__(self) -> int:
    return len(self.infos)

  def info(self, i: int) -> VideoInfo:
    """The `VideoInfo` of video `i`."""
    return self.infos[i]

  def read(self, i: int, indices) -> np.ndarray:
    """Frames `indices` of video `i`: [len(indices), H, W, 3] uint8 RGB."""
    info, out = self.infos[i], []
    for j in np.asarray(indices).reshape(-1):
      if not 0 <= j < info.num_frames:
        raise ValueError(f"{info.path}: frame {j} out of range [0, {info.num_frames})")
      data = self.source[self.offsets[i] + int(j)]
      # Our own JPEG/PNG frames (no EXIF, 3 channels): straight to RGB, the values decode_image gives.
      f = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
      out.append(f if f is not None else S.decode_image(data, f"{info.path}[{j}]"))
    return np.stack(out)

  def __repr__(self) -> str:
    return f"PreparedVideos(root={self.root!r}, split={self.split!r}, n={len(self.infos)})"
