"""`python -m bench --cpu | --gpu`: every model's training step, JAX vs PyTorch, and the apps.

One child process per workload (`bench/harness.py`) calls the per-model bench scripts' functions;
this parent measures nothing itself, collects their `BENCHROW` lines, and writes the "Summary"
section at the top of `bench/RESULTS.md` (machine, versions, command, table) with
`bench.common.update_section`. Other sections of RESULTS.md are left as they are.

  python -m bench --cpu                       # small batches, minutes on 2 CPU cores
  python -m bench --gpu --log-dir "$OUT"      # the issue's batch sizes (bench/gpu_check.sh runs this)
  python -m bench --cpu --only keyframes oval --no-write

Columns: examples/s; ratio = JAX / torch.compile (eager when compile did not run); TFLOP/s from the
analytic matmul + conv count of the whole step (forward, backward, update; `bench.common.count_flops`)
over the measured step time, the same count for both frameworks; share of the matmul peak measured
in the same run; peak memory (GPU: the framework's peak; CPU: the child process's max RSS so far);
compile = first step minus a timed step; check = loss equality of JAX and PyTorch on the same
weights and inputs before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The targets first (SiamMAE, key-frame AE), so a tight --budget still measures them.
ORDER = ["peak", "siammae", "keyframes", "oval", "vae", "vqae3d", "labelprop", "pipeline", "extract"]
# Per-workload time limits (s); --timeout overrides them all.
TIMEOUTS = {"cpu": dict(default=420), "gpu": dict(default=150, siammae=240, keyframes=180)}


def run_child(name: str, mode: str, timeout: float, log_dir: Path | None) -> list[dict]:
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  if mode == "cpu":
    env["JAX_PLATFORMS"] = "cpu"
  else:
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # PyTorch shares the GPU
  cmd = [sys.executable, "-m", "bench", "--child", name, f"--{mode}"]
  log = (log_dir or Path(tempfile.mkdtemp(prefix="bench_"))) / f"bench_{name}.log"
  t0 = time.perf_counter()
  with open(log, "w") as f:  # streamed, so a long workload can be followed with `tail -f`
    f.write(f"$ {' '.join(cmd)}\n")
    f.flush()
    p = subprocess.Popen(
      cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
      rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      os.killpg(p.pid, signal.SIGKILL)  # the child and its workers (Grain, torch.compile)
      p.wait()
      rc = "timeout"
  wall = time.perf_counter() - t0
  out = log.read_text()
  err = "\n".join(line for line in out.splitlines() if not line.startswith("BENCHROW "))
  rows = [json.loads(line[9:]) for line in out.splitlines() if line.startswith("BENCHROW ")]
  if rc == "timeout":
    rows.append(
      {
        "workload": name,
        "kind": "error",
        "side": "-",
        "per_s": None,
        "note": f"timed out after {timeout:.0f} s (rows it printed before that are kept)",
      }
    )
  elif rc and not any(r.get("kind") == "error" for r in rows):
    last = (err.strip().splitlines() or ["?"])[-1][:160]
    rows.append({"workload": name, "kind": "error", "side": "-", "per_s": None, "note": f"exit {rc}: {last}"})
  for r in rows:
    r["child"] = name
  print(f"[bench] {name}: {len(rows)} rows, {wall:.0f} s, rc {rc}", flush=True)
  for r in rows:
    print("  ", json.dumps(r), flush=True)
  return rows


def _f(x, fmt: str, dash: str = "–") -> str:
  return dash if x is None else format(x, fmt)


def _rate(x) -> str:
  """Throughput with three significant digits below 1,000 (CPU figures are small)."""
  if x is None:
    return "not available"
  return f"{x:.3g}" if x < 1000 else f"{x:,.0f}"


def train_table(rows: list[dict], peak: float | None) -> tuple[str, list[tuple[str, float]]]:
  from bench.common import ratio

  lines = [
    "| training step | side | batch | examples/s | ratio JAX / torch.compile | TFLOP/s | "
    "share of matmul peak | peak memory (GiB) | compile (s) | loss check | note |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  gaps = []
  by_w: dict[str, list[dict]] = {}
  for r in rows:
    by_w.setdefault(r["workload"], []).append(r)
  for w, rs in by_w.items():
    jax_r = next((r for r in rs if r["side"].startswith("JAX") and r.get("per_s")), None)
    rt = ratio(rs)  # (JAX / torch.compile, or / eager where compile did not run, "torch.compile" | "eager")
    if rt:
      gaps.append((w, rt[0]))
    for r in rs:
      cell = ""
      if r is jax_r and rt:
        cell = f"{rt[0]:.2f}×" + ("" if rt[1] == "torch.compile" else " (vs eager)")
      fl = r.get("flops")
      tf = fl / (r["step_ms"] / 1e3) / 1e12 if fl and r.get("step_ms") else None
      share = f"{100 * tf * 1e12 / peak:.1f} %" if tf and peak else "–"
      mem = r.get("mem_bytes")
      comp = None if "eager" in r["side"] else r.get("compile_s")  # eager: nothing to compile
      lines.append(
        f"| {w} | {r['side']} | {_f(r.get('batch'), 'd')} | {_rate(r.get('per_s'))} | "
        f"{cell} | {_f(tf, '.3f')} | {share} | {_f(mem and mem / 2**30, '.2f')} | "
        f"{_f(comp, '.1f')} | {r.get('check', '')} | {r.get('note', '')} |"
      )
  return "\n".join(lines), gaps


def app_table(rows: list[dict]) -> str:
  lines = ["| app | side | batch | throughput | start-up / compile (s) | note |", "|---|---|---|---|---|---|"]
  for r in rows:
    per = "not available" if r.get("per_s") is None else f"{_rate(r['per_s'])} {r.get('unit', '')}"
    lines.append(
      f"| {r['workload']} | {r['side']} | {_f(r.get('batch'), 'd')} | {per} | "
      f"{_f(r.get('compile_s'), '.1f')} | {r.get('note', '')} |"
    )
  return "\n".join(lines)


def versions() -> str:
  out = [f"Python {platform.python_version()}"]
  for mod in ("jax", "flax", "optax", "torch"):
    try:
      out.append(f"{mod} {__import__(mod).__version__}")
    except ImportError:
      out.append(f"{mod} not installed")
  return ", ".join(out)


def machine_line(mode: str) -> str:
  cpu = platform.processor()
  try:
    cpu = next(
      line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
    )
  except (OSError, StopIteration):
    pass
  gpu = ""
  if mode == "gpu":
    try:
      gpu = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=20,
      ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
      gpu = "nvidia-smi not available"
    gpu = f"GPU: {gpu}; "
  return f"{gpu}CPU: {cpu}, {os.cpu_count()} cores; {versions()}"


def ensure_summary_first(path: Path) -> None:
  """Puts an empty `## Summary` right under the title once, so update_section keeps it on top."""
  text = path.read_text() if path.exists() else "# Benchmark results\n"
  if "\n## Summary\n" in text:
    return
  head, sep, rest = text.partition("\n## ")
  path.write_text(head.rstrip() + "\n\n## Summary\n\n(pending)\n" + (("\n## " + rest) if sep else ""))


def merge_runs(paths: list[Path]) -> list[dict]:
  """Rows of several --json files; per workload the last file that measured it wins (a file where
  it failed or was skipped only when no file measured it)."""
  runs = [[json.loads(x) for x in p.read_text().splitlines() if x.strip()] for p in paths]
  best: dict[str, tuple[int, int]] = {}  # child -> (score, file): measured 2, failed 1, skipped 0
  for i, rows in enumerate(runs):
    for r in rows:
      if r.get("child"):
        score = 2 if r.get("kind") != "error" else 0 if str(r.get("note", "")).startswith("skipped") else 1
        if score >= best.get(r["child"], (-1, -1))[0]:
          best[r["child"]] = (score, i)
  owner = {c: i for c, (_, i) in best.items()}
  out = [
    r
    for i, rows in enumerate(runs)
    for r in rows
    if r.get("kind") != "meta" and owner.get(r.get("child"), i) == i
  ]
  metas = [r for rows in runs for r in rows if r.get("kind") == "meta"]
  if metas:
    out.append(
      {
        **metas[0],
        "load1": metas[-1]["load1"],
        "wall": sum(m.get("wall", 0) for m in metas),
        "argv": [" ; python -m bench ".join(" ".join(m.get("argv", [])) for m in metas)],
      }
    )
  return out


def run_all(names: list[str], mode: str, a) -> list[dict]:
  """Runs the workloads one child at a time inside `a.budget`; ends with a `meta` row."""
  load0, t0 = os.getloadavg()[0], time.perf_counter()
  rows = []
  for n in names:
    timeout = a.timeout or TIMEOUTS[mode].get(n, TIMEOUTS[mode]["default"])
    if a.budget:
      left = a.budget - (time.perf_counter() - t0)
      if left < 30:
        rows.append(
          {
            "workload": n,
            "kind": "error",
            "side": "-",
            "per_s": None,
            "child": n,
            "note": f"skipped: the {a.budget:.0f} s budget was spent",
          }
        )
        continue
      timeout = min(timeout, left)
    rows += run_child(n, mode, timeout, a.log_dir)
  rows.append(
    {
      "kind": "meta",
      "load0": load0,
      "load1": os.getloadavg()[0],
      "wall": time.perf_counter() - t0,
      "argv": sys.argv[1:],
      "machine": machine_line(mode),
    }
  )
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  g = p.add_mutually_exclusive_group(required=True)
  g.add_argument("--cpu", action="store_true", help="CPU-sized table")
  g.add_argument("--gpu", action="store_true", help="the issue's GPU batch sizes")
  p.add_argument("--only", nargs="*", choices=ORDER, help="a subset of the workloads")
  p.add_argument(
    "--timeout",
    type=float,
    default=0,
    help="seconds per workload (default: cpu 420; gpu 150, SiamMAE 240, key-frame AE 180)",
  )
  p.add_argument(
    "--budget",
    type=float,
    default=0,
    help="seconds for the whole run; workloads that no longer fit get a 'skipped' row",
  )
  p.add_argument("--log-dir", type=Path, help="write each child's output there")
  p.add_argument("--json", type=Path, help="also write every row as JSON lines")
  p.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
  p.add_argument(
    "--from-json",
    type=Path,
    nargs="+",
    help="re-render the table from --json files of earlier runs (a workload measured in a "
    "later file replaces the earlier file's rows for it)",
  )
  p.add_argument("--child", help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  mode = "gpu" if a.gpu else "cpu"
  if a.child:
    from bench.harness import child

    return child(a.child, mode)
  names = [n for n in ORDER if not a.only or n in a.only or n == "peak"]
  if a.log_dir:
    a.log_dir.mkdir(parents=True, exist_ok=True)
  if a.from_json:
    rows = merge_runs(a.from_json)
  else:
    rows = run_all(names, mode, a)
    if a.json:
      a.json.write_text("".join(json.dumps(r) + "\n" for r in rows))
  meta = next((r for r in rows if r.get("kind") == "meta"), {})
  load0, load1, wall = meta.get("load0", float("nan")), meta.get("load1", float("nan")), meta.get("wall", 0)
  argv_used = meta.get("argv") or (argv if argv is not None else sys.argv[1:])
  peak_row = next((r for r in rows if r.get("kind") == "peak"), None)
  peak = peak_row and peak_row.get("flops")
  train, gaps = train_table([r for r in rows if r.get("kind") == "train"], peak)
  apps = app_table([r for r in rows if r.get("kind") == "app"])
  errors = [r for r in rows if r.get("kind") == "error"]
  cmd = "python -m bench " + " ".join(argv_used)
  gap_line = ""
  if gaps:
    w, g_ = min(gaps, key=lambda x: x[1])
    gap_line = f"Largest gap left (lowest JAX / PyTorch ratio): {w}, {g_:.2f}×. "
  noisy = (
    f"Load average {load0:.1f} at the start, {load1:.1f} at the end: a shared machine, figures are noisy. "
    if mode == "cpu"
    else ""
  )
  from bench.common import BF16_RTOL

  body = "\n\n".join(
    filter(
      None,
      [
        f"`{cmd}` — {'CPU-sized' if mode == 'cpu' else 'GPU-sized'} table, {wall / 60:.1f} min in all; "
        f"one child process per workload, calling the per-model scripts' functions.",
        f"Machine: {meta.get('machine') or machine_line(mode)}. Matmul peak measured in this run: "
        f"{_f(peak and peak / 1e12, '.3f')} TFLOP/s ({(peak_row or {}).get('note', 'not measured')}).",
        train,
        apps,
        ("Failed or missing: " + "; ".join(f"{r['workload']}: {r['note']}" for r in errors))
        if errors
        else "",
        f"{gap_line}{noisy}TFLOP/s counts only matmuls and convolutions (analytic, whole step), the same "
        "count for both frameworks. Ratio is JAX over torch.compile (over eager where compile did not run). "
        "Both sides compute in the note's dtype (bf16 on GPU: the JAX models' `dtype`, PyTorch bf16 "
        "autocast; f32 on CPU), parameters and losses in float32. Loss check: the per-model script's own "
        f"check (same weights and inputs; float32 at full precision, and bf16 within {BF16_RTOL:.0e} where "
        "the step computes in bf16) run before timing.",
        ""
        if mode == "gpu"
        else "The GPU-sized table: `bash bench/gpu_check.sh` on a GPU machine (its header "
        "says which wheels to carry); it runs the correctness checks, then `python -m bench --gpu`.",
      ],
    )
  )
  print(body)
  if not a.no_write:
    from bench.common import RESULTS, update_section

    ensure_summary_first(RESULTS)
    update_section("Summary", body)
    print(f"updated {RESULTS}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
