"""3D conv compression autoencoder training throughput: JAX (aejax) vs PyTorch eager / torch.compile.

The ae_compressed_vision model (separate encoder/decoder residual stacks, K=128 scalar centroids,
soft-to-hard STE) on batches of 16 clips 1x20x64x64, MSE on [0, 1] pixels and Adam 1e-3: clips/s of
full training steps (forward, backward, update), median of `--steps` timed steps after one untimed
(compiling) step, both sides computing in `--dtype` (default bfloat16 on GPU/TPU: the JAX model's
`dtype`, PyTorch bf16 autocast; float32 on CPU), parameters and loss in float32. Before timing,
both sides get the same weights and inputs and their losses must agree (train-mode BatchNorm;
float32 relative 1e-4, and bf16 within `bench.common.BF16_RTOL` when bf16), so they compute the
same thing. JAX runs on its default device, PyTorch on CUDA when available, else CPU.

  pip install -r bench/requirements.txt     # torch (CPU wheel by default)
  python bench/vqae3d.py                     # the faithful model, batch 16 (GPU-sized)
  python bench/vqae3d.py --demo --frames 10 --steps 3   # the CPU demo width (8/16, 1 block, k3)
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aejax.models.vqae3d import VQAE3D  # noqa: E402
from aejax.train import make_optimizer  # noqa: E402
from bench import common as bc  # noqa: E402
from experiments.compressed_vision import loss_fn  # noqa: E402

SECTION = "3D conv compression AE (ae_compressed_vision)"


def model_kwargs(args) -> dict:
  if args.demo:
    return dict(
      features=(8, 16), latent_features=32, kernel_size=3, num_stages=1, blocks_per_stage=1, num_codes=128
    )
  return dict(num_codes=128)


def torch_model(kw: dict):
  """The PyTorch reference with the widths of `VQAE3D(**kw)`."""
  from bench.torch_ref import vqae3d as ref

  return ref.Autoencoder(
    features=kw.get("features", (64, 128)),
    k=kw.get("kernel_size", 5),
    stages=kw.get("num_stages", 5),
    blocks=kw.get("blocks_per_stage", 3),
  )


def check_losses_agree(
  model, variables, torch_model, torch, frames: int, dtype: str = "float32"
) -> tuple[float, float]:
  """MSE of one batch of 2 clips on both sides (train-mode BatchNorm), computing in `dtype`."""
  x = np.random.default_rng(0).uniform(size=(2, frames, 64, 64, 1)).astype(np.float32)
  m = model.clone(dtype=bc.jnp_dtype(dtype))
  (recon, _), _ = m.apply(variables, x, train=True, mutable=["batch_stats"])
  jax_loss = float(jnp.mean((recon.astype(jnp.float32) - x) ** 2))
  dev = bc.torch_device(torch)
  torch_model.to(dev).train()
  xt = torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy()).to(dev)
  with bc.autocast(torch, dev, dtype):
    yt = torch_model(xt)
  torch_loss = float(torch.mean((yt.float() - xt) ** 2).detach())
  return jax_loss, torch_loss


def mse(out, x):
  return ((out - x) ** 2).mean()


def bench_jax(model, batch: int, frames: int, steps: int) -> dict:
  """Engine steps (Adam 1e-3, MSE) of `model` (its `dtype` is the compute dtype) on `batch` clips."""
  video = np.random.default_rng(1).integers(0, 256, (batch, frames, 64, 64, 1), dtype=np.uint8)
  return bc.bench_jax_step(
    model, loss_fn, make_optimizer("adam", 1e-3), jnp.zeros((1, frames, 64, 64, 1)), {"video": video}, steps
  )


def bench_torch(
  torch, model, batch: int, frames: int, steps: int, compiled: bool, dtype: str = "float32"
) -> dict:
  """The PyTorch step of `model` (Adam 1e-3, MSE; torch.compile of the model when `compiled`)."""
  make_x = lambda dev: torch.randint(0, 256, (batch, 1, frames, 64, 64), device=dev).float() / 255.0
  return bc.bench_torch_adam(torch, model, make_x, mse, steps, compiled=compiled, dtype=dtype)


def main():
  p = bc.step_parser(__doc__, batch=16, steps=5)
  p.add_argument("--frames", type=int, default=20)
  p.add_argument("--demo", action="store_true", help="the reduced CPU demo width and depth")
  args = p.parse_args()
  torch = bc.load_torch()
  from bench.torch_ref import vqae3d as ref

  dtype = args.dtype or bc.default_dtype()
  kw = model_kwargs(args)
  model = VQAE3D(**kw)
  variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, args.frames, 64, 64, 1))))()
  tm = ref.load_flax_params(torch_model(kw), variables["params"], variables["batch_stats"])
  n_jax = sum(a.size for a in jax.tree.leaves(variables["params"]))
  n_torch = sum(q.numel() for q in tm.parameters())
  print(f"parameters jax {n_jax:,} torch {n_torch:,}")
  checks = bc.check_losses(
    lambda d: check_losses_agree(model, variables, tm, torch, args.frames, d), dtype, 1e-4, torch
  )
  bc.require_agreement(checks)
  if n_torch != n_jax:
    raise SystemExit(f"parameter counts differ (jax {n_jax:,}, torch {n_torch:,}): not timing them")
  train_model = model.clone(dtype=bc.jnp_dtype(dtype))
  torch_run = lambda c: bench_torch(torch, torch_model(kw), args.batch, args.frames, args.steps, c, dtype)
  rows = bc.compare_steps(
    args.batch,
    lambda: bench_jax(train_model, args.batch, args.frames, args.steps),
    torch_run,
    torch_version=torch.__version__,
    dtype=dtype,
    compile_=not args.no_compile,
  )
  flags = (
    f"{' --demo' if args.demo else ''} --frames {args.frames} --batch {args.batch} "
    f"--steps {args.steps} --dtype {dtype}"
  )
  text = (
    f"`python bench/vqae3d.py{flags}`: full training steps of "
    f"{'the CPU demo width' if args.demo else 'the faithful 31,024,099-parameter model'} on "
    f"1x{args.frames}x64x64 clips, {dtype} compute, median of {args.steps} steps after one "
    f"compiling step.\n\n{bc.step_table(rows, 'clips/s')}\n\nLoss check (2 clips, same weights): "
    f"{bc.check_summary(checks)}. {bc.machine()} (a shared machine: CPU figures are noisy)."
  )
  print(text)
  if not args.no_write:
    bc.update_section(SECTION, text)


if __name__ == "__main__":
  main()
