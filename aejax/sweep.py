"""Grid sweeps over any experiment's config, with a ranked summary.

  python -m aejax.sweep experiments.oval --grid optim.lr=1e-3,3e-3 data.batch_size=8,16 \
      [--preset P] [--workdir DIR] [--mode train] [--rank_by score] [--config.x.y=v ...]

Every combination of the grid runs the experiment's `mode` (default `train`) in its own workdir
`DIR/<key=value,...>` (so each model is kept, and a re-run resumes or skips finished runs), then
the experiment's optional hook `sweep_score(config, workdir) -> dict[str, float]` scores it (OVAL
converts a validation video and reports quality per bit). Without the hook, the last logged
training loss is the score (lower is better). The summary is written as `summary.csv`,
`summary.md` and `summary.png` in DIR, ranked by `--rank_by` (higher first unless `--ascending`
or the fallback loss). This replaces OVAL's `tune_model.py`, which launched runs but collected
nothing.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import itertools
import json
import math
import re
import sys
import time
import traceback
from pathlib import Path

from aejax import cli


def split_values(text: str) -> list[str]:
  """'1e-3,3e-3' → ['1e-3', '3e-3']; commas inside (), [] or quotes do not split."""
  out, depth, cur, quote = [], 0, "", None
  for ch in text:
    if quote:
      quote = None if ch == quote else quote
    elif ch in "\"'":
      quote = ch
    elif ch in "([":
      depth += 1
    elif ch in ")]":
      depth -= 1
    elif ch == "," and depth == 0:
      out.append(cur)
      cur = ""
      continue
    cur += ch
  out.append(cur)
  return [v.strip() for v in out if v.strip()]


def parse_grid(items: list[str]) -> dict[str, list[str]]:
  """['optim.lr=1e-3,3e-3', ...] → {'optim.lr': ['1e-3', '3e-3'], ...}."""
  grid = {}
  for item in items:
    if "=" not in item:
      raise cli.UsageError(f"--grid item {item!r} is not KEY=V1,V2,...")
    key, vals = item.split("=", 1)
    key = key.removeprefix("--config.").strip()
    values = split_values(vals)
    if not values:
      raise cli.UsageError(f"--grid {key}: no values")
    grid[key] = values
  return grid


def combinations(grid: dict[str, list[str]]) -> list[dict[str, str]]:
  """Every combination of the grid's values, as `{key: value}` dicts (the grid's key order)."""
  keys = list(grid)
  return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def run_name(combo: dict[str, str]) -> str:
  """A folder name for one combination: `key=value,...` with unsafe characters as `_`."""
  text = ",".join(f"{k}={v}" for k, v in combo.items())
  return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def _config(module, preset: str | None, overrides: dict[str, str]):
  cfg = getattr(module, preset)() if preset else module.get_config()
  return cli.apply_overrides(cfg, overrides)


def _last_loss(workdir: Path) -> dict:
  path = workdir / "metrics.jsonl"
  if not path.is_file():
    return {}
  last = {}
  for line in path.read_text().splitlines():
    rec = json.loads(line)
    if "loss" in rec:
      last = rec
  return {"final_loss": last["loss"]} if last else {}


def sweep(
  module_name: str,
  grid: dict[str, list[str]],
  *,
  workdir,
  preset: str | None = None,
  mode: str = "train",
  extra: dict[str, str] | None = None,
  rank_by: str | None = None,
  ascending: bool | None = None,
  verbose: bool = True,
) -> list[dict]:
  """Runs every combination and writes the ranked summary; returns the rows, best first."""
  module = importlib.import_module(module_name)
  extra = dict(extra or {})
  base = Path(workdir)
  base.mkdir(parents=True, exist_ok=True)
  scorer = getattr(module, "sweep_score", None)
  rows = []
  combos = combinations(grid)
  for i, combo in enumerate(combos):
    overrides = {**extra, **combo}
    wd = base / run_name(combo)
    argv = [mode, "--workdir", str(wd)] + (["--preset", preset] if preset else [])
    argv += [f"--config.{k}={v}" for k, v in overrides.items()]
    if verbose:
      print(f"[sweep {i + 1}/{len(combos)}] {run_name(combo)}", flush=True)
    row = {"run": run_name(combo), **combo, "status": "ok"}
    t0 = time.perf_counter()
    try:
      config = _config(module, preset, overrides)  # a bad key fails before any training
      module.main(argv=argv)
      row["seconds"] = round(time.perf_counter() - t0, 1)
      row.update(scorer(config, wd) if scorer is not None else _last_loss(wd))
    except cli.UsageError:
      raise
    except Exception as e:  # noqa: BLE001 - one failed run must not stop the sweep
      row["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
      row["seconds"] = round(time.perf_counter() - t0, 1)
      if verbose:
        traceback.print_exc()
    rows.append(row)
  key = rank_by or ("score" if scorer is not None else "final_loss")
  asc = ascending if ascending is not None else (scorer is None and key == "final_loss")
  good = [r for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
  good.sort(key=lambda r: r[key], reverse=not asc)
  ranked = good + [r for r in rows if r not in good]
  for rank, r in enumerate(ranked, 1):
    r["rank"] = rank if r in good else ""
  write_summary(
    ranked, base, key, title=f"{module_name} sweep ({'lower' if asc else 'higher'} {key} is better)"
  )
  return ranked


def write_summary(rows: list[dict], out_dir: Path, key: str, title: str) -> None:
  """Writes the ranked rows as `summary.csv`, `summary.md` and a bar chart `summary.png`."""
  cols = ["rank", "run"] + [c for r in rows for c in r if c not in ("rank", "run")]
  cols = list(dict.fromkeys(cols))
  with open(out_dir / "summary.csv", "w", newline="") as f:
    wr = csv.DictWriter(f, fieldnames=cols)
    wr.writeheader()
    wr.writerows(rows)
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
  lines = [f"# {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
  (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
  from aejax.viz import pyplot, save_figure

  plt = pyplot()
  scored = [r for r in rows if isinstance(r.get(key), (int, float))]
  fig, ax = plt.subplots(figsize=(8, 0.5 * max(len(scored), 2) + 1.2))
  ax.barh([r["run"] for r in scored][::-1], [r[key] for r in scored][::-1])
  ax.set_xlabel(key)
  ax.set_title(title, fontsize=9)
  save_figure(fig, out_dir / "summary.png", dpi=100)


def main(argv=None) -> list[dict]:
  """`python -m aejax.sweep EXPERIMENT --grid KEY=V1,V2 ...`: runs the sweep, prints the best rows."""
  p = argparse.ArgumentParser(
    prog="python -m aejax.sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("experiment", help="module with get_config() and main(argv), e.g. experiments.oval")
  p.add_argument("--grid", nargs="+", required=True, help="KEY=V1,V2,... (one per config key)")
  p.add_argument("--preset", default=None, help="the experiment's preset (default: its default)")
  p.add_argument("--workdir", default=None, help="sweep folder (default: workdirs/sweep_<name>)")
  p.add_argument("--mode", default="train", help="the experiment mode each run executes")
  p.add_argument("--rank_by", default=None, help="score column to rank by (default: score)")
  p.add_argument("--ascending", action="store_true", default=None, help="lower is better")
  args, rest = p.parse_known_args(argv)
  try:
    grid = parse_grid(args.grid)
    extra = cli.split_overrides(rest)
    wd = args.workdir or f"workdirs/sweep_{args.experiment.split('.')[-1]}"
    rows = sweep(
      args.experiment,
      grid,
      workdir=wd,
      preset=args.preset,
      mode=args.mode,
      extra=extra,
      rank_by=args.rank_by,
      ascending=args.ascending,
    )
  except (cli.UsageError, ModuleNotFoundError, AttributeError) as e:
    if argv is not None:
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"summary: {Path(wd) / 'summary.md'}")
  for r in rows[:5]:
    print(json.dumps({k: v for k, v in r.items()}, default=str))
  return rows


if __name__ == "__main__":
  main()
