"""Key-frame autoencoder: training throughput (JAX vs PyTorch eager / torch.compile) and
extraction speed on a 640x360 video.

Training: AE_final (580,449 parameters, shared norms as the original) on batches of 3x96x192
images in [-1, 1] with the MS-SSIM + L1 loss (alpha 0.84, data range 2) and SGD 0.01; images/s of
full steps (forward, backward, update), median of `--steps` timed steps after one untimed
(compiling) step. First both sides get the same weights and batch and their losses must agree
(relative 1e-4). JAX runs on its default device, PyTorch on CUDA when available, else CPU.

Extraction: `python -m experiments.keyframes extract` (5 sampled frames/s, sharpest per second,
latent novelty, clips written) on a `--seconds`-long 640x360 30 fps MP4 made from the real videos
in ../shared/realdata/videos (resized and looped), with a randomly initialised checkpoint (speed
does not depend on the weights). Wall time includes start-up and compilation.

  pip install -r bench/requirements.txt
  python bench/keyframes.py                          # batch 256 (GPU); updates RESULTS.md
  python bench/keyframes.py --batch 16 --steps 2     # a loaded CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aejax.losses import ms_ssim_l1_loss  # noqa: E402
from aejax.models.keyframe_ae import KeyframeAE  # noqa: E402
from aejax.train import CheckpointIO, init_state, make_optimizer, make_train_step  # noqa: E402
from bench.common import machine, update_section  # noqa: E402
from experiments import keyframes as exp  # noqa: E402

SIZE = (96, 192)


def batch_of(n: int, seed: int = 0) -> np.ndarray:
  from aejax.data.synthetic import textured_images

  return textured_images(n, SIZE, seed=seed)  # [n, 96, 192, 3] uint8


def check_losses_agree(model, variables, torch) -> tuple[float, float]:
  from bench.torch_ref import keyframe_ae as ref

  x = batch_of(4).astype(np.float32) / 127.5 - 1
  (y, _), _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  jax_loss = float(ms_ssim_l1_loss(y, x))
  tm = ref.Autoencoder(share_norms=True)
  ref.load_flax_params(tm, variables["params"])
  tm.train()
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  torch_loss = float(ref.MSSSIML1()(tm(xt), xt).detach())
  return jax_loss, torch_loss


def bench_jax(model, batch: int, steps: int) -> dict:
  tx = make_optimizer("sgd", 0.01)
  loss_fn = exp.make_loss_fn(alpha=0.84, data_range=2.0)
  state = init_state(model, tx, jax.random.key(0), jnp.zeros((1, *SIZE, 3)))
  runner = make_train_step(model, loss_fn, tx, parallel="jit")
  dstate = runner.put_state(state)
  data = {"image": batch_of(batch)}
  t0 = time.perf_counter()
  dstate, m = runner(dstate, data, jax.random.key(1))
  jax.block_until_ready(m)
  first = time.perf_counter() - t0
  times = []
  for i in range(steps):
    t0 = time.perf_counter()
    dstate, m = runner(dstate, data, jax.random.key(2 + i))
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  sec = statistics.median(times)
  return {"step_s": sec, "images_s": batch / sec, "first_s": first}


def bench_torch(batch: int, steps: int, compile_: bool, torch) -> dict:
  from bench.torch_ref import keyframe_ae as ref

  dev = "cuda" if torch.cuda.is_available() else "cpu"
  model, crit = ref.Autoencoder(share_norms=True).to(dev), ref.MSSSIML1().to(dev)
  opt = torch.optim.SGD(model.parameters(), lr=0.01)
  x = torch.from_numpy(batch_of(batch).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1).to(dev)

  def step():
    opt.zero_grad(set_to_none=True)
    loss = crit(model(x), x)
    loss.backward()
    opt.step()
    return loss

  fn = torch.compile(step) if compile_ else step
  sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
  t0 = time.perf_counter()
  fn()
  sync()
  first = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    fn()
    sync()
    times.append(time.perf_counter() - t0)
  sec = statistics.median(times)
  return {"step_s": sec, "images_s": batch / sec, "first_s": first, "device": dev}


def make_video(path: Path, seconds: float, fps: float = 30.0) -> Path:
  """A 640x360 MP4 from the real videos (resized, looped), or synthetic scenes without them."""
  import cv2

  from aejax.data.video import VideoReader, write_video

  root = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "videos"
  clips = [VideoReader(p).read_all() for p in sorted(root.glob("*")) if p.suffix in (".avi", ".mpeg")]
  if not clips:
    from aejax.data.synthetic import scene_cut_video

    clips = [scene_cut_video(60, (90, 160), 2, seed=s)["video"] for s in range(3)]
  frames = [cv2.resize(f, (640, 360), interpolation=cv2.INTER_LINEAR) for c in clips for f in c]
  n = int(seconds * fps)
  seq = np.stack([frames[i % len(frames)] for i in range(n)])
  return write_video(path, seq, fps)


def bench_extract(seconds: float, metric: str) -> dict:
  tmp = Path(tempfile.mkdtemp(prefix="kf_bench_"))
  video = make_video(tmp / "in.mp4", seconds)
  config = exp.demo()
  config.data.image_size = SIZE
  model = KeyframeAE(**config.model)
  tx = make_optimizer(**config.optim)
  state = init_state(model, tx, jax.random.key(0), jnp.zeros((1, *SIZE, 3)))
  io = CheckpointIO(tmp / "run" / "checkpoints")
  io.save(0, state)
  io.close()
  (tmp / "run" / "config.json").write_text(json.dumps(config.to_dict()))
  t0 = time.perf_counter()
  res = exp.main(["extract", "--checkpoint", str(tmp / "run"), "--video", str(video), "--out",
                  str(tmp / "out"), f"--config.extract.metric={metric}", "--compilation_cache", ""])
  wall = time.perf_counter() - t0
  meta = json.loads((tmp / "out" / "keyframes.json").read_text())
  return {"metric": metric, "wall_s": wall, "video_s": res["video_seconds"],
          "sampled_per_s": res["video_seconds"] * 5 / wall, "keyframes": res["keyframes"],
          "clips": res["clips"], "scan_embed_s": meta["timing_s"]["scan_and_embed"],
          "cpu_s": meta["timing_s"]["total_cpu"], "in_mode_s": meta["timing_s"]["total"]}


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--seconds", type=float, default=60.0, help="length of the extraction video")
  ap.add_argument("--no-torch", action="store_true")
  ap.add_argument("--no-compile", action="store_true")
  ap.add_argument("--no-train", action="store_true")
  ap.add_argument("--no-extract", action="store_true")
  ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
  args = ap.parse_args()
  lines = []
  if not args.no_train:
    model = KeyframeAE(share_norms=True)
    variables = model.init(jax.random.key(0), jnp.zeros((1, *SIZE, 3)), train=False)
    rows = [("JAX (jit)", bench_jax(model, args.batch, args.steps))]
    if not args.no_torch:
      import torch

      jl, tl = check_losses_agree(model, variables, torch)
      if abs(jl - tl) > 1e-4 * max(abs(jl), 1e-6):
        raise SystemExit(f"losses differ: JAX {jl:.6f} vs PyTorch {tl:.6f}")
      print(f"loss check: JAX {jl:.6f}, PyTorch {tl:.6f}")
      rows.append(("PyTorch eager", bench_torch(args.batch, args.steps, False, torch)))
      if not args.no_compile:
        rows.append(("torch.compile", bench_torch(args.batch, args.steps, True, torch)))
    lines += [f"Training, batch {args.batch} of 3x96x192, MS-SSIM+L1, SGD (median of {args.steps} steps):",
              "", "| side | images/s | s / step | first step (s) |", "|---|---|---|---|"]
    lines += [f"| {n} | {r['images_s']:.1f} | {r['step_s']:.3f} | {r['first_s']:.1f} |" for n, r in rows]
    if not args.no_torch:
      lines += ["", f"Loss check before timing: JAX {jl:.6f}, PyTorch {tl:.6f}."]
  if not args.no_extract:
    ex = [bench_extract(args.seconds, m) for m in ("latent", "recon")]
    lines += ["", f"Extraction of a {args.seconds:.0f} s 640x360 30 fps video (5 sampled frames/s):", "",
              "| metric | wall, whole command (s) | wall in extract (s) | of it scan + embed (s) | "
              "CPU time in extract (s) | sampled frames/s (wall) | key frames | clips |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['metric']} | {r['wall_s']:.1f} | {r['in_mode_s']:.1f} | {r['scan_embed_s']:.1f} | "
              f"{r['cpu_s']:.1f} | {r['sampled_per_s']:.1f} | {r['keyframes']} | {r['clips']} |" for r in ex]
  lines += ["", f"Device: {machine()}."]
  text = "\n".join(lines)
  print(text)
  if not args.no_write:
    update_section("Key-frame autoencoder", "`python bench/keyframes.py " + " ".join(sys.argv[1:]) + "`\n\n"
                   + text)


if __name__ == "__main__":
  main()
