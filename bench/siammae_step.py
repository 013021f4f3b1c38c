"""SiamMAE training-step throughput (pairs/s), the engine's jitted step on random frame pairs.

  python bench/siammae_step.py                      # CPU: the demo preset's step (steps/s)
  python bench/siammae_step.py --preset paper --batch 256 --attention cudnn --torch
      # GPU: ViT-S/16, batch 256 pairs, bf16; with --torch also bench/torch_ref/siammae.py
      # (eager and torch.compile) in the same run, for the side-by-side ratio

Prints one JSON line per configuration: pairs/s, steps/s, step ms, compile s, the compiled step's
FLOPs (XLA cost analysis) and achieved TFLOP/s. Reference on an H100 (specs/stack.md): PyTorch
eager 1,930 pairs/s, torch.compile 2,866, plain Flax 1,632; the target is 1.5x torch.compile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aejax.train import init_state, make_train_step  # noqa: E402
from experiments import siammae as exp  # noqa: E402


def bench(
  preset: str, batch: int | None, attention: str | None, dtype: str | None, steps: int, warmup: int
) -> dict:
  config = getattr(exp, preset)()
  if batch:
    config.data.batch_size = batch
  if dtype:
    config.model.dtype = dtype
  config.model.attention = attention
  model = exp.build_model(config)
  tx, _ = exp.optimiser(config)
  s, r = config.data.image_size, config.data.repeats
  b = config.data.batch_size // r
  rng = np.random.default_rng(0)
  batch_np = {"frames": rng.integers(0, 256, (b, r, 2, s, s, 3), dtype=np.uint8)}
  runner = make_train_step(model, exp.loss_fn, tx, parallel="jit")
  state = jax.jit(lambda k: init_state(model, tx, k, exp.example_pair(config)))(jax.random.PRNGKey(0))
  state = runner.put_state(state)
  dev_batch = runner.put_batch(batch_np)  # the input pipeline is measured separately
  key = jax.random.PRNGKey(1)
  t0 = time.perf_counter()
  compiled = runner._fn.lower(state, dev_batch, key).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float((cost or {}).get("flops", 0.0))
  for _ in range(warmup):
    state, m = compiled(state, dev_batch, key)
  jax.block_until_ready(m)
  t0, c0 = time.perf_counter(), time.process_time()
  for _ in range(steps):
    state, m = compiled(state, dev_batch, key)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t0) / steps
  cpu = (time.process_time() - c0) / steps  # CPU seconds of this process (shared hosts)
  pairs = config.data.batch_size
  return {
    "impl": "jax",
    "preset": preset,
    "device": jax.devices()[0].device_kind,
    "attention": attention or "default(xla)",
    "dtype": config.model.dtype,
    "batch_pairs": pairs,
    "image": s,
    "encoder": config.model.encoder,
    "step_ms": round(dt * 1e3, 2),
    "steps_per_s": round(1 / dt, 3),
    "cpu_s_per_step": round(cpu, 3),
    "load_avg_1m": round(_load(), 1),
    "pairs_per_s": round(pairs / dt, 1),
    "compile_s": round(compile_s, 1),
    "gflop_per_step": round(flops / 1e9, 1),
    "tflops_per_s": round(flops / dt / 1e12, 2),
    "loss": float(m["loss"]),
  }


def _load() -> float:
  try:
    import os

    return os.getloadavg()[0]
  except OSError:
    return float("nan")


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--preset", default="demo", choices=["demo", "paper", "smoke"])
  p.add_argument("--batch", type=int, default=0, help="pairs per step (default: the preset's)")
  p.add_argument("--attention", default="auto", help="auto (cudnn on GPU, falling back), none, xla, cudnn")
  p.add_argument("--dtype", default="", help="float32 / bfloat16 (default: the preset's)")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--torch", action="store_true", help="also run bench/torch_ref/siammae.py")
  a = p.parse_args()
  gpu = jax.default_backend() == "gpu"
  choices = {"auto": ["cudnn", None] if gpu else [None], "none": [None]}.get(a.attention, [a.attention])
  for impl in choices:
    try:
      print(
        json.dumps(bench(a.preset, a.batch or None, impl, a.dtype or None, a.steps, a.warmup)), flush=True
      )
      break
    except (NotImplementedError, RuntimeError, ValueError) as e:  # cudnn refused a shape
      print(json.dumps({"impl": "jax", "attention": impl, "error": str(e).splitlines()[0]}), flush=True)
  if a.torch:
    cmd = [
      sys.executable,
      str(ROOT / "bench" / "torch_ref" / "siammae.py"),
      "--batch",
      str(a.batch or 256),
      "--steps",
      str(a.steps),
    ]
    subprocess.run(cmd, check=False)


if __name__ == "__main__":
  main()
