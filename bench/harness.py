"""Workloads of `python -m bench`: each runs in its own child process and prints `BENCHROW` lines.

Every workload calls the per-model bench scripts' own functions (`bench/keyframes.py`,
`bench/oval.py`, `bench/vae.py`, `bench/vqae3d.py`, `bench/siammae_step.py`, `bench/labelprop.py`,
`bench/data_pipeline.py` and their PyTorch references in `bench/torch_ref/`) rather than re-writing
them, and adds what the summary table needs: the analytic matmul + conv FLOPs of the whole training
step (`bench.common.count_flops` on the engine's step, forward + backward + update), peak memory
and the loss-equality result. A child process per workload keeps the peak-memory figures apart,
lets JAX and PyTorch share one GPU (JAX without preallocation) and bounds each workload's time.

Row fields: workload, kind ("train" / "app" / "peak"), side, batch, unit, per_s, step_ms,
flops (per step, analytic), mem_bytes, compile_s, check, note, dtype (training rows: the compute
dtype of both sides, `bench.common.default_dtype()`: bfloat16 on GPU, float32 on CPU).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Sizes: GPU as the issue asks; CPU small enough that the whole table takes minutes on 2 cores.
# fmt: off
SIZES = {
  "gpu": dict(siammae=dict(batch=256, steps=10), keyframes=dict(batch=256, steps=10),
              oval=dict(batch=16, size=(360, 480), steps=10, convert_batches=8), vae=dict(batch=64, steps=10),
              vqae3d=dict(batch=16, frames=20, demo=False, steps=10), labelprop=dict(frames=64, repeats=3),
              extract=dict(seconds=60.0), pipeline=dict(pairs=256, batch=16, runs=((0, 8), (8, 1)))),
  "cpu": dict(siammae=dict(batch=2, steps=1), keyframes=dict(batch=8, steps=2),
              oval=dict(batch=4, size=(120, 160), steps=2, convert_batches=2), vae=dict(batch=2, steps=1),
              vqae3d=dict(batch=2, frames=10, demo=True, steps=2), labelprop=dict(frames=6, repeats=1),
              extract=dict(seconds=4.0), pipeline=dict(pairs=32, batch=8, runs=((0, 1),))),
}
# fmt: on
# torch.compile takes minutes per model on the loaded CPU: only where it stays affordable.
CPU_COMPILE = {"keyframes", "oval", "vqae3d"}


def emit(**row) -> None:
  print("BENCHROW " + json.dumps(row), flush=True)


def _torch():
  from bench.common import load_torch

  return load_torch(required=False)


def _jax_mem() -> int | None:
  from bench.common import peak_memory_bytes

  return peak_memory_bytes()


def _torch_mem(torch) -> int | None:
  return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def _reset_torch_mem(torch) -> None:
  if torch.cuda.is_available():
    torch.cuda.reset_peak_memory_stats()


def step_flops(model, loss_fn, tx, example, batch_shapes: dict) -> float:
  """Analytic matmul + conv FLOPs of one engine training step (abstract shapes, nothing runs)."""
  import jax
  import numpy as np

  from aejax.train import init_state, make_train_step
  from bench.common import count_flops

  key = jax.random.key(0)
  state = jax.eval_shape(lambda k: init_state(model, tx, k, example), key)
  runner = make_train_step(model, loss_fn, tx, parallel="none")
  data = {k: jax.ShapeDtypeStruct(s, np.uint8) for k, s in batch_shapes.items()}
  return count_flops(runner._fn, state, data, key)


def _check(torch, losses, rtol: float, dtype: str) -> str:
  """The loss-equality column: `bench.common.check_losses` (float32 under full precision, and
  `dtype` when it is bf16) of the per-model script's `check_losses_agree`."""
  from bench.common import check_losses, check_summary

  return "no torch" if torch is None else check_summary(check_losses(losses, dtype, rtol, torch))


def _train_rows(name, unit, batch, jax_res, torch_runs, flops, check, note="", dtype=None):
  """Emits the JAX row then one row per PyTorch variant (`torch_runs`: (label, thunk))."""
  import jax

  from bench.common import result_row, short

  dt = short(dtype) if dtype else None
  base = dict(workload=name, kind="train", batch=batch, unit=unit)

  def timed(side: str, row: dict, mem, compile_s: float, note) -> None:
    timing = dict(per_s=row["per_s"], step_ms=row["step_ms"], flops=flops, mem_bytes=mem, compile_s=compile_s)
    emit(**base, side=side, **timing, check=check, note=note, dtype=dtype)

  compile_s = jax_res.get("compile_s", jax_res["first_s"] - jax_res["step_s"])
  row = result_row("JAX", jax_res, batch)
  timed(
    f"JAX {jax.__version__}",
    row,
    _jax_mem(),
    compile_s,
    "; ".join(filter(None, [dt and f"{dt} compute", note])),
  )
  torch = _torch()
  if torch is None:
    emit(
      **base,
      side="PyTorch",
      per_s=None,
      note="not available: torch not importable",
    )
    return
  for label, thunk in torch_runs:
    if thunk is None:
      emit(
        **base,
        side=f"PyTorch {label}",
        per_s=None,
        note="skipped on CPU (torch.compile takes minutes here)",
      )
      continue
    _reset_torch_mem(torch)
    try:
      r = thunk(torch)
    except Exception as e:  # noqa: BLE001 - one failed variant keeps the others
      emit(
        **base,
        side=f"PyTorch {label}",
        per_s=None,
        note=f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}",
      )
      continue
    row = result_row(f"PyTorch {label}", r, batch)
    torch_note = dt and (f"{dt} autocast" if dtype != "float32" else dt)
    timed(
      f"PyTorch {label} ({row['device']})", row, _torch_mem(torch), r["first_s"] - r["step_s"], torch_note
    )


def _variants(name: str, mode: str, fn):
  compile_ok = mode == "gpu" or name in CPU_COMPILE
  return [
    ("eager", lambda t: fn(t, False)),
    ("torch.compile", (lambda t: fn(t, True)) if compile_ok else None),
  ]


def run_keyframes(mode: str) -> None:
  import jax
  import jax.numpy as jnp

  from aejax.models.keyframe_ae import KeyframeAE
  from aejax.train import make_optimizer
  from bench import keyframes as kf
  from bench.common import default_dtype, jnp_dtype
  from experiments import keyframes as exp

  cfg = SIZES[mode]["keyframes"]
  b, steps = cfg["batch"], cfg["steps"]
  dtype = default_dtype()
  model = KeyframeAE(share_norms=True)
  variables = model.init(jax.random.key(0), jnp.zeros((1, *kf.SIZE, 3)), train=False)
  torch = _torch()
  check = _check(torch, lambda d: kf.check_losses_agree(model, variables, torch, d), 1e-4, dtype)
  flops = step_flops(
    model,
    exp.make_loss_fn(alpha=0.84, data_range=2.0),
    make_optimizer("sgd", 0.01),
    jnp.zeros((1, *kf.SIZE, 3)),
    {"image": (b, *kf.SIZE, 3)},
  )
  res = kf.bench_jax(model.clone(dtype=jnp_dtype(dtype)), b, steps)
  _train_rows(
    "key-frame AE 3×96×192, MS-SSIM+L1, SGD",
    "images/s",
    b,
    res,
    _variants("keyframes", mode, lambda t, c: kf.bench_torch(b, steps, c, t, dtype)),
    flops,
    check,
    dtype=dtype,
  )


def run_oval(mode: str) -> None:
  import jax
  import jax.numpy as jnp

  from aejax.codec.oval_train import make_loss_fn
  from aejax.models.oval import OVAL
  from aejax.train import make_optimizer
  from bench import oval as ov
  from bench.common import default_dtype, jnp_dtype

  cfg = SIZES[mode]["oval"]
  b, size, steps = cfg["batch"], tuple(cfg["size"]), cfg["steps"]
  model = OVAL()
  params = jax.device_get(jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, *size, 3))))())
  params = params["params"]
  dtype = default_dtype()
  torch = _torch()
  check = _check(torch, lambda d: ov.check_losses_agree(model, params, torch, size, d), 1e-5, dtype)
  flops = step_flops(
    model,
    make_loss_fn("bce", "rgb", 0.0, False),
    make_optimizer("adam", 1e-3),
    jnp.zeros((1, *size, 3)),
    {"video": (1, b, *size, 3)},
  )
  res = ov.bench_jax_train(model.clone(dtype=jnp_dtype(dtype)), b, size, steps)
  _train_rows(
    f"OVAL 3×{size[0]}×{size[1]}, BCE, Adam",
    "frames/s",
    b,
    res,
    _variants("oval", mode, lambda t, c: ov.bench_torch_train(t, b, size, steps, c, dtype)),
    flops,
    check,
    dtype=dtype,
  )
  conv = ov.bench_convert(model, params, b, size, cfg["convert_batches"])
  emit(
    workload=f"OVAL convert {size[0]}×{size[1]} (encode → f16 bytes → decode)",
    kind="app",
    side=f"JAX {jax.__version__}",
    batch=b,
    unit="frames/s",
    per_s=conv["fps"],
    note=f"encode {conv['encode_fps']:.1f}, decode {conv['decode_fps']:.1f} frames/s",
  )
  if torch is not None:
    fps = ov.bench_torch_forward(torch, b, size, cfg["convert_batches"])
    emit(
      workload=f"OVAL convert {size[0]}×{size[1]} (encode → f16 bytes → decode)",
      kind="app",
      side="PyTorch eager forward",
      batch=b,
      unit="frames/s",
      per_s=fps,
      note="encode + decode, no latent bytes",
    )


def _adam_rows(name: str, mode: str, title: tuple, model, loss_fn, batch: dict, res, torch_fn, check) -> None:
  """Rows of a training-step workload with Adam: `title` (workload, unit), one-entry `batch`
  shapes, our timings `res`, PyTorch's through `torch_fn`, FLOPs of one step."""
  import jax.numpy as jnp

  from aejax.train import make_optimizer
  from bench.common import default_dtype

  ((key, shape),) = batch.items()
  flops = step_flops(model, loss_fn, make_optimizer("adam", 1e-3), jnp.zeros((1, *shape[1:])), batch)
  _train_rows(*title, shape[0], res, _variants(name, mode, torch_fn), flops, check, dtype=default_dtype())


def run_vae(mode: str) -> None:
  import jax
  import jax.numpy as jnp

  from aejax.models.vae import ConvVAE
  from bench import vae as vb
  from bench.common import default_dtype, jnp_dtype
  from experiments.vae import make_loss_fn

  cfg = SIZES[mode]["vae"]
  b, steps, size = cfg["batch"], cfg["steps"], 254
  model = ConvVAE(image_size=(size, size))
  dtype = default_dtype()
  torch = _torch()
  check = "no torch"
  if torch is not None:
    from bench.torch_ref import vae as ref

    variables = jax.jit(
      lambda: model.init(
        {"params": jax.random.key(0), "sample": jax.random.key(1)}, jnp.zeros((1, size, size, 3))
      )
    )()
    tm = ref.load_flax_params(ref.VAE(), variables["params"])
    p, bs = variables["params"], variables["batch_stats"]
    check = _check(torch, lambda d: vb.check_losses_agree(model, p, bs, tm, torch, size, d), 1e-4, dtype)
  res = vb.bench_jax(model.clone(dtype=jnp_dtype(dtype)), b, size, steps)

  def torch_fn(t, compiled):
    from bench.torch_ref import vae as ref

    return vb.bench_torch(t, ref.VAE(), b, size, steps, compiled, dtype)

  title, batch = ("conv VAE 3×254×254, KL+BCE, Adam", "images/s"), {"image": (b, size, size, 3)}
  _adam_rows("vae", mode, title, model, make_loss_fn(), batch, res, torch_fn, check)


def run_vqae3d(mode: str) -> None:
  import jax
  import jax.numpy as jnp

  from aejax.models.vqae3d import VQAE3D
  from bench import vqae3d as vq
  from bench.common import default_dtype, jnp_dtype
  from experiments.compressed_vision import loss_fn

  cfg = SIZES[mode]["vqae3d"]
  b, frames, steps = cfg["batch"], cfg["frames"], cfg["steps"]
  kw = vq.model_kwargs(Namespace(demo=cfg["demo"]))
  model = VQAE3D(**kw)
  dtype = default_dtype()
  torch = _torch()
  check = "no torch"
  if torch is not None:
    from bench.torch_ref import vqae3d as ref

    variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, frames, 64, 64, 1))))()
    tm = ref.load_flax_params(vq.torch_model(kw), variables["params"], variables["batch_stats"])
    losses = lambda d: vq.check_losses_agree(model, variables, tm, torch, frames, d)
    check = _check(torch, losses, 1e-4, dtype)
  res = vq.bench_jax(model.clone(dtype=jnp_dtype(dtype)), b, frames, steps)
  width = "CPU demo width" if cfg["demo"] else "31.0M params"
  torch_fn = lambda t, c: vq.bench_torch(t, vq.torch_model(kw), b, frames, steps, c, dtype)
  title, batch = (
    (f"3D AE 1×{frames}×64×64 ({width}), MSE, Adam", "clips/s"),
    {"video": (b, frames, 64, 64, 1)},
  )
  _adam_rows("vqae3d", mode, title, model, loss_fn, batch, res, torch_fn, check)


def run_siammae(mode: str) -> None:
  import jax

  from bench import siammae_check as smc
  from bench import siammae_step as sm
  from bench.common import default_dtype, torch_device
  from experiments import siammae as exp

  cfg = SIZES[mode]["siammae"]
  dtype = default_dtype()  # both sides: bf16 (torch autocast) on CUDA, float32 on CPU
  b, steps = cfg["batch"], cfg["steps"]
  config = exp.paper()
  config.data.batch_size = b
  model = exp.build_model(config)
  tx, _ = exp.optimiser(config)
  s, r = config.data.image_size, config.data.repeats
  flops = step_flops(model, exp.loss_fn, tx, exp.example_pair(config), {"frames": (b // r, r, 2, s, s, 3)})
  # Correctness before timing, as for the other workloads.
  check = _check(_torch(), lambda d: smc.check_losses_agree(exp.paper(), d), 1e-4, dtype)
  res, notes = None, []
  for impl in ["cudnn", None] if jax.default_backend() == "gpu" else [None]:
    try:
      res = sm.bench("paper", b, impl, dtype, steps, 1)
      break
    except (NotImplementedError, RuntimeError, ValueError) as e:
      notes.append(f"attention {impl}: {str(e).splitlines()[0][:80]}")
  if res is None:
    raise RuntimeError("; ".join(notes))
  step_s = res["step_ms"] / 1e3
  jres = {"step_s": step_s, "first_s": res["compile_s"] + step_s, "compile_s": res["compile_s"]}
  note = "; ".join([f"ViT-S/16, {res['dtype']}, attention {res['attention']}", *notes])

  def torch_fn(t, compiled):
    from bench.torch_ref import siammae as ref

    dev = torch_device(t)
    out = ref.run(compiled, b, steps, dev)
    step_s = out["step_ms"] / 1e3  # warmup_s holds 3 steps, the first one compiling
    return {"step_s": step_s, "first_s": out["warmup_s"] - 2 * step_s, "device": dev}

  _train_rows(
    "SiamMAE ViT-S/16 224², AdamW",
    "pairs/s",
    b,
    jres,
    _variants("siammae", mode, torch_fn),
    flops,
    check,
    note,
    dtype=dtype,
  )


def run_labelprop(mode: str) -> None:
  import jax

  from aejax.labelprop import PROTOCOLS
  from bench import labelprop as lp

  cfg = SIZES[mode]["labelprop"]
  args = Namespace(
    frames=cfg["frames"],
    cpu_frames=cfg["frames"],
    grid=(30, 55),
    patch=16,
    dim=384,
    classes=4,
    repeats=cfg["repeats"],
    **{k: PROTOCOLS["siammae"][k] for k in ("context", "topk", "radius", "temperature", "neighbourhood")},
  )
  r = lp.bench_one(jax.devices()[0], args)
  emit(
    workload="label propagation 480×880 (30×55 grid, 20 context, top-7)",
    kind="app",
    side=f"JAX {jax.__version__}",
    batch=r["frames"],
    unit="frames/s",
    per_s=r["fps"],
    compile_s=r["first_call_s"],
    note="features given (no ViT forward)",
  )


def run_extract(mode: str) -> None:
  from bench import keyframes as kf

  secs = SIZES[mode]["extract"]["seconds"]
  r = kf.bench_extract(secs, "latent")
  emit(
    workload=f"key-frame extraction, {secs:.0f} s 640×360 30 fps video",
    kind="app",
    side="experiments.keyframes extract",
    batch=None,
    unit="video frames/s",
    per_s=r["video_s"] * 30 / r["wall_s"],
    note=f"whole command incl. start-up + compile; {r['sampled_per_s']:.1f} sampled frames/s",
  )


def _videos(tmp: Path) -> Path:
  from bench import data_pipeline as dp

  d = dp._default_videos()
  if d.is_dir() and any(d.iterdir()):
    return d
  from aejax.data.synthetic import write_video_folder

  write_video_folder(tmp / "videos", n=4, num_frames=90, size=(288, 384), ext=".avi")
  return tmp / "videos"


def run_pipeline(mode: str) -> None:
  from absl import flags

  flags.FLAGS.mark_as_parsed()
  from aejax.data.scan import scan_videos
  from aejax.data.sources import VideoPairSource
  from bench import data_pipeline as dp

  cfg = SIZES[mode]["pipeline"]
  with tempfile.TemporaryDirectory() as tmp:
    vdir = _videos(Path(tmp))
    src = VideoPairSource(scan_videos(vdir, cache_path=False), gap=(4, 48))
    for workers, threads in cfg["runs"]:
      start, per_pair, cpu = dp.grain_run(src, cfg["pairs"], cfg["batch"], workers, threads, 0)
      emit(
        workload=f"data pipeline: video pairs → 224² crops ({vdir.name})",
        kind="app",
        side=f"Grain, {workers} workers, {threads} threads",
        batch=cfg["batch"],
        unit="frames/s",
        per_s=2 / per_pair,
        compile_s=start,
        note=f"{1e3 * cpu / 2:.2f} CPU ms/frame; start-up in the compile column",
      )


def run_peak(mode: str) -> None:
  import jax

  from bench.common import matmul_peak

  peak = matmul_peak()
  emit(
    workload="matmul peak",
    kind="peak",
    side=f"JAX {jax.__version__}",
    per_s=None,
    flops=peak,
    note=("bf16 8192² matmul" if jax.default_backend() != "cpu" else "f32 1024² matmul"),
  )


WORKLOADS = {
  "peak": run_peak,
  "siammae": run_siammae,
  "keyframes": run_keyframes,
  "oval": run_oval,
  "vae": run_vae,
  "vqae3d": run_vqae3d,
  "labelprop": run_labelprop,
  "extract": run_extract,
  "pipeline": run_pipeline,
}


def child(name: str, mode: str) -> int:
  """Entry of one child process: runs workload `name`, reports a failure as one row."""
  t0 = time.perf_counter()
  try:
    WORKLOADS[name](mode)
  except Exception as e:  # noqa: BLE001 - the table says what broke and goes on
    msg = str(e).splitlines()[0][:160] if str(e) else ""
    emit(workload=name, kind="error", side="-", per_s=None, note=f"failed: {type(e).__name__}: {msg}")
    import traceback

    traceback.print_exc()
    return 1
  finally:
    print(f"[{name}] {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
  return 0
