"""`prepare videos` figures: JPEG quality vs size and PSNR, CPU per frame, 1 vs 2 workers.

    python -m bench.prepare_videos --clips /tmp/kinetics_like [--no-write]

`--clips` is a Kinetics-like folder made by `python -m bench.clips` (10 s, 30 fps, 340×256 H.264
cut from the real footage). Prints markdown and appends it, dated, to `bench/RESULTS.md`:

- per JPEG quality: mean bytes per frame, mean PSNR against the decoded H.264 frame (every 10th
  frame of every clip), JPEG encode CPU-ms per frame, and Kinetics-400's size at that rate
  (240k clips × 10 s × 30 fps = 72M frames; Kinetics at short side 256 is mostly 16:9, 455×256,
  1.34× the pixels of these clips, so the estimate scales bytes per frame by that ratio too);
- `prepare_videos` with 1 worker (in-process) and 2 worker processes: wall time, CPU-ms per frame
  (this process and its workers, start-up included), bytes per frame, and the wall-time speed-up.
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
K400_FRAMES = 240_000 * 10 * 30
WIDE = (455 * 256) / (340 * 256)


def quality_table(clips: list[Path], qualities=(50, 60, 70, 75, 80, 85, 90, 95), every: int = 10):
  """Rows (q, bytes/frame, PSNR dB, encode CPU-ms/frame) over every `every`-th frame of `clips`."""
  from aejax.data.prepare import encode_frame
  from aejax.data.video import read_frames
  from aejax.metrics import psnr

  frames = np.concatenate([read_frames(p)[0][::every] for p in clips])
  rows = []
  for q in qualities:
    t = time.process_time()
    enc = [encode_frame(f, "jpeg", q) for f in frames]
    cpu = (time.process_time() - t) / len(frames)
    dec = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for b in enc])
    p = float(np.mean(np.asarray(psnr(dec, frames, max_val=255.0))))
    rows.append((q, float(np.mean([len(b) for b in enc])), p, 1e3 * cpu))
  return rows, len(frames)


def timed_prepare(src: Path, workers: int, quality: int) -> dict:
  """One `prepare_videos` run in a fresh folder: wall s, CPU s (with workers), frames, bytes."""
  from aejax.data.prepare_videos import prepare_videos, video_folder

  with tempfile.TemporaryDirectory() as tmp:
    t0, c0 = time.perf_counter(), _cpu()
    prepare_videos(src, tmp, workers=workers, quality=quality, videos_per_shard=2, progress=None)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    folder = video_folder(tmp)
    import json

    rows = json.loads((folder / "aejax_index_train.json").read_text())
    nbytes = sum(
      p.stat().st_size for p in folder.glob("aejax_videos-train.array_record-*-of-*") if p.suffix != ".json"
    )
  return {"wall": wall, "cpu": cpu, "frames": sum(r["num_frames"] for r in rows), "bytes": nbytes}


def _cpu() -> float:
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--clips", type=Path, required=True)
  p.add_argument("--quality", type=int, default=None, help="for the worker runs (default: prepare's)")
  p.add_argument("--repeats", type=int, default=2, help="runs per worker count (best wall kept)")
  p.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
  p.add_argument("--no-write", action="store_true")
  a = p.parse_args(argv)
  from aejax.data.prepare import QUALITY
  from aejax.data.scan import find_videos

  clips = find_videos(a.clips)
  q = a.quality or QUALITY
  rows, nf = quality_table(clips)
  load0 = os.getloadavg()[0]
  runs = {w: [timed_prepare(a.clips, w, q) for _ in range(a.repeats)] for w in (1, 2)}
  best = {w: min(r, key=lambda x: x["wall"]) for w, r in runs.items()}
  lines = [
    f"### JPEG quality ({nf} frames: every 10th of {len(clips)} clips in `{a.clips}`)",
    "",
    "| quality | bytes / frame | PSNR vs H.264 frame (dB) | encode CPU-ms / frame | "
    "Kinetics-400 at 340×256 | at 455×256 |",
    "|---|---|---|---|---|---|",
  ]
  for qq, b, ps, c in rows:
    lines.append(
      f"| {qq}{' (default)' if qq == QUALITY else ''} | {b / 1e3:.1f} kB | {ps:.2f} | "
      f"{c:.2f} | {b * K400_FRAMES / 1e12:.2f} TB | {b * WIDE * K400_FRAMES / 1e12:.2f} TB |"
    )
  lines += [
    "",
    f"### prepare_videos, quality {q}, {len(clips)} clips, 2 videos per shard "
    f"(best wall of {a.repeats} runs per row)",
    "",
    "| workers | wall (s) | CPU-ms / frame (all processes) | bytes / frame | speed-up |",
    "|---|---|---|---|---|",
  ]
  for w, r in best.items():
    lines.append(
      f"| {w} | {r['wall']:.1f} | {1e3 * r['cpu'] / r['frames']:.2f} | "
      f"{r['bytes'] / r['frames'] / 1e3:.1f} kB | {best[1]['wall'] / r['wall']:.2f}× |"
    )
  lines += [
    "",
    f"1-min load average {load0:.1f} before the worker runs, {os.getloadavg()[0]:.1f} after "
    f"({os.cpu_count()} cores, shared with other jobs).",
  ]
  text = "\n".join(lines)
  print(text)
  if not a.no_write:
    from bench.common import append_section

    cmd = f"python -m bench.prepare_videos --clips {a.clips}"
    append_section(Path(a.results), "Prepare videos", cmd, text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
