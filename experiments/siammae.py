"""SiamMAE (Gupta, Wu, Deng, Fei-Fei; "Siamese Masked Autoencoders", NeurIPS 2023): pre-training
and DAVIS-2017 label propagation.

  python -m experiments.siammae                       # demo: train, checkpoint, evaluate, plots
  python -m experiments.siammae train --preset paper --config.data.root K400_DIR
  python -m experiments.siammae eval --checkpoint WORKDIR --davis_dir DAVIS_ROOT
  python -m experiments.siammae eval --weights dino_deitsmall16_pretrain.pth --davis_dir DAVIS

Frame pairs (gap 4-48 frames at 30 fps, repeated sampling 2, one random resized crop (scale
[0.5, 1]) and flip per pair, identical on both frames) train `aejax.models.siammae.SiamMAE`
(ViT-S/16 encoder, cross-self decoder 512 x 8 x 16, 95 % of the future frame masked per sample,
per-patch normalised L2 on the hidden patches) with AdamW (0.9, 0.95), weight decay 0.05 off
biases / norms / tokens, lr = 1.5e-4 x batch / 256, linear warm-up then cosine. `eval` propagates
first-frame labels (`aejax.labelprop`: last block after the final norm, [CLS] dropped, top-k 7,
20 context frames, neighbourhood 20, temperature 0.7, 480x880) and scores with the official
DAVIS-2017 J/F (`aejax.davis`); the random-initialised encoder is scored as the baseline.

The demo (default) trains a small encoder on embedded synthetic videos (textured objects moving
over panning textured backgrounds), evaluates label propagation on a synthetic DAVIS-like set
(J&F of the pre-trained vs the same encoder at random init), and writes reconstruction grids
(past, masked future, prediction, target) to `WORKDIR/artefacts/` and TensorBoard and overlays
(PNG + MP4) of one sequence (`WORKDIR/labelprop/pretrained/overlays/`); `results.json` holds both
scores.

Measured (CPU, 2-core machine, 2026-11-28). J&F-Mean of label propagation (top-k 7, context 20,
square radius 8, temperature 0.7, 16x24 grid at 128x192), pretrained vs the same encoder at random
init, on three synthetic sets (6 sequences x 24 frames each): A is the demo's own set (seed 1),
B another at 120x200 (seed 7), C another with 3x faster motion.

| demo training | A | B | C |
|---|---|---|---|
| random init | 0.716 | 0.603 | 0.699 |
| 400 steps (the earlier default) | 0.728 | - | 0.728 |
| 400 steps, mask 0.75 | 0.725 | 0.635 | 0.722 |
| 400 steps, decoder depth 4 | 0.720 | 0.627 | - |
| **800 steps (default)** | **0.758** | **0.679** | **0.766** |

The loss plateaus at ~0.59 around step 150-400 (the model copies the past frame) and only then
drops again (0.53 at step 700): the correspondence phase, where the gain over random init grows
from ~1 to 4-8 J&F points. Raw 8x8 pixel patches score 0.698 on A, ground-truth one-hot features
~0.8-0.9. At 2.35 steps/s on an idle 2-core CPU the default demo (800 steps, evaluations at 400
and 800, the random baseline, plots) takes about 7 minutes. Without interpolating the sin-cos
positions onto the 8x8 training grid the pretrained encoder scored below random, and with a 1e-3
lr or 4x faster training motion it fell to 0.68-0.70 (400-step runs).

Deviations from the paper, all deliberate: the demo preset (ViT 128 wide x 4 deep x 4 heads at
64x64 with 8x8 patches, so 95 % masking keeps 3 of 64 tokens; a 2-block 128-wide decoder; 800
steps of 32 pairs; lr 3e-4 set directly instead of 1.5e-4 x 32/256; synthetic motion at a quarter
speed so that 4-48 frame gaps stay trackable) only fits the CPU budget; `paper` is the faithful
recipe. At a resolution other than the training one the fixed sin-cos positions are interpolated
onto the training grid (as DINO resizes learned tables), a choice the paper does not state.
Against the public replication (spec §C) we fix its bugs
(see `aejax/models/siammae.py`), keep 9 of 196 tokens (MAE's int(L(1-r))), draw a new f1 for each
repeated pair (the replication shares it) and use the paper's per-patch normalised targets.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import cli, labelprop
from aejax.data import synthetic
from aejax.data.pipeline import make_loader
from aejax.data.sources import VideoPairSource
from aejax.data.transforms import RandomFlip, RandomResizedCrop
from aejax.data.video import VideoInfo
from aejax.models.siammae import SiamMAE
from aejax.models.vit import ViT, load_pretrained
from aejax.train import apply_model, fit, init_state, make_optimizer, restore_state
from aejax.viz import make_grid, save_image


def get_config() -> ml_collections.ConfigDict:
  """The faithful recipe (`paper`): ViT-S/16, batch 2048 pairs, 2000 effective epochs of K400."""
  c = ml_collections.ConfigDict()
  c.data = dict(root="", image_size=224, gap=(4, 48), reference_fps=30.0, repeats=2,
                crop_scale=(0.5, 1.0), batch_size=2048, worker_count=16, seed=0,
                num_videos=0, video_frames=0, video_size=0, video_speed=1.0)  # last 4: synthetic
  c.model = dict(encoder="S/16", encoder_width=0, encoder_depth=0, encoder_heads=0,
                 mask_ratio=0.95, decoder="cross_self", decoder_width=512, decoder_depth=8,
                 decoder_heads=16, mlp_ratio=4.0, norm_pix_loss=True, past_pos_embed=True,
                 token_multiple=8, attention=None, dtype="bfloat16")
  c.scaling = dict(base_lr=1.5e-4, reference_batch=256)  # lr = base_lr * batch / 256
  c.optim = dict(name="adamw", lr=0.0, b1=0.9, b2=0.95, weight_decay=0.05,
                 schedule="warmup_cosine", warmup_steps=4_700, total_steps=0)  # 0: derived
  c.train = dict(num_steps=235_000, seed=0, log_every=100, eval_every=0, checkpoint_every=5000,
                 keep_checkpoints=3, parallel="jit", ema_decay=None)
  c.eval = dict(size=(480, 880), context=20, topk=7, radius=20, temperature=0.7,
                neighbourhood="square", num_sequences=0, num_frames=0, seq_size=(0, 0),
                overlay_sequence="", random_baseline=True, num_grid=6, batch_size=8)
  return c


def paper() -> ml_collections.ConfigDict:
  return get_config()


def demo() -> ml_collections.ConfigDict:
  """Small ViT on embedded synthetic videos; minutes on 2 CPU cores, seconds on a GPU."""
  c = get_config()
  c.data.update(image_size=64, batch_size=32, worker_count=0, num_videos=64, video_frames=64,
                video_size=80, video_speed=0.25)
  c.model.update(encoder="S/8", encoder_width=128, encoder_depth=4, encoder_heads=4,
                 decoder_width=128, decoder_depth=2, decoder_heads=4, dtype="float32")
  c.optim.update(lr=3e-4, warmup_steps=40)
  c.train.update(num_steps=800, log_every=50, checkpoint_every=400, eval_every=400)
  c.eval.update(size=None, radius=8, num_sequences=6, num_frames=24, seq_size=(128, 192),
                overlay_sequence="synth-000")
  return c


def smoke() -> ml_collections.ConfigDict:
  """Tiny everything: a few steps, one evaluation; seconds on CPU (tests)."""
  c = demo()
  c.data.update(image_size=32, batch_size=4, num_videos=3, video_frames=12, video_size=36,
                gap=(2, 6))
  c.model.update(encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32,
                 decoder_depth=1, decoder_heads=2, mask_ratio=0.75)
  c.train.update(num_steps=2, log_every=1, checkpoint_every=2)
  c.eval.update(num_sequences=2, num_frames=5, seq_size=(32, 48), radius=2, num_grid=2,
                overlay_sequence="")
  return c


# ------------------------------------------------------------------------------------ pieces


class ArrayVideos:
  """In-memory videos [N, T, H, W, 3] uint8 as a collection for `VideoPairSource` (30 fps)."""

  def __init__(self, videos: np.ndarray, name: str):
    self.videos, self.name, self.root = videos, name, name

  def __len__(self) -> int:
    return len(self.videos)

  def info(self, i: int) -> VideoInfo:
    _, t, h, w, _ = self.videos.shape
    return VideoInfo(path=f"{self.name}/{i}", fps=30.0, num_frames=t, height=h, width=w)

  def read(self, i: int, indices) -> np.ndarray:
    return self.videos[i][np.asarray(indices)]

  def __repr__(self) -> str:
    return f"ArrayVideos({self.name!r}, shape={list(self.videos.shape)})"


def synthetic_videos(data) -> ArrayVideos:
  """Embedded training videos (seeds disjoint from the evaluation set's)."""
  vids = np.stack([synthetic.shapes_video(data.video_frames, data.video_size, 3,
                                          seed=100_000 + i, speed=data.video_speed)["video"]
                   for i in range(data.num_videos)])
  return ArrayVideos(vids, f"synthetic-{data.num_videos}x{data.video_frames}x{data.video_size}")


def train_loader(data):
  videos = data.root or synthetic_videos(data)
  source = VideoPairSource(videos, gap=tuple(data.gap), reference_fps=data.reference_fps,
                           repeats=data.repeats, seed=data.seed)
  if data.batch_size % data.repeats:
    raise ValueError(f"data.batch_size {data.batch_size} (pairs) must be a multiple of "
                     f"data.repeats {data.repeats}")
  return make_loader(source, batch_size=data.batch_size // data.repeats, seed=data.seed,
                     transforms=[RandomResizedCrop(data.image_size, scale=tuple(data.crop_scale)),
                                 RandomFlip()], worker_count=data.worker_count)


def build_model(config) -> SiamMAE:
  return SiamMAE(**{**config.model, "dtype": jnp.dtype(config.model.dtype)},
                 img_size=config.data.image_size)


def pairs_of(batch) -> jax.Array:
  """`frames` uint8 [B, (R,) 2, H, W, 3] -> float [B*R, 2, H, W, 3] in [0, 1]."""
  x = jnp.asarray(batch["frames"])
  return x.reshape(-1, *x.shape[-4:]).astype(jnp.float32) / 255.0


def loss_fn(model, variables, batch, rngs, train):
  (_, aux), new_state = apply_model(model, variables, pairs_of(batch), rngs=rngs, train=train)
  return aux["loss"], {"loss": aux["loss"]}, new_state


def optimiser(config):
  o = dict(config.optim)
  if not o["lr"]:
    o["lr"] = config.scaling.base_lr * config.data.batch_size / config.scaling.reference_batch
  o["total_steps"] = o["total_steps"] or config.train.num_steps
  return make_optimizer(**o), o["lr"]


def example_pair(config):
  s = config.data.image_size
  return jnp.zeros((1, 2, s, s, 3), jnp.float32)


def eval_sequences(ev, seed: int = 1):
  return synthetic.davis_like(ev.num_sequences, ev.num_frames, tuple(ev.seq_size), seed=seed)


def feature_fn(model, params, batch_size: int):
  """frames [T, H, W, 3] float in [0, 1] -> encoder features [T, h, w, D] (jitted, chunked)."""
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x, method=type(model).features))

  def fn(x):
    return np.concatenate([np.asarray(apply(params, x[i:i + batch_size]), np.float32)
                           for i in range(0, len(x), batch_size)])
  return fn


def labelprop_scores(model, params, davis, out_dir, ev, log=print) -> dict:
  return labelprop.propagate_davis(
      feature_fn(model, params, ev.batch_size), davis, out_dir,
      size=None if ev.size is None else tuple(ev.size), patch=_patch(model),
      context=ev.context, topk=ev.topk, radius=ev.radius, temperature=ev.temperature,
      neighbourhood=ev.neighbourhood, overlay_sequence=ev.overlay_sequence or None, log=log)


def _patch(model) -> int:
  return int(model.encoder.split("/")[1]) if isinstance(model, SiamMAE) else model.patch_size


def grid_fn(model, config):
  """artefact_fn: reconstruction grids (past | masked future | prediction | target) per row."""
  ev = config.eval
  seqs = synthetic.davis_like(ev.num_grid, 12, config.data.image_size, seed=2)
  frames = jnp.asarray(np.stack([s["video"][[0, 8]] for s in seqs]), jnp.float32) / 255.0

  @jax.jit
  def images(params):
    pred, aux = model.apply({"params": params}, frames, rngs={"mask": jax.random.key(0)})
    return model.apply({"params": params}, frames, pred, aux["mask"], method=SiamMAE.reconstruct)

  def fn(state, step, writer):
    out = jax.device_get(images(state.params))
    cols = ["past", "masked_future", "prediction", "target"]
    grid = make_grid([out[c][i] for i in range(len(frames)) for c in cols], ncol=4)
    save_image(writer.artefact_path(f"reconstruction_{step:07d}.png"), grid)
    writer.images(step, {"reconstruction": grid})
  return fn


# -------------------------------------------------------------------------------------- modes


def train(config, workdir: Path, args) -> dict:
  model = build_model(config)
  tx, lr = optimiser(config)
  synthetic_eval = bool(config.eval.num_sequences) and not config.data.root
  eval_fn = None
  if synthetic_eval and config.train.eval_every:  # the J&F curve during training
    seqs = eval_sequences(config.eval)
    quiet = ml_collections.ConfigDict(dict(config.eval))
    quiet.overlay_sequence = ""
    eval_fn = lambda state, step: labelprop_scores(  # noqa: E731
        model, state.params, seqs, workdir / "labelprop" / f"step_{step}", quiet, log=None)
  t0 = time.perf_counter()
  state = fit(workdir=workdir, config=config, model=model, loss_fn=loss_fn, tx=tx,
              train_iter=train_loader(config.data),
              init_fn=lambda r: init_state(model, tx, r, example_pair(config)),
              eval_fn=eval_fn, artefact_fn=grid_fn(model, config), **config.train)
  train_s = time.perf_counter() - t0
  if int(state.step) < config.train.num_steps:  # stopped by a signal: checkpointed, resume later
    return {"stopped_at_step": int(state.step)}
  result = {"lr": lr, "train_seconds": train_s}
  if synthetic_eval:
    result.update(_compare(model, state.params, config, workdir / "labelprop"))
  (workdir / "results.json").write_text(json.dumps(result, indent=2))
  return result


def _compare(model, params, config, out_dir: Path, davis=None) -> dict:
  """J&F of `params` and of the same encoder at random initialisation."""
  ev = config.eval
  davis = davis if davis is not None else eval_sequences(ev)
  res = {f"pretrained/{k}": v for k, v in labelprop_scores(model, params, davis,
                                                           out_dir / "pretrained", ev).items()}
  if ev.random_baseline:
    rand = model.init({"params": jax.random.key(config.train.seed + 1),
                       "mask": jax.random.key(0)}, example_pair(config))["params"]
    quiet = ml_collections.ConfigDict(dict(ev))
    quiet.overlay_sequence = ""
    res.update({f"random/{k}": v for k, v in labelprop_scores(model, rand, davis,
                                                              out_dir / "random", quiet).items()})
  return res


def evaluate(config, workdir: Path, args) -> dict:
  """Label propagation of a checkpoint (or `--weights`, a timm ViT) on DAVIS or the synthetic set."""
  davis = args.davis_dir or None
  if davis is not None and not Path(davis).is_dir():
    raise FileNotFoundError(f"{davis}: no such DAVIS folder")
  if args.weights:
    model = ViT.from_name(config.model.encoder, pos_embed="learned")
    params = model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
    params = load_pretrained(params, args.weights)
    return {f"pretrained/{k}": v for k, v in labelprop_scores(
        model, params, davis or eval_sequences(config.eval), workdir / "labelprop_weights",
        config.eval).items()}
  if not args.checkpoint:
    raise ValueError("eval needs --checkpoint WORKDIR (or --weights FILE)")
  model = build_model(config)
  tx, _ = optimiser(config)
  abstract = jax.eval_shape(lambda: init_state(model, tx, jax.random.key(0),
                                               example_pair(config)))
  state = restore_state(args.checkpoint, abstract)
  res = _compare(model, state.params, config, workdir / "labelprop_eval", davis)
  (workdir / "eval_results.json").write_text(json.dumps(res, indent=2))
  return res


def main(argv=None):
  return cli.run(get_config, modes={"train": train, "eval": evaluate},
                 presets={"demo": demo, "smoke": smoke, "paper": paper}, default_preset="demo",
                 flags={"checkpoint": "a workdir or a step folder",
                        "davis_dir": "a DAVIS-2017 root (default: the synthetic DAVIS-like set)",
                        "weights": "a timm/DINO ViT state dict (.pth, .safetensors, .npz)"},
                 doc=__doc__, argv=argv)


if __name__ == "__main__":
  main()
