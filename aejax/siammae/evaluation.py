"""SiamMAE's evaluation: DAVIS label propagation on the encoder's features, pretrained against the
same encoder at random initialisation, protocol presets, and reconstruction grids."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import labelprop
from aejax.data import synthetic
from aejax.models.siammae import SiamMAE
from aejax.models.vit import vit_variant
from aejax.viz import make_grid


def eval_sequences(ev, seed: int = 1) -> list[dict]:
  """The synthetic DAVIS-like evaluation set of the `eval` config section."""
  return synthetic.davis_like(ev.num_sequences, ev.num_frames, tuple(ev.seq_size), seed=seed)


def labelprop_scores(model, params, davis, out_dir, ev, log=print, overlay: bool = True) -> dict:
  """DAVIS J/F of label propagation on the encoder features of `model` (a SiamMAE or a ViT).

  Features are extracted in float32 whatever the training dtype (`model.dtype`).
  """
  model = model.clone(dtype=jnp.float32)
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x, method=type(model).features))
  patch = vit_variant(model.encoder)["patch_size"] if isinstance(model, SiamMAE) else model.patch_size
  return labelprop.propagate_davis(
    lambda x: apply(params, x),
    davis,
    out_dir,
    frames_per_call=ev.batch_size,
    patch=patch,
    overlay_sequence=(ev.overlay_sequence or None) if overlay else None,
    log=log,
    **labelprop.protocol_of(ev),
  )


def with_protocol(config, name: str | None, base_eval) -> ml_collections.ConfigDict:
  """`config` with the `eval` settings of protocol `name` (`labelprop.PROTOCOLS`), except those
  set on the command line (values that differ from `base_eval`, the preset's `eval`); None changes
  nothing."""
  if name is None:
    return config
  if name not in labelprop.PROTOCOLS:
    raise ValueError(f"--protocol {name!r}: use one of {', '.join(labelprop.PROTOCOLS)}")
  with config.eval.ignore_type():
    for k, v in labelprop.PROTOCOLS[name].items():
      if config.eval[k] == base_eval[k]:
        config.eval[k] = v
  return config


def reconstruction_grids(model, config):
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
    writer.images(step, {"reconstruction": grid})

  return fn


def compare_to_random(model, params, config, out_dir: Path, davis=None) -> dict:
  """J&F of `params` and of the same encoder at random initialisation."""
  ev = config.eval
  davis = davis if davis is not None else eval_sequences(ev)
  res = {
    f"pretrained/{k}": v
    for k, v in labelprop_scores(model, params, davis, out_dir / "pretrained", ev).items()
  }
  if ev.random_baseline:
    rand = model.init(
      {"params": jax.random.key(config.train.seed + 1), "mask": jax.random.key(0)},
      jnp.zeros((1, 2, config.data.image_size, config.data.image_size, 3), jnp.float32),
    )["params"]
    res.update(
      {
        f"random/{k}": v
        for k, v in labelprop_scores(model, rand, davis, out_dir / "random", ev, overlay=False).items()
      }
    )
  return res
