"""SiamMAE (Gupta, Wu, Deng, Fei-Fei; "Siamese Masked Autoencoders", NeurIPS 2023): pre-training
on frame pairs and DAVIS-2017 label propagation.

  python -m experiments.siammae                       # demo: train, checkpoint, evaluate, plots
  python -m aejax.data.prepare videos --src K400/train --out K400_PREP   # decode once (optional)
  python -m experiments.siammae train --preset paper --config.data.root K400_PREP   # or K400/train
  python -m experiments.siammae eval --checkpoint WORKDIR --davis_dir DAVIS [--protocol dino]
  python -m experiments.siammae eval --weights dino_deitsmall16_pretrain.pth --davis_dir DAVIS --protocol dino

`paper`: ViT-S/16 encoder and a 512 x 8 x 16 cross-self decoder (`aejax.models.siammae`), 95 % of
the future frame masked, gaps of 4-48 frames at 30 fps, repeated sampling 2, AdamW lr 1.5e-4 x
batch / 256, 2000 effective epochs with 40 of warm-up (steps derived from the data size and batch,
printed at start; K400 at batch 2048: 234,375). `eval --protocol siammae` propagates labels with the
paper's settings (top-k 7, 20 context frames, radius 20, temperature 0.7, 480x880), `--protocol
dino` with DINO's script's (`aejax.labelprop.PROTOCOLS`), features in float32; scores: official DAVIS
J/F, next to the same encoder at random init. The demo trains a small ViT on embedded synthetic
videos: J&F 0.758 vs 0.716 at random init, ~7 min on a 2-core CPU (`docs/results/siammae.md`).
Deviations: the demo's sizes fit a CPU; sin-cos positions are interpolated onto the training grid
at other sizes; the public replication's bugs are fixed (see `aejax/models/siammae.py`).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections

from aejax import cli, labelprop
from aejax.data import roots
from aejax.io import check_output, write_json
from aejax.models.siammae import SiamMAE
from aejax.models.vit import ViT, load_pretrained
from aejax.siammae import evaluation
from aejax.siammae.evaluation import compare_to_random, eval_sequences, labelprop_scores, reconstruction_grids
from aejax.siammae.recipe import SCHEDULE_KEYS, optimiser, schedule, train_loader, train_source
from aejax.train import apply_model, fit, init_state, train_section
from aejax.train.restore import restore_for_eval

RESTORE_KEYS = ("model", "data.image_size")  # what a checkpoint's config.json decides


def get_config() -> ml_collections.ConfigDict:
  """The faithful recipe (`paper`): ViT-S/16, batch 2048 pairs, 2000 effective epochs of K400."""
  c = ml_collections.ConfigDict()
  c.data = dict(root=None, image_size=224, gap=(4, 48), reference_fps=30.0, repeats=2, crop_scale=(0.5, 1.0))
  c.data.update(batch_size=2048, worker_count=16, seed=0)
  # seek_window: raw files' first frames within this many frames after a key frame (faster, biased)
  c.data.seek_window = None
  c.data.update(num_videos=None, video_frames=None, video_size=None, video_speed=1.0)  # synthetic
  # encoder_width/depth/heads None: the variant's.
  c.model = dict(encoder="S/16", encoder_width=None, encoder_depth=None, encoder_heads=None, mask_ratio=0.95)
  c.model.update(decoder="cross_self", decoder_width=512, decoder_depth=8, decoder_heads=16, mlp_ratio=4.0)
  c.model.update(norm_pix_loss=True, past_pos_embed=True, token_multiple=8, attention=None, dtype="bfloat16")
  c.scaling = dict(base_lr=1.5e-4, reference_batch=256)  # optim.lr None: base_lr * batch / 256
  # warmup_steps None: from train.warmup_epochs; total_steps None: num_steps.
  c.optim = dict(name="adamw", lr=None, b1=0.9, b2=0.95, weight_decay=0.05, schedule="warmup_cosine")
  c.optim.update(warmup_steps=None, total_steps=None)
  # num_steps None: from `epochs` effective epochs of the data (`schedule`; K400 at batch 2048:
  # 234,375 steps, 4,688 of warm-up).
  c.train = train_section(epochs=2000, warmup_epochs=40, log_every=100, checkpoint_every=5000)
  # Label propagation: the paper's settings (`labelprop.PROTOCOLS["siammae"]`); `eval --protocol`
  # swaps in a protocol's.
  c.eval = dict(**labelprop.PROTOCOLS["siammae"], num_sequences=None, num_frames=None, seq_size=None)
  c.eval.update(overlay_sequence=None, random_baseline=True, num_grid=6, batch_size=8)
  return c


def paper() -> ml_collections.ConfigDict:
  """The paper's recipe (set `--config.data.root` to Kinetics-400 videos)."""
  return get_config()


def demo() -> ml_collections.ConfigDict:
  """Small ViT on embedded synthetic videos; minutes on 2 CPU cores, seconds on a GPU."""
  c = get_config()
  c.data.update(image_size=64, batch_size=32, worker_count=0, num_videos=64, video_frames=64, video_size=80)
  c.data.video_speed = 0.25
  c.model.encoder = "mini/8"  # a 128-wide, 4-deep, 4-head ViT with 8x8 patches
  c.model.update(decoder_width=128, decoder_depth=2, decoder_heads=4, dtype="float32")
  c.optim.update(lr=3e-4, warmup_steps=40)
  c.train.update(num_steps=800, log_every=50, checkpoint_every=400, eval_every=400)
  c.eval.update(
    size=None, radius=8, num_sequences=6, num_frames=24, seq_size=(128, 192), overlay_sequence="synth-000"
  )
  return c


def smoke() -> ml_collections.ConfigDict:
  """Tiny everything: a few steps, one evaluation; seconds on CPU (tests)."""
  c = demo()
  c.data.update(image_size=32, batch_size=4, num_videos=3, video_frames=12, video_size=36, gap=(2, 6))
  c.model.update(encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1)
  c.model.update(decoder_heads=2, mask_ratio=0.75)
  c.train.update(num_steps=2, log_every=1, checkpoint_every=2)
  c.eval.update(num_sequences=2, num_frames=5, seq_size=(32, 48), radius=2, num_grid=2, overlay_sequence=None)
  return c


PRESETS = {"demo": demo, "smoke": smoke, "paper": paper}


# ------------------------------------------------------------------------------------ pieces


def with_protocol(config, name: str | None, preset: str | None = None) -> ml_collections.ConfigDict:
  """`evaluation.with_protocol` against the eval settings of `preset` (default `paper`)."""
  return evaluation.with_protocol(config, name, PRESETS.get(preset or "paper", paper)().eval)


def build_model(config) -> SiamMAE:
  """The SiamMAE of `config.model` trained at `config.data.image_size`."""
  return SiamMAE(**{**config.model, "dtype": jnp.dtype(config.model.dtype)}, img_size=config.data.image_size)


def pairs_of(batch) -> jax.Array:
  """`frames` uint8 [B, (R,) 2, H, W, 3] -> float [B*R, 2, H, W, 3] in [0, 1]."""
  x = jnp.asarray(batch["frames"])
  return x.reshape(-1, *x.shape[-4:]).astype(jnp.float32) / 255.0


def loss_fn(model, variables, batch, rngs, train):
  """The engine's `loss_fn`: the masked, per-patch normalised L2 of the model's `aux`."""
  (_, aux), new_state = apply_model(model, variables, pairs_of(batch), rngs=rngs, train=train)
  return aux["loss"], {"loss": aux["loss"]}, new_state


def example_pair(config) -> jax.Array:
  """An example input [1, 2, S, S, 3] for `model.init`."""
  s = config.data.image_size
  return jnp.zeros((1, 2, s, s, 3), jnp.float32)


# -------------------------------------------------------------------------------------- modes


def train(config, workdir: Path, args) -> dict:
  """Pre-train on frame pairs; the demo scores label propagation (pretrained vs random init)."""
  source = train_source(config.data)
  config = schedule(config, len(source))
  model = build_model(config)
  tx, lr = optimiser(config)
  synthetic_eval = bool(config.eval.num_sequences) and not config.data.root
  eval_fn = None
  if synthetic_eval and config.train.eval_every:  # the J&F curve during training
    seqs = eval_sequences(config.eval)
    eval_fn = lambda state, step: labelprop_scores(  # noqa: E731
      model, state.params, seqs, workdir / "labelprop" / f"step_{step}", config.eval, log=None, overlay=False
    )
  t0 = time.perf_counter()
  state = fit(
    workdir=workdir,
    config=config,
    model=model,
    loss_fn=loss_fn,
    tx=tx,
    train_iter=train_loader(config.data, source),
    init_fn=lambda r: init_state(model, tx, r, example_pair(config)),
    eval_fn=eval_fn,
    artefact_fn=reconstruction_grids(model, config),
    **{k: v for k, v in config.train.items() if k not in SCHEDULE_KEYS},
  )
  train_s = time.perf_counter() - t0
  if int(state.step) < config.train.num_steps:  # stopped by a signal: checkpointed, resume later
    return {"stopped_at_step": int(state.step)}
  result = {"lr": lr, "train_seconds": train_s}
  if synthetic_eval:
    result.update(compare_to_random(model, state.params, config, workdir / "labelprop"))
  write_json(workdir / "results.json", result)
  return result


def evaluate(config, workdir: Path, args) -> dict:
  """Label propagation of a checkpoint (or `--weights`, a timm ViT) on DAVIS or the synthetic set."""
  davis = args.davis_dir or None
  if davis is not None and not Path(davis).is_dir():
    raise FileNotFoundError(f"{davis}: no such DAVIS folder")
  if davis is not None:  # a DAVIS root or a prepared `aejax_davis` set
    davis = roots.davis_sequences(davis)
  protocol = getattr(args, "protocol", None)
  config = with_protocol(config, protocol, getattr(args, "preset", None))
  outs = ["labelprop_weights"] if args.weights else ["labelprop_eval", "eval_results.json"]
  for name in outs:  # before any work: a rerun does not replace them without --overwrite
    check_output(workdir / name, inputs=[args.davis_dir], overwrite=args.overwrite)
  if args.weights:
    model = ViT.from_name(config.model.encoder, pos_embed="learned")
    params = model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
    params = load_pretrained(params, args.weights)
    res = {
      f"pretrained/{k}": v
      for k, v in labelprop_scores(
        model,
        params,
        davis if davis is not None else eval_sequences(config.eval),
        workdir / "labelprop_weights",
        config.eval,
      ).items()
    }
    return {**res, "protocol": protocol or "preset"}
  if not args.checkpoint:
    raise ValueError("eval needs --checkpoint WORKDIR (or --weights FILE)")
  model, variables, config = restore_for_eval(
    args.checkpoint, config, build_model=build_model, example=example_pair, keys=RESTORE_KEYS
  )
  res = compare_to_random(model, variables["params"], config, workdir / "labelprop_eval", davis)
  res["protocol"] = protocol or "preset"
  write_json(workdir / "eval_results.json", res)
  return res


MODES = {"train": train, "eval": evaluate}
FLAGS = {
  "checkpoint": "a workdir or a step folder",
  "davis_dir": "a DAVIS-2017 root or a prepared aejax_davis set (default: the synthetic DAVIS-like set)",
  "weights": "a timm/DINO ViT state dict (.pth, .safetensors, .npz)",
  "protocol": "eval: label-propagation protocol, 'siammae' (the paper's "
  "appendix) or 'dino' (DINO's eval_video_segmentation.py); "
  "default: the preset's eval settings",
}


main = cli.command(get_config, MODES, PRESETS, FLAGS, __doc__)

if __name__ == "__main__":
  main()
