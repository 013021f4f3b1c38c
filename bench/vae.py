"""Conv VAE training throughput: JAX (aejax) vs PyTorch eager and torch.compile.

The Quixel VAE (3,297,571 parameters) on batches of 3x254x254 images with the original's loss
(KL + BCE summed) and Adam 1e-3: images/s of full training steps (forward, backward, update),
median of `--steps` timed steps after one untimed (compiling) step. Before timing, both sides get
the same weights, inputs and noise and their losses must agree (relative 1e-4), so the two sides
compute the same thing. JAX runs on its default device (GPU/TPU when present), PyTorch on CUDA when
available, else CPU.

  pip install -r bench/requirements.txt        # torch (CPU wheel by default)
  python bench/vae.py                           # batch 64; prints the table, updates RESULTS.md
  python bench/vae.py --batch 8 --steps 2 --no-write
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

from aejax import elbo  # noqa: E402
from aejax.models.vae import ConvVAE  # noqa: E402
from aejax.train import init_state, make_optimizer, make_train_step  # noqa: E402
from experiments.vae import make_loss_fn  # noqa: E402

SECTION = "## Conv VAE (Quixel)"


def check_losses_agree(model, params, batch_stats, torch_model, torch, size: int) -> tuple[float, float]:
  """The loss of one batch of 4 (train-mode BatchNorm, the same eps) on both sides."""
  from bench.torch_ref import vae as ref

  rng = np.random.default_rng(0)
  x = rng.uniform(size=(4, size, size, 3)).astype(np.float32)
  eps = rng.normal(size=(4, model.latent_dim)).astype(np.float32)
  variables = {"params": params, "batch_stats": batch_stats}
  (mu, logvar), _ = model.apply(variables, x, train=True, method=ConvVAE.encode,
                                mutable=["batch_stats"])
  z = mu + eps * jnp.exp(0.5 * logvar)
  logits = model.apply(variables, z, method=ConvVAE.decode_logits)
  jax_loss, _ = elbo.vae_loss(x, jax.nn.sigmoid(logits), logits, mu, logvar)
  torch_model.train()
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  x_hat, mu_t, lv_t, _ = torch_model(xt, eps=torch.from_numpy(eps))
  torch_loss = ref.vae_loss(x_hat, xt, mu_t, lv_t)
  return float(jax_loss), float(torch_loss.detach())


def bench_jax(model, batch: int, size: int, steps: int) -> dict:
  tx = make_optimizer("adam", 1e-3)
  example = jnp.zeros((1, size, size, 3))
  state = jax.jit(lambda: init_state(model, tx, jax.random.key(0), example))()
  runner = make_train_step(model, make_loss_fn(), tx, parallel="none")
  state = runner.put_state(state)
  images = np.random.default_rng(1).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
  data = {"image": jax.device_put(images)}
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
  return {"first_s": first, "step_s": statistics.median(times)}


def bench_torch(torch, model, batch: int, size: int, steps: int, compiled: bool) -> dict:
  from bench.torch_ref import vae as ref

  dev = "cuda" if torch.cuda.is_available() else "cpu"
  model = model.to(dev).train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  fwd = torch.compile(model) if compiled else model
  x = torch.rand(batch, 3, size, size, device=dev)

  def step():
    opt.zero_grad(set_to_none=True)
    x_hat, mu, lv, _ = fwd(x)
    loss = ref.vae_loss(x_hat, x, mu, lv)
    loss.backward()
    opt.step()
    if dev == "cuda":
      torch.cuda.synchronize()
    return loss

  t0 = time.perf_counter()
  step()
  first = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
  return {"first_s": first, "step_s": statistics.median(times), "device": dev}


def write_results(rows: list[dict], args, note: str) -> None:
  path = Path(__file__).with_name("RESULTS.md")
  head = ("| side | device | batch | ms / step | images/s | first step (s) |\n"
          "|---|---|---|---|---|---|\n")
  body = "".join(f"| {r['side']} | {r['device']} | {args.batch} | {1000 * r['step_s']:.0f} | "
                 f"{args.batch / r['step_s']:.2f} | {r['first_s']:.1f} |\n" for r in rows)
  text = (f"{SECTION}\n\n`python bench/vae.py --batch {args.batch} --steps {args.steps}` — full "
          f"training steps (forward, backward, Adam) of the 3,297,571-parameter VAE on "
          f"{args.size}×{args.size} images, median of {args.steps} steps after one compiling step.\n\n"
          f"{head}{body}\n{note}\n")
  old = path.read_text() if path.exists() else "# Benchmark results\n"
  pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
  new = pattern.sub(lambda _: text.rstrip("\n") + "\n", old) if pattern.search(old) else (
      old.rstrip("\n") + "\n\n" + text)
  path.write_text(new)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--size", type=int, default=254)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
  p.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
  args = p.parse_args()
  import torch

  from bench.torch_ref import vae as ref

  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count() or 1)
  model = ConvVAE(image_size=(args.size, args.size))
  variables = jax.jit(lambda: model.init({"params": jax.random.key(0), "sample": jax.random.key(1)},
                                         jnp.zeros((1, args.size, args.size, 3))))()
  torch_model = ref.load_flax_params(ref.VAE(), variables["params"])
  n_torch = sum(p.numel() for p in torch_model.parameters())
  jl, tl = check_losses_agree(model, variables["params"], variables["batch_stats"], torch_model, torch,
                              args.size)
  rel = abs(jl - tl) / abs(tl)
  print(f"loss check (batch 4): jax {jl:.3f} torch {tl:.3f} relative difference {rel:.2e}; "
        f"torch parameters {n_torch:,}")
  if rel > 1e-4 or n_torch != 3_297_571:
    raise SystemExit("the two sides disagree: not timing them")
  jax_dev = jax.devices()[0]
  rows = [{"side": f"JAX {jax.__version__} (jit)", "device": jax_dev.device_kind,
           **bench_jax(model, args.batch, args.size, args.steps)}]
  print(rows[-1])
  r = bench_torch(torch, ref.VAE(), args.batch, args.size, args.steps, compiled=False)
  rows.append({"side": f"PyTorch {torch.__version__} eager", **r})
  print(rows[-1])
  if not args.no_compile:
    try:
      r = bench_torch(torch, ref.VAE(), args.batch, args.size, args.steps, compiled=True)
      rows.append({"side": f"PyTorch {torch.__version__} torch.compile", **r})
    except Exception as e:  # noqa: BLE001 - report, keep the other rows
      print(f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    print(rows[-1])
  for row in rows:
    print(f"{row['side']:<36} {row['device']:<12} {1000 * row['step_s']:8.0f} ms/step "
          f"{args.batch / row['step_s']:8.2f} images/s (first step {row['first_s']:.1f} s)")
  load = os.getloadavg()[0]
  note = (f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; loss check "
          f"(batch 4, same weights and noise): relative difference {rel:.1e}. {os.cpu_count()} CPU "
          f"cores visible, 1-min load average {load:.1f} (a shared machine: CPU figures are noisy).")
  if not args.no_write:
    write_results(rows, args, note)


if __name__ == "__main__":
  main()
