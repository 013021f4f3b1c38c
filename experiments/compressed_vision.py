"""ae_compressed_vision: a 3D conv compression autoencoder with a learned codebook on MovingMNIST.

Gaurav Mitra's ae_compressed_vision (UT Austin 2024; Habibian et al., ICCV 2019 and Mentzer et
al., CVPR 2018 lineage), with the quantiser fixed (soft-to-hard STE by default; `legacy` mode
keeps the original's bug), plus the Compressed Vision idea (Wiles et al., ACCV 2022) of running a
task network directly on the codes.

  python -m experiments.compressed_vision train --preset demo    # ~10 min on 2 CPU cores
  python -m experiments.compressed_vision sweep --preset demo    # rate-distortion, ~1 h on CPU
  python -m experiments.compressed_vision probe --preset demo    # digits-present probe, codes vs pixels
  python -m experiments.compressed_vision train --preset paper   # the faithful model (GPU)

Data: MovingMNIST clips [T, 64, 64, 1] from `mnist_test_seq.npy` (`--config.data.source=PATH`)
or generated from digits (`data.digits`: '' for the embedded procedural digits, or an MNIST
.npz), split 80/20 by `data.split_seed`. Loss: MSE on [0, 1] pixels plus the quantiser's loss;
Adam 1e-3; batch 16. The faithful model (`paper`) has 31,023,971 + K parameters; `demo` and
`smoke` shrink widths (8/16 and 4/8), the residual stack (1 stage of 1 block), the kernels
(3 instead of 5) and the clip length (10 and 4 frames) to fit a 2-core CPU (~1.8 s a step), and
start the output BatchNorm at the pixel std/mean (0.2, 0.05) instead of (1, 0).

Outputs in the workdir: metrics.jsonl, TensorBoard, `artefacts/recon_<step>_<i>.{gif,mp4}`
(original | reconstruction), `artefacts/loss_curve.png`; the sweep writes `rate_distortion.{md,
json,png}`; the probe writes `probe.json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import cli
from aejax.models.quantizers import empirical_entropy_bits
from aejax.models.vqae3d import VQAE3D
from aejax.train import apply_model, fit, init_state, make_optimizer, restore_state
from experiments import compressed_vision_tools as tools


def get_config() -> ml_collections.ConfigDict:
  """The faithful configuration (the `paper` preset)."""
  c = ml_collections.ConfigDict()
  c.data = dict(source="generated", digits="", num_clips=10000, num_frames=20, num_digits=2,
                valid_fraction=0.2, split_seed=0, batch_size=16)
  c.model = dict(features=(64, 128), latent_features=32, kernel_size=5, num_stages=5,
                 blocks_per_stage=3, share_residual_stack=False, quantizer="scalar", num_codes=128,
                 quantizer_mode="ste", sigma=1.0, num_codebooks=1, commitment_cost=0.25,
                 ema_decay=0.99, restart_threshold=0.5, unrolled=None, output_init=(1.0, 0.0))
  c.optim = dict(name="adam", lr=1e-3)
  c.train = dict(num_steps=2500, seed=0, log_every=50, eval_every=500, checkpoint_every=500,
                 keep_checkpoints=2, parallel="jit")
  c.eval = dict(num_clips=2000, batch_size=16, num_animations=2, fps=20.0)
  # Rounds of `steps_per_round` steps per codebook size; stop when the relative change of the
  # validation MSE is below `min_rel_change` or it rose `patience` times in a row (the original).
  c.sweep = dict(codebook_sizes=(2, 4, 8, 16, 32, 64, 128), vq_sizes=(256,), vq_codebooks=(1, 8),
                 steps_per_round=2500, max_rounds=10, min_rel_change=0.01, patience=2)
  c.probe = dict(num_train=4000, num_test=1000, steps=1500, batch_size=32, lr=1e-3, width=32)
  return c


def paper() -> ml_collections.ConfigDict:
  return get_config()


def demo() -> ml_collections.ConfigDict:
  c = get_config()
  c.data.num_clips, c.data.num_frames = 2000, 10
  c.model.features, c.model.num_stages, c.model.blocks_per_stage = (8, 16), 1, 1
  c.model.kernel_size, c.model.num_codes = 3, 16
  c.model.output_init = (0.2, 0.05)  # the pixel std and mean: no steps spent on the output gain
  c.train.update(num_steps=300, log_every=25, eval_every=150, checkpoint_every=150)
  c.eval.num_clips = 128
  c.sweep.update(steps_per_round=100, max_rounds=2)
  c.probe.update(num_train=1200, num_test=400, steps=300, width=16)
  return c


def smoke() -> ml_collections.ConfigDict:
  c = demo()
  c.data.update(num_clips=24, num_frames=4, batch_size=4)
  c.model.update(features=(4, 8), latent_features=8)
  c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2)
  c.eval.update(num_clips=4, batch_size=4, num_animations=1)
  c.sweep.update(codebook_sizes=(2, 4), vq_sizes=(8,), vq_codebooks=(2,), steps_per_round=1,
                 max_rounds=2)
  c.probe.update(num_train=16, num_test=8, steps=2, batch_size=4, width=4)
  return c


# ----------------------------------------------------------------------------------- model, loss


def build_model(config) -> VQAE3D:
  m = dict(config.model)
  m["features"], m["output_init"] = tuple(m["features"]), tuple(m["output_init"])
  return VQAE3D(**m)


def loss_fn(model, variables, batch, rngs, train):
  """MSE on [0, 1] pixels plus the quantiser's own loss terms (float32)."""
  x = batch["video"].astype(jnp.float32) / 255.0  # [B, T, H, W, 1]
  (recon, aux), new_state = apply_model(model, variables, x, rngs=rngs, train=train)
  mse = jnp.mean((recon.astype(jnp.float32) - x) ** 2)
  loss = mse + aux["loss"]
  metrics = {"loss": loss, "mse": mse, "psnr": -10.0 * jnp.log10(jnp.maximum(mse, 1e-10)),
             "quant_loss": aux["loss"], "perplexity": aux["perplexity"], "usage": aux["usage"]}
  return loss, metrics, new_state


def _setup(config):
  data = tools.load_clips(**config.data)
  model = build_model(config)
  tx = make_optimizer(**config.optim)
  example = jnp.zeros((1,) + data["train"]["video"].shape[1:], jnp.float32)
  return data, model, tx, lambda rng: init_state(model, tx, rng, example)


def _predict_fn(model):
  @jax.jit
  def predict(variables, video):
    x = video.astype(jnp.float32) / 255.0
    recon, aux = model.apply(variables, x, train=False)
    return jnp.clip(recon, 0.0, 1.0), aux["indices"], aux["zq"]

  return predict


def evaluate(model, config, state, valid) -> dict:
  """Validation MSE/PSNR and bits per pixel (fixed-length codes and empirical code entropy)."""
  predict = _predict_fn(model)
  n = min(config.eval.num_clips, len(valid["video"]))
  bs = config.eval.batch_size
  groups = config.model.num_codebooks if config.model.quantizer == "vq" else 1
  counts = np.zeros((groups, config.model.num_codes), np.int64)
  se, psnrs, codes_per_clip = 0.0, [], 0
  for i in range(0, n, bs):
    video = valid["video"][i:i + bs]
    recon, idx, _ = predict(state.variables, video)
    err = (np.asarray(recon, np.float64) - video / 255.0) ** 2  # [B, T, H, W, 1]
    se += err.sum()
    psnrs += list(-10 * np.log10(np.maximum(err.reshape(len(video), -1).mean(1), 1e-10)))
    idx = np.asarray(idx).reshape(len(video), -1, groups)
    codes_per_clip = idx.shape[1] * groups
    for g in range(groups):
      counts[g] += np.bincount(idx[:, :, g].ravel(), minlength=config.model.num_codes)
  pixels = int(np.prod(valid["video"].shape[1:]))
  mse = se / (n * pixels)
  entropy = float(np.mean([empirical_entropy_bits(c) for c in counts]))
  probs = counts / np.maximum(counts.sum(1, keepdims=True), 1)
  return {"mse": float(mse), "psnr": float(np.mean(psnrs)), "psnr_of_mse": float(-10 * np.log10(mse)),
          "bpp": codes_per_clip * float(np.log2(config.model.num_codes)) / pixels,
          "bpp_entropy": codes_per_clip * entropy / pixels,
          "usage": float((counts > 0).mean()),
          "perplexity": float(np.mean([2 ** empirical_entropy_bits(c) for c in counts])),
          "code_entropy_bits": entropy, "clips": n,
          "max_code_prob": float(probs.max())}


def _artefacts(model, config, valid):
  predict = _predict_fn(model)

  def artefact_fn(state, step, writer):
    k = config.eval.num_animations
    if k <= 0:
      return
    recon, _, _ = predict(state.variables, valid["video"][:k])
    for i in range(k):
      path = writer.artefact_path(f"recon_{step:06d}_{i}")
      tools.write_side_by_side(path, valid["video"][i], np.asarray(recon[i]), config.eval.fps)

  return artefact_fn


def _fit(config, workdir, model, tx, init_fn, data, *, num_steps=None, eval_fn=None,
         artefact_fn=None, seed_offset=0, verbose=True):
  train_kw = dict(config.train)
  if num_steps is not None:
    train_kw["num_steps"] = num_steps
  it = tools.batches(data["train"], config.data.batch_size, seed=config.train.seed + seed_offset)
  return fit(workdir=workdir, config=config, model=model, loss_fn=loss_fn, tx=tx, train_iter=it,
             init_fn=init_fn, eval_fn=eval_fn, artefact_fn=artefact_fn, verbose=verbose,
             **train_kw)


# ------------------------------------------------------------------------------------------ modes


def train(config, workdir: Path, args) -> dict:
  """Train the autoencoder; evaluate, animate and plot the loss curve."""
  data, model, tx, init_fn = _setup(config)
  eval_fn = lambda state, step: evaluate(model, config, state, data["valid"])
  state = _fit(config, workdir, model, tx, init_fn, data, eval_fn=eval_fn,
               artefact_fn=_artefacts(model, config, data["valid"]))
  tools.plot_loss_curves(workdir / "metrics.jsonl", workdir / "artefacts" / "loss_curve.png")
  return evaluate(model, config, state, data["valid"])


def _restore(config, workdir: Path, args):
  data, model, tx, init_fn = _setup(config)
  source = Path(args.checkpoint) if getattr(args, "checkpoint", None) else workdir
  abstract = jax.eval_shape(init_fn, jax.random.key(0))
  return data, model, restore_state(source, abstract)


def eval_mode(config, workdir: Path, args) -> dict:
  """Evaluate a checkpoint (`--checkpoint`, default the workdir) and write animations."""
  data, model, state = _restore(config, workdir, args)
  from aejax.train import Writer

  writer = Writer(workdir / "eval")
  _artefacts(model, config, data["valid"])(state, int(state.step), writer)
  writer.close()
  return evaluate(model, config, state, data["valid"])


def sweep(config, workdir: Path, args) -> dict:
  """Rate-distortion sweep over scalar codebook sizes and VQ sizes, with early stopping."""
  data, _, tx, _ = _setup(config)
  runs = [dict(quantizer="scalar", num_codes=k, num_codebooks=1)
          for k in config.sweep.codebook_sizes]
  runs += [dict(quantizer="vq", num_codes=k, num_codebooks=g)
           for k in config.sweep.vq_sizes for g in config.sweep.vq_codebooks]
  rows = []
  for run in runs:
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.model.update(run)
    name = (f"scalar_K{run['num_codes']}" if run["quantizer"] == "scalar"
            else f"vq_K{run['num_codes']}_G{run['num_codebooks']}")
    model = build_model(cfg)
    example = jnp.zeros((1,) + data["train"]["video"].shape[1:], jnp.float32)
    init_fn = lambda rng, model=model: init_state(model, tx, rng, example)
    history, rises, t0 = [], 0, time.perf_counter()
    for r in range(1, cfg.sweep.max_rounds + 1):
      state = _fit(cfg, workdir / name, model, tx, init_fn, data, verbose=False,
                   num_steps=r * cfg.sweep.steps_per_round, seed_offset=r)
      res = evaluate(model, cfg, state, data["valid"])
      history.append(res["mse"])
      print(f"{name} round {r}: val mse {res['mse']:.5f} psnr {res['psnr']:.2f} "
            f"bpp {res['bpp']:.3f} (entropy {res['bpp_entropy']:.3f})", flush=True)
      if len(history) > 1:
        prev = history[-2]
        rises = rises + 1 if history[-1] > prev else 0
        if abs(history[-1] - prev) / prev <= cfg.sweep.min_rel_change or rises >= cfg.sweep.patience:
          break
    rows.append(dict(name=name, **run, rounds=len(history), steps=int(state.step),
                     seconds=round(time.perf_counter() - t0, 1), **res))
  tools.write_rd_table(rows, workdir)
  return {"table": str(workdir / "rate_distortion.md"), "runs": len(rows)}


def probe(config, workdir: Path, args) -> dict:
  """Which digits appear: a small classifier on the codes against the same on the pixels."""
  data, model, state = _restore(config, workdir, args)
  if (data["train"]["labels"] < 0).any():
    raise ValueError(f"{config.data.source}: the probe needs digit labels (use generated clips)")
  predict = _predict_fn(model)

  def codes(video):
    out, t0 = [], time.perf_counter()
    for i in range(0, len(video), config.eval.batch_size):
      out.append(np.asarray(predict(state.variables, video[i:i + config.eval.batch_size])[2]))
    return np.concatenate(out), (time.perf_counter() - t0) / max(len(video), 1)

  p = config.probe
  tr = {k: v[:p.num_train] for k, v in data["train"].items()}
  te = {k: v[:p.num_test] for k, v in data["valid"].items()}
  ctr, enc_time = codes(tr["video"])
  cte, _ = codes(te["video"])
  result = {"encode_seconds_per_clip": enc_time}
  for kind, xtr, xte in (("codes", ctr, cte), ("pixels", tr["video"], te["video"])):
    result[kind] = tools.train_probe(kind, xtr, tools.multi_hot(tr["labels"]), xte,
                                     tools.multi_hot(te["labels"]), seed=config.train.seed, **p)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "probe.json").write_text(json.dumps(result, indent=2))
  return result


def main(argv=None):
  return cli.run(get_config, modes={"train": train, "eval": eval_mode, "sweep": sweep,
                                    "probe": probe},
                 presets={"demo": demo, "smoke": smoke, "paper": paper}, default_preset="demo",
                 flags={"checkpoint": "a workdir or a step folder (eval, probe)"}, doc=__doc__,
                 argv=argv)


if __name__ == "__main__":
  main()
