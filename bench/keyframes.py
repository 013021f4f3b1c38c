"""Key-frame autoencoder: training throughput (JAX vs PyTorch eager / torch.compile) and
extraction speed on a 640x360 video.

Training: AE_final (580,449 parameters, shared norms as the original) on batches of 3x96x192
images in [-1, 1] with the MS-SSIM + L1 loss (alpha 0.84, data range 2) and SGD 0.01; images/s of
full steps (forward, backward, update), median of `--steps` timed steps after one untimed
(compiling) step. Both sides compute in `--dtype` (default bfloat16 on GPU/TPU: the JAX model's
`dtype`, PyTorch bf16 autocast; float32 on CPU), parameters and loss in float32. First both sides
get the same weights and batch and their losses must agree (float32 relative 1e-4, and bf16 within
`bench.common.BF16_RTOL` when bf16). JAX runs on its default device, PyTorch on CUDA when
available, else CPU.

Extraction: `python -m experiments.keyframes extract` (5 sampled frames/s, the shot-aware default,
clips listed, not written) on a `--seconds`-long 640x360 30 fps MP4 made from the real videos
in ../shared/realdata/videos (resized and looped), with a randomly initialised checkpoint (speed
does not depend on the weights). Wall time includes start-up and compilation.

  pip install -r bench/requirements.txt
  python bench/keyframes.py                          # batch 256 (GPU); updates RESULTS.md
  python bench/keyframes.py --batch 16 --steps 2     # a loaded CPU
"""

from __future__ import annotations

import json
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
from aejax.train import CheckpointIO, init_state, make_optimizer  # noqa: E402
from bench import common as bc  # noqa: E402
from experiments import keyframes as exp  # noqa: E402

SIZE = (96, 192)


def batch_of(n: int, seed: int = 0) -> np.ndarray:
  from aejax.data.synthetic import textured_images

  return textured_images(n, SIZE, seed=seed)  # [n, 96, 192, 3] uint8


def check_losses_agree(model, variables, torch, dtype: str = "float32") -> tuple[float, float]:
  """MS-SSIM + L1 of one batch of 4 on both sides (train-mode BatchNorm), computing in `dtype`."""
  from bench.torch_ref import keyframe_ae as ref

  x = batch_of(4).astype(np.float32) / 127.5 - 1
  (y, _), _ = model.clone(dtype=bc.jnp_dtype(dtype)).apply(variables, x, train=True, mutable=["batch_stats"])
  jax_loss = float(ms_ssim_l1_loss(y.astype(jnp.float32), x))
  dev = bc.torch_device(torch)
  tm = ref.Autoencoder(share_norms=True)
  ref.load_flax_params(tm, variables["params"])
  tm.to(dev).train()
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev)
  with bc.autocast(torch, dev, dtype):
    yt = tm(xt)
  torch_loss = float(ref.MSSSIML1().to(dev)(yt.float(), xt).detach())
  return jax_loss, torch_loss


def bench_jax(model, batch: int, steps: int) -> dict:
  """Engine steps (SGD 0.01) of `model` (its `dtype` is the compute dtype) on `batch` images."""
  return bc.bench_jax_step(
    model,
    exp.make_loss_fn(alpha=0.84, data_range=2.0),
    make_optimizer("sgd", 0.01),
    jnp.zeros((1, *SIZE, 3)),
    {"image": batch_of(batch)},
    steps,
    parallel="jit",
  )


def bench_torch(batch: int, steps: int, compile_: bool, torch, dtype: str = "float32") -> dict:
  """The PyTorch step (SGD 0.01; torch.compile of the whole step when `compile_`)."""
  from bench.torch_ref import keyframe_ae as ref

  dev = bc.torch_device(torch)
  model, crit = ref.Autoencoder(share_norms=True).to(dev), ref.MSSSIML1().to(dev)
  opt = torch.optim.SGD(model.parameters(), lr=0.01)
  x = torch.from_numpy(batch_of(batch).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1).to(dev)
  return bc.bench_torch_step(
    torch, model, opt, x, crit, steps, dtype=dtype, compile_="step" if compile_ else None
  )


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
  """Times `experiments.keyframes extract` (distance `metric`) on a `seconds`-long 640x360 video."""
  tmp = Path(tempfile.mkdtemp(prefix="kf_bench_"))
  video = make_video(tmp / "in.mp4", seconds)
  config = exp.demo()
  config.data.image_size = SIZE
  state = init_state(
    exp.build_model(config), make_optimizer(**config.optim), jax.random.key(0), exp.example(config)
  )
  io = CheckpointIO(tmp / "run" / "checkpoints")
  io.save(0, state)
  io.close()
  (tmp / "run" / "config.json").write_text(json.dumps(config.to_dict()))
  t0 = time.perf_counter()
  res = exp.main(
    [
      "extract",
      "--checkpoint",
      str(tmp / "run"),
      "--video",
      str(video),
      "--out",
      str(tmp / "out"),
      f"--config.extract.metric={metric}",
      "--compilation_cache",
      "",
    ]
  )
  wall = time.perf_counter() - t0
  meta = json.loads((tmp / "out" / "keyframes.json").read_text())
  return {
    "metric": metric,
    "wall_s": wall,
    "video_s": res["video_seconds"],
    "sampled_per_s": res["video_seconds"] * 5 / wall,
    "keyframes": res["keyframes"],
    "clips": res["clips"],
    "scan_embed_s": meta["timing_s"]["scan_and_embed"],
    "cpu_s": meta["timing_s"]["total_cpu"],
    "in_mode_s": meta["timing_s"]["total"],
  }


def main():
  ap = bc.step_parser(__doc__, batch=256, steps=5)
  ap.add_argument("--seconds", type=float, default=60.0, help="length of the extraction video")
  ap.add_argument("--no-torch", action="store_true")
  ap.add_argument("--no-train", action="store_true")
  ap.add_argument("--no-extract", action="store_true")
  args = ap.parse_args()
  dtype = args.dtype or bc.default_dtype()
  lines = []
  if not args.no_train:
    model = KeyframeAE(share_norms=True, dtype=bc.jnp_dtype(dtype))
    variables = model.init(jax.random.key(0), jnp.zeros((1, *SIZE, 3)), train=False)
    jax_run = lambda: bench_jax(model, args.batch, args.steps)
    if args.no_torch:
      rows, checks = [bc.result_row(f"JAX {jax.__version__} (jit)", jax_run(), args.batch, dtype)], []
    else:
      torch = bc.load_torch()
      checks = bc.check_losses(lambda d: check_losses_agree(model, variables, torch, d), dtype, 1e-4, torch)
      bc.require_agreement(checks)
      torch_run = lambda c: bench_torch(args.batch, args.steps, c, torch, dtype)
      rows = bc.compare_steps(
        args.batch,
        jax_run,
        torch_run,
        torch_version=torch.__version__,
        dtype=dtype,
        compile_=not args.no_compile,
      )
    lines += [
      f"Training, batch {args.batch} of 3x96x192, MS-SSIM+L1, SGD, {dtype} compute "
      f"(median of {args.steps} steps):",
      "",
      bc.step_table(rows, "images/s"),
    ]
    if checks:
      lines += ["", f"Loss check before timing (same weights and batch of 4): {bc.check_summary(checks)}."]
  if not args.no_extract:
    ex = [bench_extract(args.seconds, m) for m in ("latent", "recon")]
    lines += [
      "",
      f"Extraction of a {args.seconds:.0f} s 640x360 30 fps video (5 sampled frames/s):",
      "",
      "| metric | wall, whole command (s) | wall in extract (s) | of it scan + embed (s) | "
      "CPU time in extract (s) | sampled frames/s (wall) | key frames | clips |",
      "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
      f"| {r['metric']} | {r['wall_s']:.1f} | {r['in_mode_s']:.1f} | {r['scan_embed_s']:.1f} | "
      f"{r['cpu_s']:.1f} | {r['sampled_per_s']:.1f} | {r['keyframes']} | {r['clips']} |"
      for r in ex
    ]
  lines += ["", f"Device: {bc.machine()}."]
  text = "\n".join(lines)
  print(text)
  if not args.no_write:
    cmd = "`python bench/keyframes.py " + " ".join(sys.argv[1:]) + "`"
    bc.update_section("Key-frame autoencoder", cmd + "\n\n" + text)


if __name__ == "__main__":
  main()
