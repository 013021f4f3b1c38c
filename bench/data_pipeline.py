"""Input-pipeline CPU cost: Kinetics-like H.264 clips → 224² frame pairs, and the folder scan.

    python -m bench.clips --out /tmp/kl --clips 16 --synthetic 300   # the clips (once)
    python -m bench.data_pipeline --clips /tmp/kl [--clips /tmp/kl_g30] [--synthetic /tmp/kl/synthetic]

Work per output pair, as SiamMAE's loader does it: a gap of 4–48 frames at 30 fps, repeated
sampling 2 (two pairs from one opened video), one random resized crop (scale 0.5–1) to 224×224
and one flip per pair. Rows, for each `--clips` folder:

- raw H.264, OpenCV grabbing forward from frame 0 with one decoder thread (the reader before issue
  14; a fixed single-threaded reference workload), in-process;
- raw H.264, the seeking PyAV `VideoReader` (`VideoFiles`), in-process, and through
  `make_loader` with 2 worker processes;
- the same with `VideoPairSource(seek_window=W)` (`--seek-window`, default 7): first frames drawn
  at most W frames after a key frame (a documented change of the start distribution), in-process;
- the same clips prepared (`prepare_videos`, JPEG at its default quality), in-process, and
  through `make_loader` with 2 worker processes, at `--batch` and `--big-batch` elements per batch
  (a batch has a fixed transfer cost; training batches hold hundreds of elements).

In-process rows call `source.random_getitem` and the two transforms in a plain loop (CPU time of
this process); loader rows (one read thread per process) take the CPU time of this process and
its workers over two timed windows after a first untimed one (start-up and read-ahead excluded);
prepared rows time 4x `--pairs` (their pairs are ~10x cheaper). CPU-ms per pair is the work done
whatever else shares the cores; pairs/s (wall) depends on the machine's load, printed with it.
The scan rows time `scan_videos(..., cache_path=False)` per file, metadata only and exact.
Appends a dated section to `bench/RESULTS.md` (`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224


def _default_videos() -> Path:
  env = os.environ.get("AEJAX_REALDATA")
  base = Path(env) if env else ROOT.parent / "shared" / "realdata"
  return base / "videos"


def cpu_seconds() -> float:
  """CPU seconds used so far by this process (all threads) and its live child processes."""
  total = time.process_time()  # this process: nanosecond clock (children: clock ticks)
  tick = os.sysconf("SC_CLK_TCK")
  me = os.getpid()
  for pid in os.listdir("/proc"):
    if not pid.isdigit():
      continue
    try:
      rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
      continue
    if int(rest[1]) == me:
      total += (int(rest[11]) + int(rest[12])) / tick
  return total


class OpenCVFromStart:
  """The reader before issue 14, as a video collection: OpenCV, grabbing from frame 0 each read.

  One decoder thread (OpenCV's default is one per core, whose CPU cost depends on how often the
  threads overlap, i.e. on the machine's load): a fixed single-threaded reference workload.
  """

  def __init__(self, infos):
    self.infos, self.root = list(infos), ""

  def __len__(self) -> int:
    return len(self.infos)

  def info(self, i: int):
    return self.infos[i]

  def read(self, i: int, indices) -> np.ndarray:
    cap = cv2.VideoCapture(self.infos[i].path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    pos, got = 0, {}
    for idx in sorted(set(int(j) for j in indices)):
      while pos < idx:
        cap.grab()
        pos += 1
      ok, f = cap.read()
      pos += 1
      if not ok:
        raise ValueError(f"{self.infos[i].path}: cannot decode frame {idx}")
      got[idx] = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
    cap.release()
    return np.stack([got[int(j)] for j in indices])


def _transforms():
  from aejax.data.transforms import RandomFlip, RandomResizedCrop

  return [RandomResizedCrop(SIZE, scale=(0.5, 1.0)), RandomFlip()]


def source_run(source, num_pairs: int, seed: int = 0) -> tuple[float, float]:
  """(CPU s, wall s) per output pair: `random_getitem` + crop + flip in a plain loop."""
  crop, flip = _transforms()
  rng = np.random.default_rng(seed)
  e = flip.random_map(crop.random_map(source.random_getitem(0, rng), rng), rng)  # warm-up
  assert e["frames"].shape[-3:] == (SIZE, SIZE, 3)
  t0, c0 = time.perf_counter(), time.process_time()
  pairs, k = 0, 1
  while pairs < num_pairs:
    flip.random_map(crop.random_map(source.random_getitem(k, rng), rng), rng)
    pairs += source.repeats
    k += 1
  return (time.process_time() - c0) / pairs, (time.perf_counter() - t0) / pairs


def grain_run(source, num_pairs: int, batch: int, workers: int, seed: int, windows=2, threads=1):
  """(start-up s, wall s per pair, CPU s per pair) through `make_loader` with `threads` read threads
  per process; CPU and wall over `windows` timed windows of `num_pairs` after an untimed one."""
  from aejax.data.pipeline import make_loader

  repeats = getattr(source, "repeats", 1)
  t0 = time.perf_counter()
  it = make_loader(
    source, batch_size=batch, seed=seed, worker_count=workers, num_threads=threads, transforms=_transforms()
  )
  try:
    first = next(it)
    assert first["frames"].shape[-3:] == (SIZE, SIZE, 3) and len(first["frames"]) == batch
    start = time.perf_counter() - t0
    n = 0
    for w in range(windows + 1):  # window 0 drains the read-ahead buffers: not timed
      if w == 1:
        t1, c1 = time.perf_counter(), cpu_seconds()
      k = 0
      while k < num_pairs:
        for v in next(it).values():  # read one byte per page, as a consumer would: maps the pages
          np.asarray(v).reshape(-1)[::4096].sum()
        k += batch * repeats
      n += k if w else 0
    wall, cpu = (time.perf_counter() - t1) / n, (cpu_seconds() - c1) / n
  finally:
    if hasattr(it, "close"):
      it.close()
  return start, wall, cpu


def scan_run(folder: Path, exact_count) -> tuple[float, int]:
  """(CPU ms per file, files) of one uncached `scan_videos`."""
  from aejax.data.scan import scan_videos

  c0 = time.process_time()
  n = len(scan_videos(folder, cache_path=False, exact_count=exact_count))
  return 1e3 * (time.process_time() - c0) / n, n


def _versions() -> str:
  from importlib.metadata import version

  return (
    f"Python {sys.version.split()[0]}, grain {version('grain')}, av {version('av')}, opencv {cv2.__version__}"
  )


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
    "--clips", type=Path, action="append", required=True, help="a Kinetics-like clip folder (repeatable)"
  )
  p.add_argument("--synthetic", type=Path, default=None, help="a folder of many tiny clips (scan)")
  p.add_argument("--pairs", type=int, default=96, help="output pairs per timed run")
  p.add_argument("--batch", type=int, default=4, help="loader batch (elements of 2 pairs)")
  p.add_argument(
    "--big-batch", type=int, default=32, help="a second prepared loader row (training batches are larger)"
  )
  p.add_argument("--seek-window", type=int, default=7, help="raw rows with seek_window=W (-1: none)")
  p.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
  p.add_argument("--no-write", action="store_true")
  a = p.parse_args(argv)
  from absl import flags

  flags.FLAGS.mark_as_parsed()
  cv2.setNumThreads(1)
  from aejax.data.prepare import QUALITY
  from aejax.data.prepare_videos import PreparedVideos, prepare_videos
  from aejax.data.scan import scan_videos
  from aejax.data.sources import VideoFiles, VideoPairSource

  load0 = os.getloadavg()[0]
  pair_rows, scan_rows = [], []
  for folder in a.clips:
    infos = [i for i in scan_videos(folder, cache_path=False) if "synthetic" not in i.path]
    name = f"`{folder}` ({len(infos)} clips)"

    def pairs(videos, **kw):
      return VideoPairSource(videos, gap=(4, 48), repeats=2, seed=0, **kw)

    for label, videos in (
      ("raw H.264, OpenCV from frame 0, 1 thread (reference)", OpenCVFromStart(infos)),
      ("raw H.264, seeking reader", VideoFiles(infos)),
    ):
      cpu, wall = source_run(pairs(videos), a.pairs)
      pair_rows.append((name, label, "in-process", cpu, 1 / wall))
    _, wall, cpu = grain_run(pairs(VideoFiles(infos)), a.pairs, a.batch, 2, 0)
    pair_rows.append((name, "raw H.264, seeking reader", "make_loader, 2 workers", cpu, 1 / wall))
    if a.seek_window >= 0:
      cpu, wall = source_run(pairs(VideoFiles(infos), seek_window=a.seek_window), a.pairs)
      label = f"raw H.264, seeking reader, `seek_window={a.seek_window}`"
      pair_rows.append((name, label, "in-process", cpu, 1 / wall))
    with tempfile.TemporaryDirectory() as tmp:
      sub = Path(tmp) / "src"
      sub.mkdir()
      for i in infos:  # the clips only (not a synthetic sub-folder)
        (sub / Path(i.path).name).symlink_to(i.path)
      prepare_videos(sub, tmp, workers=1, progress=None)
      prepared = pairs(PreparedVideos(tmp))
      cpu, wall = source_run(prepared, 4 * a.pairs)  # ~2 ms per pair: longer windows
      pair_rows.append((name, f"prepared (JPEG q{QUALITY})", "in-process", cpu, 1 / wall))
      for batch in (a.batch, a.big_batch):
        _, wall, cpu = grain_run(prepared, 4 * a.pairs, batch, 2, 0)
        pipe = f"make_loader, 2 workers, batch {batch} ({batch * 2} pairs)"
        pair_rows.append((name, f"prepared (JPEG q{QUALITY})", pipe, cpu, 1 / wall))
    for exact in (None, True):
      ms, n = scan_run(folder, exact)
      scan_rows.append((f"`{folder}` ({n} files)", "metadata" if exact is None else "exact", ms))
  if a.synthetic:
    ms, n = scan_run(a.synthetic, None)
    scan_rows.append((f"`{a.synthetic}` ({n} tiny files)", "metadata", ms))
  lines = ["| clips | frames from | pipeline | CPU-ms / pair | pairs/s (wall) |", "|---|---|---|---|---|"]
  lines += [f"| {n} | {src} | {pipe} | {1e3 * cpu:.1f} | {ps:.1f} |" for n, src, pipe, cpu, ps in pair_rows]
  lines += ["", "| folder | scan | CPU-ms / file |", "|---|---|---|"]
  lines += [f"| {n} | {kind} | {ms:.2f} |" for n, kind, ms in scan_rows]
  lines += [
    "",
    f"1-min load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
    f"({os.cpu_count()} cores shared with other jobs: wall figures are noisy, CPU figures "
    f"less so). {_versions()}.",
  ]
  text = "\n".join(lines)
  print(text)
  if not a.no_write:
    cmd = (
      "python -m bench.data_pipeline "
      + " ".join(f"--clips {c}" for c in a.clips)
      + (f" --synthetic {a.synthetic}" if a.synthetic else "")
      + f" --pairs {a.pairs}"
    )
    from bench.common import append_section

    what = "Pairs: gap 4–48 at 30 fps, repeated sampling 2, 224² random resized crop + flip per pair."
    append_section(Path(a.results), "Video pairs and scan, seeking reader", cmd, f"{what}\n\n{text}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
