"""OVAL throughput: training frames/s (JAX vs PyTorch eager / torch.compile) and convert frames/s.

The faithful 6,991-parameter OVAL autoencoder on batches of 16 frames of 3x360x480 with the
original's BCE loss and Adam 1e-3: frames/s of full training steps (forward, backward, update),
median of `--steps` timed steps after one untimed (compiling) step, both sides computing in
`--dtype` (default bfloat16 on GPU/TPU: the JAX model's `dtype`, PyTorch bf16 autocast; float32 on
CPU), parameters and loss in float32. Before timing, both sides get the same weights and inputs and
their losses must agree (float32 relative 1e-5, and bf16 within `bench.common.BF16_RTOL` when
bf16). Then `convert` frames/s (float32):
encode → float16 latent bytes → decode of 360x480 frames in batches of 16 (JAX, the path
`python -m experiments.oval convert` takes, without metrics or video writing), plus the PyTorch
eager forward for comparison. JAX runs on its default device, PyTorch on CUDA when available.

  pip install -r bench/requirements.txt        # torch (CPU wheel by default)
  python bench/oval.py                          # prints the table, updates bench/RESULTS.md
  python bench/oval.py --steps 2 --no-compile --no-write
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aejax.codec.frames import FrameCodec  # noqa: E402
from aejax.codec.latent import LatentCodec  # noqa: E402
from aejax.codec.oval_train import make_loss_fn  # noqa: E402
from aejax.models.oval import OVAL, reconstruction_loss  # noqa: E402
from aejax.train import make_optimizer  # noqa: E402
from bench import common as bc  # noqa: E402


def check_losses_agree(model, params, torch, size, dtype: str = "float32") -> tuple[float, float]:
  """BCE of one batch of 2 frames on both sides (same weights), computing in `dtype`."""
  from bench.torch_ref import oval as ref

  x = np.random.default_rng(0).uniform(size=(2, *size, 3)).astype(np.float32)
  _, aux = model.clone(dtype=bc.jnp_dtype(dtype)).apply({"params": params}, x)
  jl = float(reconstruction_loss("bce", aux["logits"], x))
  dev = bc.torch_device(torch)
  tm = ref.load_flax_params(ref.OVAL(size), params).to(dev)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev)
  with bc.autocast(torch, dev, dtype):
    logits = tm(xt)
  tl = float(ref.bce_loss(logits.float(), xt).detach())
  return jl, tl


def bench_jax_train(model, batch, size, steps) -> dict:
  """Engine steps (Adam 1e-3, BCE) of `model` (its `dtype` is the compute dtype), `batch` frames."""
  video = np.random.default_rng(1).integers(0, 256, (1, batch, *size, 3), dtype=np.uint8)
  return bc.bench_jax_step(
    model,
    make_loss_fn("bce", "rgb", 0.0, False),
    make_optimizer("adam", 1e-3),
    jnp.zeros((1, *size, 3)),
    {"video": video},
    steps,
  )


def bench_torch_train(torch, batch, size, steps, compiled, dtype: str = "float32") -> dict:
  """The PyTorch step (Adam 1e-3, BCE; torch.compile of the model when `compiled`)."""
  from bench.torch_ref import oval as ref

  return bc.bench_torch_adam(
    torch,
    ref.OVAL(size),
    lambda dev: torch.rand(batch, 3, *size, device=dev),
    ref.bce_loss,
    steps,
    compiled=compiled,
    dtype=dtype,
  )


def bench_convert(model, params, batch, size, batches) -> dict:
  """Frames/s of encode → float16 latent bytes → decode (`FrameCodec`), and of each part."""
  codec = FrameCodec(model, params, "rgb", size, batch)
  latent = LatentCodec("float16")
  frames = np.random.default_rng(2).integers(0, 256, (batch, *size, 3), dtype=np.uint8)
  codec.decode(latent.roundtrip(codec.encode(frames))[0])  # compile
  t_enc = t_codec = t_dec = 0.0
  for _ in range(batches):
    t0 = time.perf_counter()
    z = codec.encode(frames)
    t1 = time.perf_counter()
    zhat, _ = latent.roundtrip(z)
    t2 = time.perf_counter()
    codec.decode(zhat)
    t3 = time.perf_counter()
    t_enc, t_codec, t_dec = t_enc + t1 - t0, t_codec + t2 - t1, t_dec + t3 - t2
  n = batch * batches
  return {
    "fps": n / (t_enc + t_codec + t_dec),
    "encode_fps": n / t_enc,
    "latent_bytes_fps": n / t_codec,
    "decode_fps": n / t_dec,
  }


def bench_torch_forward(torch, batch, size, batches) -> float:
  """Frames/s of the PyTorch reference's eager forward (encode + decode, no latent bytes)."""
  from bench.torch_ref import oval as ref

  dev = bc.torch_device(torch)
  model = ref.OVAL(size).to(dev).eval()
  x = torch.rand(batch, 3, *size, device=dev)
  with torch.no_grad():
    torch.sigmoid(model(x))
    if dev == "cuda":
      torch.cuda.synchronize()  # the warm-up call is not timed
    t0 = time.perf_counter()
    for _ in range(batches):
      y = torch.sigmoid(model(x))
    if dev == "cuda":
      torch.cuda.synchronize()
    del y
  return batch * batches / (time.perf_counter() - t0)


def main():
  """Runs the loss check, the training and convert timings; prints and records the table."""
  p = bc.step_parser(__doc__, batch=16, steps=3)
  p.add_argument("--size", type=int, nargs=2, default=(360, 480), help="H W")
  p.add_argument("--convert_batches", type=int, default=4)
  args = p.parse_args()
  torch = bc.load_torch()
  size, dtype = tuple(args.size), args.dtype or bc.default_dtype()
  model = OVAL()
  params = jax.device_get(jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, *size, 3))))())
  params = params["params"]
  checks = bc.check_losses(lambda d: check_losses_agree(model, params, torch, size, d), dtype, 1e-5, torch)
  bc.require_agreement(checks)
  train_model = model.clone(dtype=bc.jnp_dtype(dtype))
  rows = bc.compare_steps(
    args.batch,
    lambda: bench_jax_train(train_model, args.batch, size, args.steps),
    lambda c: bench_torch_train(torch, args.batch, size, args.steps, c, dtype),
    torch_version=torch.__version__,
    dtype=dtype,
    compile_=not args.no_compile,
  )
  conv = bench_convert(model, params, args.batch, size, args.convert_batches)
  torch_fwd = bench_torch_forward(torch, args.batch, size, args.convert_batches)
  print(conv, {"torch_forward_fps": torch_fwd})
  text = (
    f"`python bench/oval.py --steps {args.steps}`: training steps (forward, backward, Adam; "
    f"BCE) of the 6,991-parameter model, batch {args.batch} of 3x{size[0]}x{size[1]}, {dtype} "
    f"compute, median of {args.steps} after one compiling step; loss check "
    f"{bc.check_summary(checks)}.\n\n{bc.step_table(rows, 'frames/s')}\n\n"
    f"Convert (JAX float32, batch {args.batch}, float16 latent bytes, no metrics or video I/O): "
    f"{conv['fps']:.1f} frames/s (encode {conv['encode_fps']:.1f}, latent bytes "
    f"{conv['latent_bytes_fps']:.0f}, decode {conv['decode_fps']:.1f}); PyTorch eager "
    f"forward (encode + decode, no bytes): {torch_fwd:.1f} frames/s.\n\n{bc.machine()}"
  )
  print(text)
  if not args.no_write:
    bc.update_section("OVAL", text)


if __name__ == "__main__":
  main()
