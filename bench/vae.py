"""Conv VAE training throughput: JAX (aejax) vs PyTorch eager and torch.compile.

The Quixel VAE (3,297,571 parameters) on batches of 3x254x254 images with the original's loss
(KL + BCE summed) and Adam 1e-3: images/s of full training steps (forward, backward, update),
median of `--steps` timed steps after one untimed (compiling) step, both sides computing in
`--dtype` (default bfloat16 on GPU/TPU: the JAX model's `dtype`, PyTorch bf16 autocast; float32 on
CPU), parameters and loss in float32. Before timing, both sides get the same weights, inputs and
noise and their losses must agree (float32 relative 1e-4, and bf16 within
`bench.common.BF16_RTOL` when bf16), so the two sides compute the same thing. JAX runs on its
default device (GPU/TPU when present), PyTorch on CUDA when available, else CPU.

  pip install -r bench/requirements.txt        # torch (CPU wheel by default)
  python bench/vae.py                           # batch 64; prints the table, updates RESULTS.md
  python bench/vae.py --batch 8 --steps 2 --no-write
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aejax.models.vae import ConvVAE  # noqa: E402
from aejax.train import make_optimizer  # noqa: E402
from aejax.vae import elbo  # noqa: E402
from bench import common as bc  # noqa: E402
from experiments.vae import make_loss_fn  # noqa: E402

SECTION = "Conv VAE (Quixel)"
N_PARAMS = 3_297_571


def check_losses_agree(
  model, params, batch_stats, torch_model, torch, size: int, dtype: str = "float32"
) -> tuple[float, float]:
  """The loss of one batch of 4 (train-mode BatchNorm, the same eps) on both sides, in `dtype`."""
  from bench.torch_ref import vae as ref

  rng = np.random.default_rng(0)
  x = rng.uniform(size=(4, size, size, 3)).astype(np.float32)
  eps = rng.normal(size=(4, model.latent_dim)).astype(np.float32)
  variables = {"params": params, "batch_stats": batch_stats}
  m = model.clone(dtype=bc.jnp_dtype(dtype))
  (mu, logvar), _ = m.apply(variables, x, train=True, method=ConvVAE.encode, mutable=["batch_stats"])
  z = mu + eps.astype(mu.dtype) * jnp.exp(0.5 * logvar)  # as ConvVAE.reparameterize
  logits = m.apply(variables, z, method=ConvVAE.decode_logits).astype(jnp.float32)
  jax_loss, _ = elbo.vae_loss(x, jax.nn.sigmoid(logits), logits, mu, logvar)
  dev = bc.torch_device(torch)
  torch_model.to(dev).train()
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev)
  with bc.autocast(torch, dev, dtype):
    out = torch_model(xt, eps=torch.from_numpy(eps).to(dev))
  x_hat, mu_t, lv_t, _ = (o.float() for o in out)
  torch_loss = ref.vae_loss(x_hat, xt, mu_t, lv_t)
  return float(jax_loss), float(torch_loss.detach())


def bench_jax(model, batch: int, size: int, steps: int) -> dict:
  """Engine steps (Adam 1e-3, KL + BCE) of `model` (its `dtype` is the compute dtype)."""
  images = np.random.default_rng(1).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
  return bc.bench_jax_step(
    model,
    make_loss_fn(),
    make_optimizer("adam", 1e-3),
    jnp.zeros((1, size, size, 3)),
    {"image": images},
    steps,
  )


def bench_torch(
  torch, model, batch: int, size: int, steps: int, compiled: bool, dtype: str = "float32"
) -> dict:
  """The PyTorch step of `model` (Adam 1e-3, KL + BCE; torch.compile of the model when `compiled`)."""
  from bench.torch_ref import vae as ref

  loss = lambda out, x: ref.vae_loss(out[0], x, out[1], out[2])
  return bc.bench_torch_adam(
    torch,
    model,
    lambda dev: torch.rand(batch, 3, size, size, device=dev),
    loss,
    steps,
    compiled=compiled,
    dtype=dtype,
  )


def main():
  p = bc.step_parser(__doc__, batch=64, steps=3)
  p.add_argument("--size", type=int, default=254)
  args = p.parse_args()
  torch = bc.load_torch()
  from bench.torch_ref import vae as ref

  dtype = args.dtype or bc.default_dtype()
  model = ConvVAE(image_size=(args.size, args.size))
  variables = jax.jit(
    lambda: model.init(
      {"params": jax.random.key(0), "sample": jax.random.key(1)}, jnp.zeros((1, args.size, args.size, 3))
    )
  )()
  torch_model = ref.load_flax_params(ref.VAE(), variables["params"])
  n_torch = sum(p.numel() for p in torch_model.parameters())
  print(f"torch parameters {n_torch:,}")
  p, bs = variables["params"], variables["batch_stats"]
  checks = bc.check_losses(
    lambda d: check_losses_agree(model, p, bs, torch_model, torch, args.size, d), dtype, 1e-4, torch
  )
  bc.require_agreement(checks)
  if n_torch != N_PARAMS:
    raise SystemExit(f"the PyTorch VAE has {n_torch:,} parameters, not {N_PARAMS:,}: not timing it")
  train_model = model.clone(dtype=bc.jnp_dtype(dtype))
  torch_run = lambda c: bench_torch(torch, ref.VAE(), args.batch, args.size, args.steps, c, dtype)
  jax_run = lambda: bench_jax(train_model, args.batch, args.size, args.steps)
  opts = dict(torch_version=torch.__version__, dtype=dtype, compile_=not args.no_compile)
  rows = bc.compare_steps(args.batch, jax_run, torch_run, **opts)
  text = (
    f"`python bench/vae.py --batch {args.batch} --steps {args.steps} --dtype {dtype}` — full "
    f"training steps (forward, backward, Adam) of the 3,297,571-parameter VAE on "
    f"{args.size}×{args.size} images, {dtype} compute, median of {args.steps} steps after one "
    f"compiling step.\n\n{bc.step_table(rows, 'images/s')}\n\nLoss check (batch 4, same weights "
    f"and noise): {bc.check_summary(checks)}. {bc.machine()} (a shared machine: CPU figures are "
    "noisy)."
  )
  print(text)
  if not args.no_write:
    bc.update_section(SECTION, text)


if __name__ == "__main__":
  main()
