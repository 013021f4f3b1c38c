"""Label-propagation throughput: frames/s of `aejax.labelprop.propagate` at the DAVIS setting.

SiamMAE's DAVIS-2017 protocol (Gupta et al. 2023, Table 4b, with CropMAE's 480×880 input): a
ViT/16 gives a 30×55 feature grid, D = 384 (ViT-S), 20 context frames plus the first, top-7,
neighbourhood 20, temperature 0.7. Features are random (the cost does not depend on them).
Every available platform is measured (CPU always, GPU/TPU when JAX sees one); the time of the
first call (compile + run) is reported apart. Also times the upsample-to-480×880 + argmax step.

  python bench/labelprop.py                 # prints the table, updates bench/RESULTS.md
  python bench/labelprop.py --frames 8 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from aejax import labelprop

SECTION = "## Label propagation"


def _devices():
  out = [("cpu", jax.devices("cpu")[0])]
  for backend in ("gpu", "tpu"):
    try:
      out.append((backend, jax.devices(backend)[0]))
    except RuntimeError:
      pass
  return out


def _cpu_name() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def bench_one(device, args) -> dict:
  h, w = args.grid
  rng = np.random.default_rng(0)
  frames = args.frames if device.platform != "cpu" else min(args.frames, args.cpu_frames)
  feats = rng.normal(size=(frames, h, w, args.dim)).astype(np.float32)
  lab0 = rng.integers(0, args.classes, size=(h, w))
  kw = dict(
    context=args.context,
    topk=args.topk,
    radius=args.radius,
    temperature=args.temperature,
    neighbourhood=args.neighbourhood,
  )
  with jax.default_device(device):
    feats_d = jax.device_put(feats, device)
    t0 = time.perf_counter()
    out = labelprop.propagate(feats_d, lab0, **kw).block_until_ready()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      out = labelprop.propagate(feats_d, lab0, **kw).block_until_ready()
      times.append(time.perf_counter() - t0)
    size = (h * args.patch, w * args.patch)
    ids = labelprop._soft_to_ids(out[:8], size=size, norm_mask=False).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(args.repeats):
      ids = labelprop._soft_to_ids(out[:8], size=size, norm_mask=False)
    ids.block_until_ready()
    up = (time.perf_counter() - t0) / (args.repeats * min(8, frames))
  med = statistics.median(times)
  return {
    "platform": device.platform,
    "device": device.device_kind,
    "frames": frames,
    "s_per_frame": med / (frames - 1),
    "fps": (frames - 1) / med,
    "first_call_s": first,
    "upsample_ms": up * 1e3,
  }


def table(rows) -> str:
  lines = [
    "| platform | device | frames | ms / frame | frames/s | first call (s) | "
    "upsample to input size + argmax (ms / frame) |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['platform']} | {r['device']} | {r['frames']} | "
      f"{r['s_per_frame'] * 1e3:.1f} | {r['fps']:.2f} | {r['first_call_s']:.1f} | "
      f"{r['upsample_ms']:.1f} |"
    )
  return "\n".join(lines)


def update_results(path: Path, body: str) -> None:
  text = path.read_text() if path.is_file() else "# Benchmark results\n"
  section = f"{SECTION}\n\n{body.strip()}\n"
  pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
  else:
    text = text.rstrip() + "\n\n" + section
  path.write_text(text)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--frames", type=int, default=64, help="sequence length on accelerators")
  p.add_argument("--cpu_frames", type=int, default=12, help="sequence length on the CPU")
  p.add_argument("--grid", type=int, nargs=2, default=(30, 55))
  p.add_argument("--patch", type=int, default=16)
  p.add_argument("--dim", type=int, default=384)
  p.add_argument("--classes", type=int, default=4, help="objects + background")
  p.add_argument("--context", type=int, default=20)
  p.add_argument("--topk", type=int, default=7)
  p.add_argument("--radius", type=int, default=20)
  p.add_argument("--temperature", type=float, default=0.7)
  p.add_argument("--neighbourhood", default="square", choices=["square", "euclidean"])
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
  p.add_argument("--no-write", action="store_true")
  args = p.parse_args(argv)
  rows = [bench_one(dev, args) for _, dev in _devices()]
  h, w = args.grid
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  body = (
    f"`python bench/labelprop.py` — `propagate` on a {h * args.patch}×{w * args.patch} sequence "
    f"({h}×{w} grid, D={args.dim}, {args.context} context frames + the first, top-{args.topk}, "
    f"{args.neighbourhood} neighbourhood {args.radius}, {args.classes} classes), random features,"
    f" median of {args.repeats} runs after a first (compiling) call; frames/s counts propagated "
    f"frames (T − 1).\n\n{table(rows)}\n\n"
    f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, jax {jax.__version__}, "
    f"CPU: {_cpu_name()}, {os.cpu_count()} cores visible, 1-min load average {load:.1f} "
    f"(shared machine: CPU figures are noisy)."
  )
  print(body)
  if not args.no_write:
    update_results(Path(args.results), body)
    print(f"updated {args.results}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
