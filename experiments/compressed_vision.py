"""ae_compressed_vision: a 3D conv compression autoencoder with a learned codebook on MovingMNIST.

Gaurav Mitra's ae_compressed_vision (UT Austin 2024; after Habibian et al., ICCV 2019 and Mentzer
et al., CVPR 2018) with the quantiser fixed (soft-to-hard STE; `legacy` keeps the original's bug),
plus the Compressed Vision idea (Wiles et al., ACCV 2022) of a task network on the codes.

  python -m experiments.compressed_vision train --preset demo --workdir W   # ~10 min, 2 CPU cores
  python -m experiments.compressed_vision eval --checkpoint W               # model from W's config
  python -m experiments.compressed_vision sweep --preset demo               # rate-distortion, ~1 h
  python -m experiments.compressed_vision probe --checkpoint W              # digits: codes vs pixels
  python -m experiments.compressed_vision encode --checkpoint W [--video IN | --clips X.npy] --out F.aejx
  python -m experiments.compressed_vision decode F.aejx --out F.mp4         # or F.npy; bit exact

Data (`aejax.data.movingmnist`): MovingMNIST, 2 bouncing digits, 64x64; `demo` and `paper` draw the
real MNIST digits (`data.digits`: default `find_mnist()`, i.e. $AEJAX_MNIST or
../shared/realdata/mnist/mnist.npz; validation clips over the test digits), `demo` falls back to
embedded procedural digits when there is none, `paper` stops; `--config.data.digits=PATH|procedural`;
`--config.data.source=PATH`: `mnist_test_seq.npy` or a video folder. Loss: MSE on [0, 1] pixels plus
the quantiser's; Adam 1e-3, batch 16. `paper` is the faithful model (31,023,971 + K parameters; GPU);
`demo`/`smoke` are narrow and shallow on 10/4-frame clips. Rates are honest: `bpp` is log2 K per
code, or 32 bits per latent value in the float modes (`none`, `legacy`), which `encode` refuses;
`encode` range codes the codes into an `.aejx` file (`aejax.codec.clips`) whose size is the rate.
Results: docs/results/compressed_vision.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import cli, metrics, viz
from aejax.codec.bitstream import decode_job
from aejax.codec.clip_eval import evaluate_clips, predict, probe_digits, write_rd_table
from aejax.codec.clips import decode_clips, encode_clips
from aejax.data.digits import find_mnist
from aejax.data.movingmnist import FRAME, clip_stream, load_clips
from aejax.data.pipeline import make_loader
from aejax.data.sources import ArraySource
from aejax.io import check_output, write_json
from aejax.models.vqae3d import VQAE3D
from aejax.train import apply_model, fit, init_state, make_optimizer, train_section
from aejax.train.restore import restore_for_eval


def get_config() -> ml_collections.ConfigDict:
  """The faithful configuration (the `paper` preset)."""
  c = ml_collections.ConfigDict()
  c.data = dict(source="generated", digits=find_mnist(), num_clips=10000, num_frames=20, num_digits=2)
  c.data.update(valid_fraction=0.2, split_seed=0, batch_size=16)
  c.model = dict(features=(64, 128), latent_features=32, kernel_size=5, num_stages=5, blocks_per_stage=3)
  c.model.update(share_residual_stack=False, quantizer="scalar", num_codes=128, quantizer_mode="ste")
  c.model.update(sigma=1.0, num_codebooks=1, commitment_cost=0.25, ema_decay=0.99, restart_threshold=0.5)
  c.model.update(unrolled=None, output_init=(1.0, 0.0))
  c.optim = dict(name="adam", lr=1e-3)
  c.train = train_section(num_steps=2500, eval_every=500, checkpoint_every=500, keep_checkpoints=2)
  c.eval = dict(num_clips=2000, batch_size=16, num_animations=2, fps=20.0)
  c.codec = dict(streams="temporal")  # encode: codes under the previous frame's (aejax.codec.clips)
  # Rounds of `steps_per_round` steps per codebook size; stop when the relative change of the
  # validation MSE is below `min_rel_change` or it rose `patience` times in a row (the original).
  c.sweep = dict(codebook_sizes=(2, 4, 8, 16, 32, 64, 128), vq_sizes=(256,), vq_codebooks=(1, 8))
  c.sweep.update(steps_per_round=2500, max_rounds=10, min_rel_change=0.01, patience=2)
  c.probe = dict(num_train=4000, num_test=1000, steps=1500, batch_size=32, lr=1e-3, width=32)
  return c


def paper() -> ml_collections.ConfigDict:
  """The faithful model and data (GPU-sized; real MNIST digits, required)."""
  return get_config()


def demo() -> ml_collections.ConfigDict:
  """A narrow, shallow model on 10-frame clips that trains on a 2-core CPU (real digits if found)."""
  c = get_config()
  c.data.update(digits=c.data.digits or "procedural", num_clips=2000, num_frames=10)
  c.model.update(features=(8, 16), num_stages=1, blocks_per_stage=1, kernel_size=3, num_codes=16)
  c.model.output_init = (0.2, 0.05)  # the pixel std and mean: no steps spent on the output gain
  c.train.update(num_steps=300, log_every=25, eval_every=150, checkpoint_every=150)
  c.eval.num_clips = 128
  c.sweep.update(steps_per_round=100, max_rounds=2)
  c.probe.update(num_train=1200, num_test=400, steps=300, width=16)
  return c


def smoke() -> ml_collections.ConfigDict:
  """Two steps of a tiny model on 4-frame clips over the procedural digits (tests)."""
  c = demo()
  c.data.update(digits="procedural", num_clips=24, num_frames=4, batch_size=4)
  c.model.update(features=(4, 8), latent_features=8)
  c.train.update(num_steps=2, log_every=1, eval_every=None, checkpoint_every=2)
  c.eval.update(num_clips=4, batch_size=4, num_animations=1)
  c.sweep.update(codebook_sizes=(2, 4), vq_sizes=(8,), vq_codebooks=(2,), steps_per_round=1, max_rounds=2)
  c.probe.update(num_train=16, num_test=8, steps=2, batch_size=4, width=4)
  return c


def build_model(config) -> VQAE3D:
  """The autoencoder of `config.model`."""
  m = dict(config.model)
  m["features"], m["output_init"] = tuple(m["features"]), tuple(m["output_init"])
  return VQAE3D(**m)


def loss_fn(model, variables, batch, rngs, train):
  """MSE on [0, 1] pixels plus the quantiser's own loss terms (float32)."""
  x = batch["video"].astype(jnp.float32) / 255.0  # [B, T, H, W, 1]
  (recon, aux), new_state = apply_model(model, variables, x, rngs=rngs, train=train)
  recon = recon.astype(jnp.float32)
  mse = jnp.mean((recon - x) ** 2)
  flat = lambda v: v.reshape(1, -1, *v.shape[3:])  # the batch as one image: the PSNR of `mse`
  logs = {"loss": mse + aux["loss"], "mse": mse, "psnr": metrics.psnr(flat(recon), flat(x))[0]}
  logs.update(quant_loss=aux["loss"], perplexity=aux["perplexity"], usage=aux["usage"])
  return logs["loss"], logs, new_state


def evaluate(model, config, variables, valid) -> dict:
  """Validation MSE/PSNR and bits per pixel of the first `eval.num_clips` validation clips."""
  return evaluate_clips(model, variables, valid["video"][: config.eval.num_clips], config.eval.batch_size)


def _animate(model, config, variables, valid, folder: Path, tag: str) -> None:
  k = config.eval.num_animations
  recon = np.asarray(predict(model, variables, valid["video"][:k])[0]) if k > 0 else ()
  for i in range(k):
    pair = [valid["video"][i], recon[i]]
    viz.write_side_by_side(folder / f"recon_{tag}_{i}", pair, config.eval.fps, scale=2)


def _fit(config, workdir: Path, model, clips, num_steps=None, **fit_kw):
  tx, d = make_optimizer(**config.optim), config.data
  example = jnp.zeros((1,) + clips["train"]["video"].shape[1:], jnp.float32)
  source = ArraySource({"video": clips["train"]["video"]}, name=f"movingmnist-train-{d.source}-{d.digits}")
  return fit(
    workdir=workdir,
    config=config,
    model=model,
    loss_fn=loss_fn,
    tx=tx,
    train_iter=make_loader(source, batch_size=d.batch_size, seed=config.train.seed),
    init_fn=lambda rng: init_state(model, tx, rng, example),
    **dict(config.train, num_steps=num_steps or config.train.num_steps),
    **fit_kw,
  )


def _restore(config, workdir: Path, args, data: bool = True):
  """(model, variables, config, clips or None) of `--checkpoint` (default the workdir)."""
  example = lambda c: jnp.zeros((1, c.data.num_frames, *FRAME))
  keys = ("model", "data.num_frames")
  model, variables, config = restore_for_eval(
    args.checkpoint or workdir, config, build_model=build_model, example=example, keys=keys
  )
  return model, variables, config, load_clips(config.data) if data else None


def train(config, workdir: Path, args) -> dict:
  """Train the autoencoder; evaluate, animate and plot the loss curve."""
  clips, model = load_clips(config.data), build_model(config)
  valid = clips["valid"]
  state = _fit(
    config,
    workdir,
    model,
    clips,
    eval_fn=lambda state, step: evaluate(model, config, state.variables, valid),
    artefact_fn=lambda state, step, writer: _animate(
      model, config, state.variables, valid, writer.workdir / "artefacts", f"{step:06d}"
    ),
  )
  curves = {"train MSE": "mse", "validation MSE": "eval/mse"}
  plot = workdir / "artefacts" / "loss_curve.png"
  viz.plot_metrics(workdir / "metrics.jsonl", plot, curves, ylabel="MSE ([0, 1] pixels)", log=True)
  return evaluate(model, config, state.variables, valid)


def eval_mode(config, workdir: Path, args) -> dict:
  """Evaluate a checkpoint (`--checkpoint`, default the workdir) and write animations."""
  out = check_output(workdir / "eval", overwrite=args.overwrite)
  model, variables, config, clips = _restore(config, workdir, args)
  _animate(model, config, variables, clips["valid"], out / "artefacts", "eval")
  return evaluate(model, config, variables, clips["valid"])


def sweep(config, workdir: Path, args) -> dict:
  """Rate-distortion sweep over scalar codebook sizes and VQ sizes, with early stopping."""
  clips, s, rows = load_clips(config.data), config.sweep, []
  runs = [dict(quantizer="scalar", num_codes=k, num_codebooks=1) for k in s.codebook_sizes]
  runs += [dict(quantizer="vq", num_codes=k, num_codebooks=g) for k in s.vq_sizes for g in s.vq_codebooks]
  for run in runs:
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.model.update(run)
    vq = run["quantizer"] == "vq"
    name = f"{run['quantizer']}_K{run['num_codes']}" + (f"_G{run['num_codebooks']}" if vq else "")
    model, history, rises, t0 = build_model(cfg), [], 0, time.perf_counter()
    for r in range(1, s.max_rounds + 1):  # each round resumes the run (state and data iterator)
      state = _fit(cfg, workdir / name, model, clips, num_steps=r * s.steps_per_round, verbose=False)
      res = evaluate(model, cfg, state.variables, clips["valid"])
      history.append(res["mse"])
      print(f"{name} round {r}: val mse {res['mse']:.5f} psnr {res['psnr']:.2f} bpp {res['bpp']:.3f}")
      if r > 1:
        rises = rises + 1 if history[-1] > history[-2] else 0
        if abs(history[-1] - history[-2]) / history[-2] <= s.min_rel_change or rises >= s.patience:
          break
    seconds = round(time.perf_counter() - t0, 1)
    rows.append(dict(name=name, **run, rounds=len(history), steps=int(state.step), seconds=seconds, **res))
  write_rd_table(rows, workdir)
  return {"table": str(workdir / "rate_distortion.md"), "runs": len(rows)}


def probe(config, workdir: Path, args) -> dict:
  """Which digits appear: a small classifier on the codes against the same on the pixels."""
  check_output(workdir / "probe.json", overwrite=args.overwrite)
  model, variables, config, clips = _restore(config, workdir, args)
  if (clips["train"]["labels"] < 0).any():
    raise ValueError(f"{config.data.source}: the probe needs digit labels (use generated clips)")
  p = config.probe
  tr = {k: v[: p.num_train] for k, v in clips["train"].items()}
  te = {k: v[: p.num_test] for k, v in clips["valid"].items()}
  result = probe_digits(
    model, variables, tr, te, p, batch_size=config.eval.batch_size, seed=config.train.seed
  )
  write_json(workdir / "probe.json", result)
  return result


def encode(config, workdir: Path, args) -> dict:
  """Encode clips into an .aejx file (the rate is its size): --video IN (grey 64x64 clips),
  --clips X.npy (uint8 [N, T, 64, 64(, 1)]) or neither (the validation clips)."""
  out = Path(args.out or workdir / "encode" / "clips.aejx")
  check_output(out, inputs=[args.video, args.clips], overwrite=args.overwrite, what="--out")
  if out.suffix != ".aejx":
    raise ValueError(f"encode writes an .aejx file, got --out {out}")
  model, variables, config, _ = _restore(config, workdir, args, data=False)
  if args.video or args.clips:
    clips, fps = clip_stream(video=args.video, clips=args.clips, num_frames=config.data.num_frames)
  else:
    clips, fps = iter(load_clips(config.data)["valid"]["video"][: config.eval.num_clips]), None
  summary = encode_clips(
    model,
    variables,
    clips,
    out,
    batch=config.eval.batch_size,
    fps=fps or config.eval.fps,
    model_config=config.model.to_dict(),
    source={"checkpoint": str(Path(args.checkpoint or workdir).resolve())},
    streams=config.codec.streams,
  )
  write_json(out.with_suffix(".json"), summary)
  return summary


def decode(config, workdir: Path, args) -> dict:
  """Decode an .aejx clip file (`decode FILE --out OUT.mp4|OUT.npy`) with the checkpoint it names
  (or --checkpoint); the clips equal the encoder's reconstruction bit for bit."""
  header, out = decode_job(args.input, args.out, "clips", args.overwrite)
  args.checkpoint = args.checkpoint or header.get("source", {}).get("checkpoint")
  model, variables, _, _ = _restore(config, workdir, args, data=False)
  kind = "out_npy" if out.suffix == ".npy" else "out_video"
  return decode_clips(args.input, model, variables, **{kind: out})


PRESETS = {"demo": demo, "smoke": smoke, "paper": paper}
MODES = dict(train=train, eval=eval_mode, sweep=sweep, probe=probe, encode=encode, decode=decode)
FLAGS = {
  "checkpoint": "a workdir or a step folder (eval, probe, encode; decode: the file's)",
  "video": "encode: a video, cut into grey 64x64 clips of data.num_frames frames",
  "clips": "encode: uint8 clips [N, T, 64, 64(, 1)] in a .npy file",
  "out": "encode: the .aejx file; decode: .mp4 (H.264) or .npy",
  "input": "decode: the .aejx file (also `decode FILE`)",
}
main = cli.command(
  get_config, MODES, PRESETS, FLAGS, __doc__, real_data_key="data.digits", positional={"decode": "input"}
)


if __name__ == "__main__":
  main()
