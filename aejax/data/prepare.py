"""Decode once: video folders, image folders and DAVIS into array_record files.

    python -m aejax.data.prepare videos --src DIR --out DATA_DIR [--workers N] [--size 256] [--quality 75]
    python -m aejax.data.prepare images --src DIR --out DATA_DIR [--valid-fraction 0.2 --seed 42]
    python -m aejax.data.prepare davis  --src DAVIS_ROOT --out DATA_DIR [--resolution 480p]

Videos (Kinetics-style `<class>/<video>` folders or flat ones; mp4/avi/mkv/webm/mpeg) go to
`DATA_DIR/aejax_videos/1.0.0/`: shards `aejax_videos-train.array_record-NNNNN-of-NNNNN`, each
record one frame as JPEG (or PNG) bytes, videos one after another, and `aejax_index_train.json`
(per video: `path`, `label` = class folder or '', `fps`, `num_frames`, `height`, `width`,
`offset` = its first record over the shards in order, `shard`). `--workers` processes (default:
all cores) each take a shard of `--videos-per-shard` videos and decode each video exactly once,
scaling it so its shorter side is `--size` (default 256; never up). The run is resumable: the
plan (file list and options) and each finished shard (array_record, then its JSON, both renamed
into place) are kept, so killing it and running the same command again redoes only unfinished
shards; other options on the same `--out` are an error. Corrupt files, files shorter than
`--min-frames` and files whose fps is not `--fps` are skipped and listed in `--report` (default
`DATA_DIR/prepare_report.json`); when nothing survives the command fails with the reasons. A
progress line (videos/s, ETA) and a final summary (kept, skipped, frames, bytes, hours) go to
stderr / stdout. Reading needs no tensorflow-datasets: `PreparedVideos` (a collection for
`VideoPairSource` / `VideoClipSource`) reads the shards with `grain.sources.ArrayRecordDataSource`.

JPEG quality 75 (default), measured on 32 Kinetics-like 340×256 H.264 clips cut from the real
footage (`python -m bench.prepare_videos`, table in `bench/RESULTS.md`, 2026-12-02): 16.7 kB per
frame at 37.5 dB PSNR against the decoded H.264 frame (q95: 36.4 kB, 44.3 dB; q60: 13.3 kB,
35.6 dB). Kinetics-400 is ~240k clips × 10 s × 30 fps = 72M frames, so 1 TB is 13.9 kB per frame:
q75 gives 1.2 TB at these clips' rate and ~0.96 TB at the issue's (29 kB per frame at q95).
1.0–1.2 CPU-ms per frame (decode, YUV→BGR, JPEG); 2 workers run 1.94× faster than 1.

Images and DAVIS still use tensorflow-datasets builders (`pip install 'aejax[prepare]'`):
- `aejax_images` (splits `train`, `valid`; everything in `train` with `--valid-fraction 0`): `image`
  (encoded bytes of the RGB uint8 image: grey, CMYK, palette, RGBA and 16-bit inputs are
  converted), `label` (class index), `class_name`, `path`. Caltech-256 split: `--valid-fraction
  0.2 --seed 42`.
- `aejax_davis` (the splits listed in `ImageSets/2017`): one record per sequence: `frames`
  (encoded JPEG bytes), `masks` (lossless PNG bytes of the object-id maps), `name`, `palette`
  [256, 3].
Read them back with `tfds.data_source(name, data_dir=DATA_DIR)` (this module registers the
builders), `PreparedImageSource` or `PreparedDavisSource`. No TensorFlow is needed.
"""

from __future__ import annotations

import argparse
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
from aejax.data.video import VideoInfo, VideoReader, find_videos, write_report
from aejax.io import check_output

VERSION = "1.0.0"
QUALITY = 75  # see the module docstring and bench/RESULTS.md
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


def _tfds():
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise ImportError(
      "preparing images or DAVIS needs tensorflow-datasets: pip install 'aejax[prepare]'"
    ) from None
  return tfds


def encode_frame(rgb: np.ndarray, fmt: str = "jpeg", quality: int = QUALITY, *, bgr: bool = False) -> bytes:
  """RGB (BGR with `bgr=True`, or single-channel) uint8 → encoded JPEG / PNG bytes."""
  img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 and rgb.shape[-1] == 3 and not bgr else rgb
  ext, params = (".png", []) if fmt == "png" else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])
  ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), params)
  if not ok:
    raise ValueError(f"cannot encode a frame of shape {rgb.shape} as {fmt}")
  return buf.tobytes()


def _resize_short(img: np.ndarray, size: int | None) -> np.ndarray:
  if not size:
    return img
  h, w = img.shape[:2]
  f = size / min(h, w)
  if f >= 1:
    return img
  return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def _text(path) -> str:
  """A file name as valid UTF-8 text (bytes that are not UTF-8 become U+FFFD) for the records."""
  return os.fsencode(path).decode("utf-8", "replace")


def _write_json(path: Path, obj) -> None:
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_text(json.dumps(obj))
  os.replace(tmp, path)


# ------------------------------------------------------------------------------------ videos


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
      frame = _resize_short(frame, o.get("size"))
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
  _write_json(folder / f"{rec.name}.json", done)
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
  _write_json(path, plan)
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
      eta = "?"
      if rate > 0:
        m, sec = divmod(int(left / rate), 60)
        eta = f"{m // 60}:{m % 60:02d}:{sec:02d}"
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
  src, out = Path(src), Path(out)
  if not src.exists():
    raise FileNotFoundError(f"{src}: source folder not found")
  options = dict(
    format=format,
    quality=quality,
    size=size,
    max_frames=max_frames,
    min_frames=min_frames,
    fps=fps,
    fps_tolerance=fps_tolerance,
    videos_per_shard=videos_per_shard,
  )
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
  workers = min(workers or len(os.sched_getaffinity(0)), max(1, len(todo)))
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
  _write_json(folder / "aejax_index_train.json", rows)
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

  from aejax.data import prepare as mod  # not __main__: spawned workers import it by name

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
    out = []
    for j in np.asarray(indices).reshape(-1):
      if not 0 <= j < self.infos[i].num_frames:
        raise ValueError(f"{self.infos[i].path}: frame {j} out of range [0, {self.infos[i].num_frames})")
      out.append(S.decode_image(self.source[self.offsets[i] + int(j)], f"{self.infos[i].path}[{j}]"))
    return np.stack(out)

  def __repr__(self) -> str:
    return f"PreparedVideos(root={self.root!r}, split={self.split!r}, n={len(self.infos)})"


# ----------------------------------------------------------------------- images and DAVIS (tfds)

_BUILDERS: dict = {}


def _builders() -> dict:
  """The tfds builders for images and DAVIS, defined (and registered) on first use."""
  if _BUILDERS:
    return _BUILDERS
  tfds = _tfds()
  bytes_ = tfds.features.Tensor(shape=(), dtype=np.object_)

  class _Builder(tfds.core.GeneratorBasedBuilder):
    """Shared set-up: the source and options come in through the constructor, not a download."""

    VERSION = tfds.core.Version(VERSION)
    # No checksums or package metadata live beside this module; tfds would otherwise look them
    # up through `importlib_resources`, which is not a dependency.
    code_path = None

    def __init__(self, *, src=None, options=None, **kw):
      self.src, self.options, self.index = src, dict(options or {}), {}
      super().__init__(**kw)

    def _make_info(self, features: dict):
      return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(features),
        disable_shuffling=True,
        description=__doc__.split("\n")[0],
      )

    def write_index(self) -> None:
      for split, rows in self.index.items():
        Path(self.data_dir, f"aejax_index_{split}.json").write_text(json.dumps(rows))

  class AejaxImages(_Builder):
    """Images (encoded RGB uint8) with class labels, split train / valid by seed and fraction."""

    def _info(self):
      return self._make_info(
        {
          "image": bytes_,
          "label": tfds.features.Scalar(np.int32),
          "class_name": tfds.features.Text(),
          "path": tfds.features.Text(),
        }
      )

    def _split_generators(self, dl_manager):
      o = self.options
      frac = o.get("valid_fraction", 0.2)
      src = S.ImageFolderSource(self.src, split=None, report_path=o.get("report"))
      self.classes = src.classes
      if frac <= 0:
        return {"train": self._generate_examples(src, np.arange(len(src)), "train")}
      return {
        split: self._generate_examples(src, S.split_indices(len(src), split, frac, o.get("seed", 42)), split)
        for split in ("train", "valid")
      }

    def _generate_examples(self, src, indices, split):
      o, rows = self.options, self.index.setdefault(split, [])
      for k, i in enumerate(indices):
        path, label = src.files[int(i)]
        try:
          img = _resize_short(S.load_image(path), o.get("size"))
        except (ValueError, OSError):
          continue
        name = _text(self.classes[label]) if label >= 0 else ""
        rows.append({"path": _text(path), "label": int(label)})
        yield (
          f"{k:09d}",
          {
            "image": encode_frame(img, o.get("format", "jpeg"), o.get("quality", 95)),
            "label": int(label),
            "class_name": name,
            "path": _text(path),
          },
        )

  class AejaxDavis(_Builder):
    """DAVIS-2017 sequences: encoded frames, lossless id masks, the palette."""

    def _info(self):
      return self._make_info(
        {
          "frames": tfds.features.Sequence(bytes_),
          "masks": tfds.features.Sequence(bytes_),
          "name": tfds.features.Text(),
          "palette": tfds.features.Tensor(shape=(256, 3), dtype=np.uint8),
        }
      )

    def _split_generators(self, dl_manager):
      sets = Path(self.src) / "ImageSets" / "2017"
      splits = sorted(p.stem for p in sets.glob("*.txt") if p.read_text().strip())
      if not splits:
        raise ValueError(f"{sets}: no non-empty split listing (train.txt / val.txt)")
      return {s: self._generate_examples(s) for s in splits}

    def _generate_examples(self, split):
      o = self.options
      src = S.DavisSource(self.src, split, resolution=o.get("resolution", "480p"))
      rows = self.index.setdefault(split, [])
      for i in range(len(src)):
        e = src[i]
        frames = [encode_frame(f, "jpeg", o.get("quality", 95)) for f in e["video"]]
        masks = [encode_frame(m, "png") for m in e["mask"]]
        rows.append({"name": src.name(i), "num_frames": len(frames)})
        yield f"{i:09d}", {"frames": frames, "masks": masks, "name": src.name(i), "palette": src.palette(i)}

  _BUILDERS.update(images=AejaxImages, davis=AejaxDavis)
  return _BUILDERS


KINDS = ("davis", "images", "videos")


def prepare(kind: str, src: str | Path, out: str | Path, **options) -> Path:
  """Prepares `src` as `kind` ("videos" | "images" | "davis") under `out`; returns its folder."""
  if kind == "videos":
    return prepare_videos(src, out, **options)
  src, out = Path(src), Path(out)
  if not src.exists():
    raise FileNotFoundError(f"{src}: source folder not found")
  options.setdefault("report", out / "prepare_report.json")
  tfds = _tfds()
  tfds.disable_progress_bar()
  builder = _builders()[kind](src=src, options=options, data_dir=str(out), file_format="array_record")
  builder.download_and_prepare()
  builder.write_index()
  return Path(builder.data_dir)


def _data_source(data_dir, name: str, split: str):
  data_dir = Path(data_dir)
  if not (data_dir / name).is_dir():
    raise FileNotFoundError(f"{data_dir / name}: no prepared {name!r} data set")
  _builders()
  sources = _tfds().data_source(name, data_dir=str(data_dir))
  if split not in sources:
    raise ValueError(f"{data_dir / name}: no split {split!r} (has {sorted(sources)})")
  return sources[split]


class PreparedImageSource:
  """A prepared `aejax_images` split: elements `image` [H, W, 3] uint8, `label`, `index`."""

  def __init__(self, data_dir: str | Path, split: str = "train"):
    self.root, self.split = str(data_dir), split
    self.source = _data_source(data_dir, "aejax_images", split)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    r = self.source[int(index)]
    return {
      "image": S.decode_image(r["image"], r["path"]),
      "label": np.int32(r["label"]),
      "index": np.int32(index),
    }

  def __repr__(self) -> str:
    return f"PreparedImageSource(root={self.root!r}, split={self.split!r}, n={len(self)})"


class PreparedDavisSource:
  """A prepared `aejax_davis` split, elements as `DavisSource`'s (`video`, `mask`, `name`)."""

  def __init__(self, data_dir: str | Path, split: str = "val"):
    self.root, self.split = str(data_dir), split
    self.source = _data_source(data_dir, "aejax_davis", split)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    r = self.source[int(index)]
    name = r["name"].decode() if isinstance(r["name"], bytes) else str(r["name"])
    video = np.stack([S.decode_image(f, name) for f in r["frames"]])
    mask = np.stack([cv2.imdecode(np.frombuffer(m, np.uint8), cv2.IMREAD_UNCHANGED) for m in r["masks"]])
    return {"video": video, "mask": mask, "name": np.asarray(name), "index": np.int32(index)}

  def palette(self, index: int) -> np.ndarray:
    """The sequence's [256, 3] uint8 palette."""
    return np.asarray(self.source[int(index)]["palette"], np.uint8)

  def __repr__(self) -> str:
    return f"PreparedDavisSource(root={self.root!r}, split={self.split!r}, n={len(self)})"


# -------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
  """The command line (see the module docstring); returns the exit status."""
  parser = argparse.ArgumentParser(
    prog="python -m aejax.data.prepare",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("kind", choices=KINDS, help="what --src holds")
  parser.add_argument("--src", required=True, help="the video folder, image folder or DAVIS root")
  parser.add_argument("--out", required=True, help="data_dir to write into")
  parser.add_argument("--workers", type=int, default=None, help="videos: processes (all cores)")
  parser.add_argument("--videos-per-shard", type=int, default=64, help="videos: shard size")
  parser.add_argument(
    "--format",
    choices=("jpeg", "png"),
    default="jpeg",
    help="frame/image encoding (DAVIS masks are always PNG)",
  )
  parser.add_argument(
    "--quality", type=int, default=None, help=f"JPEG quality (videos {QUALITY}, images and DAVIS 95)"
  )
  parser.add_argument(
    "--size",
    type=int,
    default=None,
    help="downscale so the shorter side is at most this (videos: 256, images: none)",
  )
  parser.add_argument("--max-frames", type=int, default=None, help="keep the first N frames")
  parser.add_argument("--min-frames", type=int, default=1, help="skip shorter videos")
  parser.add_argument("--fps", type=float, default=None, help="skip videos at another fps")
  parser.add_argument("--valid-fraction", type=float, default=0.2, help="images: valid share")
  parser.add_argument("--seed", type=int, default=42, help="images: split seed")
  parser.add_argument("--resolution", default="480p", help="DAVIS resolution folder")
  parser.add_argument("--report", default=None, help="skip report path (JSON)")
  a = parser.parse_args(argv)
  if a.kind == "videos":
    opts = {
      "workers": a.workers,
      "videos_per_shard": a.videos_per_shard,
      "format": a.format,
      "quality": a.quality or QUALITY,
      "size": 256 if a.size is None else a.size,
      "max_frames": a.max_frames,
      "min_frames": a.min_frames,
      "fps": a.fps,
    }
  else:
    opts = {
      "format": a.format,
      "quality": a.quality or 95,
      "size": a.size,
      "valid_fraction": a.valid_fraction,
      "seed": a.seed,
      "resolution": a.resolution,
    }
  if a.report:
    opts["report"] = Path(a.report)
  try:
    check_output(a.out, inputs=[a.src], overwrite=True, folder=True, what="--out")
    path = prepare(a.kind, a.src, a.out, **opts)
  except (FileNotFoundError, ValueError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("interrupted: finished shards are kept; run the same command again to resume", file=sys.stderr)
    return 130
  except OSError as e:  # a full disk or an I/O error while writing: finished shards are complete
    where = e.filename or a.out
    print(
      f"error: {where}: cannot write ({e.strerror or type(e).__name__}); finished shards are kept; "
      "free space and run the same command again to resume",
      file=sys.stderr,
    )
    return 1
  print(f"prepared {a.kind} from {a.src} into {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
