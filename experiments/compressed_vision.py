"""ae_compressed_vision: a 3D conv compression autoencoder with a learned codebook on MovingMNIST.

Gaurav Mitra's ae_compressed_vision (UT Austin 2024; after Habibian et al., ICCV 2019 and Mentzer
et al., CVPR 2018) with the quantiser fixed (soft-to-hard STE; `legacy` keeps the original's bug),
plus the Compressed Vision idea (Wiles et al., ACCV 2022) of a task network on the codes.

  python -m experiments.compressed_vision train --preset demo --workdir W   # ~10 min, 2 CPU cores
  python -m experiments.compressed_vision eval --checkpoint W               # model from W's config
  python -m experiments.compressed_vision sweep --preset demo               # rate-distortion, ~1 h
  python -m experiments.compressed_vision probe --checkpoint W --preset demo  # digits: codes vs pixels

Data: MovingMNIST clips [T, 64, 64, 1], generated bouncing digits (`data.digits`: None for the
embedded procedural digits, or an MNIST .npz), or `--config.data.source=PATH`: `mnist_test_seq.npy`
or a video folder / prepared `aejax_videos` set (grey 64x64 clips), split 80/20 by `data.split_seed`,
batched by the Grain loader (checkpointed, resumed exactly).
Loss: MSE on [0, 1] pixels plus the quantiser's loss; Adam 1e-3, batch 16. `paper` is the faithful
model (31,023,971 + K parameters; GPU); `demo`/`smoke` shrink the widths (8/16, 4/8), the residual
stack (1 stage of 1 block), the kernels (3) and the clips (10, 4 frames) and start the output
BatchNorm at the pixel std/mean (0.2, 0.05). Outputs: metrics.jsonl, TensorBoard,
`artefacts/recon_<step>_<i>.{gif,mp4}`, `artefacts/loss_curve.png`; the sweep writes
`rate_distortion.{md,json,png}`, the probe `probe.json`. Results: docs/results/compressed_vision.md.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import cli, metrics, viz
from aejax.data import roots
from aejax.data.digits import moving_digits
from aejax.data.pipeline import make_loader
from aejax.data.sources import ArraySource, MovingMNISTSource, VideoClipSource
from aejax.evaluate import ClipProbe, map_batches, multi_hot, train_probe
from aejax.io import write_json
from aejax.models.quantizers import empirical_entropy_bits
from aejax.models.vqae3d import VQAE3D
from aejax.train import apply_model, fit, init_state, make_optimizer
from aejax.train.checkpoint import restore_for_eval

FRAME = (64, 64, 1)  # MovingMNIST frames [H, W, C]


def get_config() -> ml_collections.ConfigDict:
  """The faithful configuration (the `paper` preset)."""
  c = ml_collections.ConfigDict()
  c.data = dict(
    source="generated",
    digits=None,
    num_clips=10000,
    num_frames=20,
    num_digits=2,
    valid_fraction=0.2,
    split_seed=0,
    batch_size=16,
  )
  c.model = dict(
    features=(64, 128),
    latent_features=32,
    kernel_size=5,
    num_stages=5,
    blocks_per_stage=3,
    share_residual_stack=False,
    quantizer="scalar",
    num_codes=128,
    quantizer_mode="ste",
    sigma=1.0,
    num_codebooks=1,
    commitment_cost=0.25,
    ema_decay=0.99,
    restart_threshold=0.5,
    unrolled=None,
    output_init=(1.0, 0.0),
  )
  c.optim = dict(name="adam", lr=1e-3)
  c.train = dict(
    num_steps=2500,
    seed=0,
    log_every=50,
    eval_every=500,
    checkpoint_every=500,
    keep_checkpoints=2,
    parallel="jit",
  )
  c.eval = dict(num_clips=2000, batch_size=16, num_animations=2, fps=20.0)
  # Rounds of `steps_per_round` steps per codebook size; stop when the relative change of the
  # validation MSE is below `min_rel_change` or it rose `patience` times in a row (the original).
  c.sweep = dict(
    codebook_sizes=(2, 4, 8, 16, 32, 64, 128),
    vq_sizes=(256,),
    vq_codebooks=(1, 8),
    steps_per_round=2500,
    max_rounds=10,
    min_rel_change=0.01,
    patience=2,
  )
  c.probe = dict(num_train=4000, num_test=1000, steps=1500, batch_size=32, lr=1e-3, width=32)
  return c


def paper() -> ml_collections.ConfigDict:
  """The faithful model and data (GPU-sized)."""
  return get_config()


def demo() -> ml_collections.ConfigDict:
  """A narrow, shallow model on 10-frame clips that trains on a 2-core CPU."""
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
  """Two steps of a tiny model on 4-frame clips (tests)."""
  c = demo()
  c.data.update(num_clips=24, num_frames=4, batch_size=4)
  c.model.update(features=(4, 8), latent_features=8)
  c.train.update(num_steps=2, log_every=1, eval_every=None, checkpoint_every=2)
  c.eval.update(num_clips=4, batch_size=4, num_animations=1)
  c.sweep.update(codebook_sizes=(2, 4), vq_sizes=(8,), vq_codebooks=(2,), steps_per_round=1, max_rounds=2)
  c.probe.update(num_train=16, num_test=8, steps=2, batch_size=4, width=4)
  return c


# ------------------------------------------------------------------------------- data, model, loss


def load_clips(data) -> dict:
  """MovingMNIST clips split by `data.split_seed`: {train, valid} -> {video [N,T,64,64,1], labels}.

  `data.source` "generated" draws bouncing digits over `data.digits`; otherwise it is the path of
  the original `mnist_test_seq.npy`, or a video folder or prepared `aejax_videos` set
  (`aejax.data.roots.videos`: consecutive `num_frames`-frame clips, grey, resized to 64x64); the
  digit labels of files are unknown (-1).
  """
  if data.source == "generated":
    clips = moving_digits(
      data.num_clips, data.num_frames, FRAME[0], data.num_digits, seed=data.split_seed, digits=data.digits
    )
  elif Path(data.source).is_dir():
    clips = {"video": video_clips(data.source, data.num_clips, data.num_frames)}
    clips["labels"] = np.full((len(clips["video"]), data.num_digits), -1, np.int32)
  else:
    src = MovingMNISTSource(data.source)
    video = np.stack([src[i]["video"][: data.num_frames] for i in range(min(data.num_clips, len(src)))])
    clips = {"video": video, "labels": np.full((len(video), data.num_digits), -1, np.int32)}
  n = len(clips["video"])
  if n < 2:
    raise ValueError(f"{data.source}: need at least 2 clips, got {n}")
  perm = np.random.default_rng(data.split_seed).permutation(n)
  n_valid = max(1, int(round(data.valid_fraction * n)))
  return {
    split: {k: v[idx] for k, v in clips.items()}
    for split, idx in (("train", perm[n_valid:]), ("valid", perm[:n_valid]))
  }


def video_clips(root, num_clips: int, num_frames: int) -> np.ndarray:
  """Up to `num_clips` clips [N, num_frames, 64, 64, 1] uint8 (grey) of the videos under `root`."""
  src = VideoClipSource(roots.videos(root), num_frames=num_frames, hop=num_frames)
  out = []
  for i in range(min(num_clips, len(src))):
    v = src[i]["video"]  # [T, H, W, 3]
    out.append(
      np.stack(
        [
          cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), FRAME[1::-1], interpolation=cv2.INTER_AREA)
          for f in v
        ]
      )[..., None]
    )
  return np.stack(out)


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
  loss = mse + aux["loss"]
  flat = lambda v: v.reshape(1, -1, *v.shape[3:])  # the batch as one image: the PSNR of `mse`
  psnr = metrics.psnr(flat(recon), flat(x))[0]
  return (
    loss,
    {
      "loss": loss,
      "mse": mse,
      "psnr": psnr,
      "quant_loss": aux["loss"],
      "perplexity": aux["perplexity"],
      "usage": aux["usage"],
    },
    new_state,
  )


@functools.partial(jax.jit, static_argnums=0)
def predict(model, variables, video):
  """uint8 clips -> (reconstruction in [0, 1], code indices, quantised latents `zq`)."""
  recon, aux = model.apply(variables, video.astype(jnp.float32) / 255.0, train=False)
  return jnp.clip(recon, 0.0, 1.0), aux["indices"], aux["zq"]


@functools.partial(jax.jit, static_argnums=0)
def clip_stats(model, variables, video):
  """Per clip: MSE and PSNR of the reconstruction, and code counts [groups, K]."""
  recon, idx, _ = predict(model, variables, video)
  x, y = (v.reshape(len(video), -1, *v.shape[3:]) for v in (video / 255.0, recon))  # a clip: 1 image
  groups = model.num_codebooks if model.quantizer == "vq" else 1
  count = jax.vmap(jax.vmap(lambda i: jnp.bincount(i, length=model.num_codes), in_axes=1))
  return (
    jnp.mean((y - x) ** 2, axis=(1, 2, 3)),
    metrics.psnr(y, x),
    count(idx.reshape(len(video), -1, groups)),
  )


def evaluate(model, config, variables, valid) -> dict:
  """Validation MSE/PSNR and bits per pixel (fixed-length codes and empirical code entropy)."""
  n = min(config.eval.num_clips, len(valid["video"]))
  mse, psnr, counts = map_batches(
    lambda v: clip_stats(model, variables, v), valid["video"][:n], config.eval.batch_size
  )
  codes_per_clip, counts = int(counts[0].sum()), counts.sum(0)
  pixels = int(np.prod(valid["video"].shape[1:]))
  mse = float(np.mean(mse, dtype=np.float64))
  entropy = float(np.mean([empirical_entropy_bits(c) for c in counts]))
  return {
    "mse": mse,
    "psnr": float(np.mean(psnr, dtype=np.float64)),
    "psnr_of_mse": float(10 * np.log10(1 / mse)),
    "bpp": codes_per_clip * float(np.log2(model.num_codes)) / pixels,
    "bpp_entropy": codes_per_clip * entropy / pixels,
    "usage": float((counts > 0).mean()),
    "perplexity": float(np.mean([2 ** empirical_entropy_bits(c) for c in counts])),
    "code_entropy_bits": entropy,
    "clips": n,
    "max_code_prob": float((counts / np.maximum(counts.sum(1, keepdims=True), 1)).max()),
  }


def _animate(model, config, variables, valid, folder: Path, tag: str) -> None:
  k = config.eval.num_animations
  if k > 0:
    recon = np.asarray(predict(model, variables, valid["video"][:k])[0])
    for i in range(k):
      viz.write_side_by_side(
        folder / f"recon_{tag}_{i}", [valid["video"][i], recon[i]], config.eval.fps, scale=2
      )


def _fit(config, workdir: Path, model, clips, num_steps=None, **fit_kw):
  tx = make_optimizer(**config.optim)
  example = jnp.zeros((1,) + clips["train"]["video"].shape[1:], jnp.float32)
  d = config.data
  source = ArraySource(
    {"video": clips["train"]["video"]},
    name=f"movingmnist-train-{d.source}-{d.digits}-{d.num_digits}-{d.split_seed}",
  )
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


def _restore(config, workdir: Path, args):
  """(model, variables, config, clips) of `--checkpoint` (default the workdir); the run decides."""
  model, variables, config = restore_for_eval(
    args.checkpoint or workdir,
    config,
    build_model=build_model,
    example=lambda c: jnp.zeros((1, c.data.num_frames, *FRAME)),
    keys=("model", "data.num_frames"),
  )
  return model, variables, config, load_clips(config.data)


# ------------------------------------------------------------------------------------------ modes


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
  viz.plot_metrics(
    workdir / "metrics.jsonl",
    workdir / "artefacts" / "loss_curve.png",
    {"train MSE": "mse", "validation MSE": "eval/mse"},
    ylabel="MSE ([0, 1] pixels)",
    log=True,
  )
  return evaluate(model, config, state.variables, valid)


def eval_mode(config, workdir: Path, args) -> dict:
  """Evaluate a checkpoint (`--checkpoint`, default the workdir) and write animations."""
  model, variables, config, clips = _restore(config, workdir, args)
  _animate(model, config, variables, clips["valid"], workdir / "eval" / "artefacts", "eval")
  return evaluate(model, config, variables, clips["valid"])


def sweep(config, workdir: Path, args) -> dict:
  """Rate-distortion sweep over scalar codebook sizes and VQ sizes, with early stopping."""
  clips, s = load_clips(config.data), config.sweep
  runs = [dict(quantizer="scalar", num_codes=k, num_codebooks=1) for k in s.codebook_sizes]
  runs += [dict(quantizer="vq", num_codes=k, num_codebooks=g) for k in s.vq_sizes for g in s.vq_codebooks]
  rows = []
  for run in runs:
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.model.update(run)
    name = (
      f"scalar_K{run['num_codes']}"
      if run["quantizer"] == "scalar"
      else f"vq_K{run['num_codes']}_G{run['num_codebooks']}"
    )
    model, history, rises, t0 = build_model(cfg), [], 0, time.perf_counter()
    for r in range(1, s.max_rounds + 1):  # each round resumes the run (state and data iterator)
      state = _fit(cfg, workdir / name, model, clips, num_steps=r * s.steps_per_round, verbose=False)
      res = evaluate(model, cfg, state.variables, clips["valid"])
      history.append(res["mse"])
      print(
        f"{name} round {r}: val mse {res['mse']:.5f} psnr {res['psnr']:.2f} "
        f"bpp {res['bpp']:.3f} (entropy {res['bpp_entropy']:.3f})",
        flush=True,
      )
      if r > 1:
        rises = rises + 1 if history[-1] > history[-2] else 0
        if abs(history[-1] - history[-2]) / history[-2] <= s.min_rel_change or rises >= s.patience:
          break
    rows.append(
      dict(
        name=name,
        **run,
        rounds=len(history),
        steps=int(state.step),
        seconds=round(time.perf_counter() - t0, 1),
        **res,
      )
    )
  write_rd_table(rows, workdir)
  return {"table": str(workdir / "rate_distortion.md"), "runs": len(rows)}


def write_rd_table(rows: list[dict], workdir: Path) -> None:
  """`rate_distortion.{json,md,png}`: bpp (fixed-length and entropy) against PSNR and MSE."""
  workdir.mkdir(parents=True, exist_ok=True)
  write_json(workdir / "rate_distortion.json", rows)
  lines = [
    "| run | K | codebooks | bpp (log2 K) | bpp (entropy) | MSE | PSNR dB | usage | "
    "perplexity | rounds | steps | s |",
    "|" + "---|" * 12,
  ]
  lines += [
    f"| {r['name']} | {r['num_codes']} | {r['num_codebooks']} | {r['bpp']:.3f} | "
    f"{r['bpp_entropy']:.3f} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['usage']:.2f} | "
    f"{r['perplexity']:.1f} | {r['rounds']} | {r['steps']} | {r['seconds']:.0f} |"
    for r in rows
  ]
  (workdir / "rate_distortion.md").write_text("\n".join(lines) + "\n")
  fig, axes = viz.pyplot().subplots(1, 2, figsize=(10, 3.8))
  for kind, marker in (("scalar", "o"), ("vq", "s")):
    rs = sorted([r for r in rows if r["quantizer"] == kind], key=lambda r: r["bpp"])
    for key, style in (("bpp", "-"), ("bpp_entropy", "--")) if rs else ():
      label = f"{kind}, {'log2 K' if key == 'bpp' else 'entropy'}"
      for ax, y in zip(axes, ("psnr", "mse")):
        ax.plot([r[key] for r in rs], [r[y] for r in rs], marker + style, label=label)
  axes[0].set(xlabel="bits per pixel", ylabel="PSNR (dB)", title="rate-distortion")
  axes[1].set(xlabel="bits per pixel", ylabel="MSE ([0, 1] pixels)", yscale="log")
  axes[0].legend(fontsize=8)
  viz.save_figure(fig, workdir / "rate_distortion.png")


def probe(config, workdir: Path, args) -> dict:
  """Which digits appear: a small classifier on the codes against the same on the pixels."""
  model, variables, config, clips = _restore(config, workdir, args)
  if (clips["train"]["labels"] < 0).any():
    raise ValueError(f"{config.data.source}: the probe needs digit labels (use generated clips)")
  p = config.probe
  tr = {k: v[: p.num_train] for k, v in clips["train"].items()}
  te = {k: v[: p.num_test] for k, v in clips["valid"].items()}
  codes = lambda video: map_batches(lambda v: predict(model, variables, v)[2], video, config.eval.batch_size)
  t0 = time.perf_counter()
  ctr = codes(tr["video"])
  result = {"encode_seconds_per_clip": (time.perf_counter() - t0) / len(tr["video"])}
  pixels = lambda v: jnp.asarray(v, jnp.float32) / 255.0
  for kind, xtr, xte in (("codes", ctr, codes(te["video"])), ("pixels", tr["video"], te["video"])):
    res = train_probe(
      ClipProbe(width=p.width, downsample=3 if kind == "pixels" else 0),
      xtr,
      multi_hot(tr["labels"], 10),
      xte,
      multi_hot(te["labels"], 10),
      steps=p.steps,
      batch_size=p.batch_size,
      lr=p.lr,
      seed=config.train.seed,
      prepare=pixels if kind == "pixels" else None,
    )
    res["seconds_per_clip"] = res.pop("seconds_per_example")
    result[kind] = res
  workdir.mkdir(parents=True, exist_ok=True)
  write_json(workdir / "probe.json", result)
  return result


def main(argv=None):
  """The command line: `train`, `eval`, `sweep`, `probe` (see the module docstring)."""
  return cli.run(
    get_config,
    modes={"train": train, "eval": eval_mode, "sweep": sweep, "probe": probe},
    presets={"demo": demo, "smoke": smoke, "paper": paper},
    default_preset="demo",
    flags={"checkpoint": "a workdir or a step folder (eval, probe)"},
    doc=__doc__,
    argv=argv,
    real_data_key="data.digits",
  )


if __name__ == "__main__":
  main()
