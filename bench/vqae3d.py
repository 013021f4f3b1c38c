"""3D conv compression autoencoder training throughput: JAX (aejax) vs PyTorch eager / torch.compile.

The ae_compressed_vision model (separate encoder/decoder residual stacks, K=128 scalar centroids,
soft-to-hard STE) on batches of 16 clips 1x20x64x64, MSE on [0, 1] pixels and Adam 1e-3: clips/s of
full training steps (forward, backward, update), median of `--steps` timed steps after one untimed
(compiling) step. Before timing, both sides get the same weights and inputs and their losses must
agree (relative 1e-4, train-mode BatchNorm), so they compute the same thing. JAX runs on its default
device, PyTorch on CUDA when available, else CPU.

  pip install -r bench/requirements.txt     # torch (CPU wheel by default)
  python bench/vqae3d.py                     # the faithful model, batch 16 (GPU-sized)
  python bench/vqae3d.py --demo --frames 10 --steps 3   # the CPU demo width (8/16, 1 block, k3)
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aejax.models.vqae3d import VQAE3D  # noqa: E402
from aejax.train import init_state, make_optimizer, make_train_step  # noqa: E402
from experiments.compressed_vision import loss_fn  # noqa: E402

SECTION = "## 3D conv compression AE (ae_compressed_vision)"


def model_kwargs(args) -> dict:
  if args.demo:
    return dict(features=(8, 16), latent_features=32, kernel_size=3, num_stages=1,
                blocks_per_stage=1, num_codes=128)
  return dict(num_codes=128)


def check_losses_agree(model, variables, torch_model, torch, frames: int) -> tuple[float, float]:
  """MSE of one batch of 2 clips on both sides (train-mode BatchNorm)."""
  x = np.random.default_rng(0).uniform(size=(2, frames, 64, 64, 1)).astype(np.float32)
  (recon, _), _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  jax_loss = float(jnp.mean((recon - x) ** 2))
  torch_model.train()
  xt = torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy())
  torch_loss = float(torch.mean((torch_model(xt) - xt) ** 2).detach())
  return jax_loss, torch_loss


def bench_jax(model, batch: int, frames: int, steps: int) -> dict:
  tx = make_optimizer("adam", 1e-3)
  example = jnp.zeros((1, frames, 64, 64, 1))
  state = jax.jit(lambda: init_state(model, tx, jax.random.key(0), example))()
  runner = make_train_step(model, loss_fn, tx, parallel="none")
  state = runner.put_state(state)
  video = np.random.default_rng(1).integers(0, 256, (batch, frames, 64, 64, 1), dtype=np.uint8)
  data = {"video": jax.device_put(video)}
  key = jax.random.key(0)
  t0 = time.perf_counter()
  state, m = runner(state, data, key)
  jax.block_until_ready(m)
  first = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, m = runner(state, data, key)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  return {"first_s": first, "step_s": statistics.median(times),
          "device": jax.devices()[0].device_kind}


def bench_torch(torch, model, batch: int, frames: int, steps: int, compiled: bool) -> dict:
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  model = model.to(dev).train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  fwd = torch.compile(model) if compiled else model
  x = torch.randint(0, 256, (batch, 1, frames, 64, 64), device=dev).float() / 255.0

  def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.mean((fwd(x) - x) ** 2)
    loss.backward()
    opt.step()
    if dev == "cuda":
      torch.cuda.synchronize()

  t0 = time.perf_counter()
  step()
  first = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
  return {"first_s": first, "step_s": statistics.median(times), "device": dev}


def write_results(rows, args, note: str) -> None:
  path = Path(__file__).with_name("RESULTS.md")
  head = "| side | device | batch | ms / step | clips/s | first step (s) |\n|---|---|---|---|---|---|\n"
  body = "".join(f"| {r['side']} | {r['device']} | {args.batch} | {1000 * r['step_s']:.0f} | "
                 f"{args.batch / r['step_s']:.2f} | {r['first_s']:.1f} |\n" for r in rows)
  flags = f"{' --demo' if args.demo else ''} --frames {args.frames} --batch {args.batch} --steps {args.steps}"
  text = (f"{SECTION}\n\n`python bench/vqae3d.py{flags}`: full training steps of "
          f"{'the CPU demo width' if args.demo else 'the faithful 31,024,099-parameter model'} on "
          f"1x{args.frames}x64x64 clips, median of {args.steps} steps after one compiling step.\n\n"
          f"{head}{body}\n{note}\n")
  old = path.read_text() if path.exists() else "# Benchmark results\n"
  pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
  new = pattern.sub(lambda _: text.rstrip("\n") + "\n", old) if pattern.search(old) else (
      old.rstrip("\n") + "\n\n" + text)
  path.write_text(new)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--frames", type=int, default=20)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--demo", action="store_true", help="the reduced CPU demo width and depth")
  p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
  p.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
  args = p.parse_args()
  import torch

  from bench.torch_ref import vqae3d as ref

  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count() or 1)
  kw = model_kwargs(args)
  model = VQAE3D(**kw)
  variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, args.frames, 64, 64, 1))))()

  def torch_model():
    return ref.Autoencoder(features=kw.get("features", (64, 128)), k=kw.get("kernel_size", 5),
                           stages=kw.get("num_stages", 5), blocks=kw.get("blocks_per_stage", 3))

  tm = ref.load_flax_params(torch_model(), variables["params"], variables["batch_stats"])
  n_jax = sum(a.size for a in jax.tree.leaves(variables["params"]))
  n_torch = sum(q.numel() for q in tm.parameters())
  jl, tl = check_losses_agree(model, variables, tm, torch, args.frames)
  rel = abs(jl - tl) / abs(tl)
  print(f"loss check (2 clips): jax {jl:.6f} torch {tl:.6f} relative difference {rel:.2e}; "
        f"parameters jax {n_jax:,} torch {n_torch:,}")
  if rel > 1e-4 or n_torch != n_jax:
    raise SystemExit("the two sides disagree: not timing them")
  rows = [{"side": f"JAX {jax.__version__} (jit)", **bench_jax(model, args.batch, args.frames, args.steps)}]
  print(rows[-1])
  rows.append({"side": f"PyTorch {torch.__version__} eager",
               **bench_torch(torch, torch_model(), args.batch, args.frames, args.steps, False)})
  print(rows[-1])
  if not args.no_compile:
    try:
      rows.append({"side": f"PyTorch {torch.__version__} torch.compile",
                   **bench_torch(torch, torch_model(), args.batch, args.frames, args.steps, True)})
      print(rows[-1])
    except Exception as e:  # noqa: BLE001 - report, keep the other rows
      print(f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
  for row in rows:
    print(f"{row['side']:<36} {row['device']:<12} {1000 * row['step_s']:8.0f} ms/step "
          f"{args.batch / row['step_s']:8.2f} clips/s (first step {row['first_s']:.1f} s)")
  note = (f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; loss check (2 clips, "
          f"same weights): relative difference {rel:.1e}. {os.cpu_count()} CPU cores visible, 1-min "
          f"load average {os.getloadavg()[0]:.1f} (a shared machine: CPU figures are noisy).")
  if not args.no_write:
    write_results(rows, args, note)


if __name__ == "__main__":
  main()
