"""OVAL throughput: training frames/s (JAX vs PyTorch eager / torch.compile) and convert frames/s.

The faithful 6,991-parameter OVAL autoencoder on batches of 16 frames of 3x360x480 with the
original's BCE loss and Adam 1e-3: frames/s of full training steps (forward, backward, update),
median of `--steps` timed steps after one untimed (compiling) step. Before timing, both sides get
the same weights and inputs and their losses must agree (relative 1e-5). Then `convert` frames/s:
encode → float16 latent bytes → decode of 360x480 frames in batches of 16 (JAX, the path
`python -m experiments.oval convert` takes, without metrics or video writing), plus the PyTorch
eager forward for comparison. JAX runs on its default device, PyTorch on CUDA when available.

  pip install -r bench/requirements.txt        # torch (CPU wheel by default)
  python bench/oval.py                          # prints the table, updates bench/RESULTS.md
  python bench/oval.py --steps 2 --no-compile --no-write
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aejax import compression as comp  # noqa: E402
from aejax.models.oval import OVAL, reconstruction_loss  # noqa: E402
from aejax.train import init_state, make_optimizer, make_train_step  # noqa: E402
from bench.common import machine, update_section  # noqa: E402
from experiments._oval_apps import FrameCodec  # noqa: E402
from experiments.oval import make_loss_fn  # noqa: E402


def check_losses_agree(model, params, torch, size) -> tuple[float, float]:
  from bench.torch_ref import oval as ref

  x = np.random.default_rng(0).uniform(size=(2, *size, 3)).astype(np.float32)
  _, aux = model.apply({"params": params}, x)
  jl = float(reconstruction_loss("bce", aux["logits"], x))
  tm = ref.load_flax_params(ref.OVAL(size), params)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  tl = float(ref.bce_loss(tm(xt), xt).detach())
  return jl, tl


def bench_jax_train(model, batch, size, steps) -> dict:
  tx = make_optimizer("adam", 1e-3)
  state = jax.jit(lambda: init_state(model, tx, jax.random.key(0), jnp.zeros((1, *size, 3))))()
  runner = make_train_step(model, make_loss_fn("bce", "rgb", 0.0, False), tx, parallel="none")
  state = runner.put_state(state)
  video = np.random.default_rng(1).integers(0, 256, (1, batch, *size, 3), dtype=np.uint8)
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
  return {"first_s": first, "step_s": statistics.median(times), "device": jax.devices()[0].device_kind}


def bench_torch_train(torch, batch, size, steps, compiled) -> dict:
  from bench.torch_ref import oval as ref

  dev = "cuda" if torch.cuda.is_available() else "cpu"
  model = ref.OVAL(size).to(dev)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  fwd = torch.compile(model) if compiled else model
  x = torch.rand(batch, 3, *size, device=dev)

  def step():
    opt.zero_grad(set_to_none=True)
    loss = ref.bce_loss(fwd(x), x)
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


def bench_convert(model, params, batch, size, batches) -> dict:
  codec = FrameCodec(model, params, "rgb", size, batch)
  latent = comp.LatentCodec("float16")
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
  return {"fps": n / (t_enc + t_codec + t_dec), "encode_fps": n / t_enc, "latent_bytes_fps": n / t_codec,
          "decode_fps": n / t_dec}


def bench_torch_forward(torch, batch, size, batches) -> float:
  from bench.torch_ref import oval as ref

  dev = "cuda" if torch.cuda.is_available() else "cpu"
  model = ref.OVAL(size).to(dev).eval()
  x = torch.rand(batch, 3, *size, device=dev)
  with torch.no_grad():
    torch.sigmoid(model(x))
    t0 = time.perf_counter()
    for _ in range(batches):
      y = torch.sigmoid(model(x))
    if dev == "cuda":
      torch.cuda.synchronize()
    del y
  return batch * batches / (time.perf_counter() - t0)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--size", type=int, nargs=2, default=(360, 480), help="H W")
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--convert_batches", type=int, default=4)
  p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
  p.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
  args = p.parse_args()
  import torch

  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count() or 1)
  size = tuple(args.size)
  model = OVAL()
  params = jax.device_get(jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, *size, 3))))())
  params = params["params"]
  jl, tl = check_losses_agree(model, params, torch, size)
  rel = abs(jl - tl) / abs(tl)
  print(f"loss check (batch 2, same weights): jax {jl:.6f} torch {tl:.6f} relative difference {rel:.1e}")
  if rel > 1e-5:
    raise SystemExit("the two sides disagree: not timing them")
  rows = [{"side": f"JAX {jax.__version__} (jit)", **bench_jax_train(model, args.batch, size, args.steps)}]
  print(rows[-1])
  rows.append({"side": f"PyTorch {torch.__version__} eager",
               **bench_torch_train(torch, args.batch, size, args.steps, False)})
  print(rows[-1])
  if not args.no_compile:
    try:
      rows.append({"side": f"PyTorch {torch.__version__} torch.compile",
                   **bench_torch_train(torch, args.batch, size, args.steps, True)})
      print(rows[-1])
    except Exception as e:  # noqa: BLE001 - report, keep the other rows
      print(f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
  conv = bench_convert(model, params, args.batch, size, args.convert_batches)
  torch_fwd = bench_torch_forward(torch, args.batch, size, args.convert_batches)
  print(conv, {"torch_forward_fps": torch_fwd})
  head = "| side | device | ms / step | frames/s | first step (s) |\n|---|---|---|---|---|\n"
  body = "".join(f"| {r['side']} | {r['device']} | {1000 * r['step_s']:.0f} | "
                 f"{args.batch / r['step_s']:.1f} | {r['first_s']:.1f} |\n" for r in rows)
  text = (f"`python bench/oval.py --steps {args.steps}`: training steps (forward, backward, Adam; "
          f"BCE) of the 6,991-parameter model, batch {args.batch} of 3x{size[0]}x{size[1]}, median "
          f"of {args.steps} after one compiling step; loss check relative difference {rel:.1e}.\n\n"
          f"{head}{body}\n"
          f"Convert (JAX, batch {args.batch}, float16 latent bytes, no metrics or video I/O): "
          f"{conv['fps']:.1f} frames/s (encode {conv['encode_fps']:.1f}, latent bytes "
          f"{conv['latent_bytes_fps']:.0f}, decode {conv['decode_fps']:.1f}); PyTorch eager "
          f"forward (encode + decode, no bytes): {torch_fwd:.1f} frames/s.\n\n{machine()}")
  print(text)
  if not args.no_write:
    update_section("OVAL", text)


if __name__ == "__main__":
  main()
