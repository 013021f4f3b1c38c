"""Quixel conv VAE (abdullahchand/VariationalAutoEncoder, 2022): training and the feature study.

`aejax.models.vae.ConvVAE` (3,297,571 parameters, 512-d latent, 3x254x254 inputs) trained with the
original's objective (KL + BCE summed over batch and pixels, Adam 1e-3, batch 16) on an image folder
(random resized crops to 254, scale 0.2-1) or, without `--config.data.root`, on embedded synthetic
textures. Every epoch validates (negative ELBO per image, nats and bits per dimension) and keeps
the best checkpoint in `WORKDIR/best`; `eval` scores a checkpoint on the validation split;
`similarity` compares two crops of one image with crops of two images (never the same folder) by
the cosine similarity of the latent means (AUROC, retrieval, histograms, grids in
`WORKDIR/similarity/`).

  python -m experiments.vae train --workdir /tmp/vae            # demo: 256 textures, 16 epochs
  python -m experiments.vae train --preset paper --config.data.root DIR   # image folder or prepared set
  python -m experiments.vae eval --checkpoint /tmp/vae/best
  python -m experiments.vae similarity --checkpoint /tmp/vae/best --images DIR

Expected: `smoke` about a minute on CPU; the demo (192 steps of batch 16) is GPU work; the original
reports ~110k nats per 254x254 image after 16 epochs. Measured runs: `docs/results/vae.md`.
Deviations: the original never validated; `--config.similarity.sample` uses a sampled z as it did.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import cli
from aejax.data import roots, synthetic
from aejax.data.transforms import RandomResizedCrop, Resize
from aejax.io import check_output, write_json
from aejax.models.vae import ConvVAE
from aejax.train import (
  CheckpointIO,
  apply_model,
  fit_epochs,
  init_state,
  make_optimizer,
  split_rngs,
  train_section,
)
from aejax.train.restore import restore_for_eval
from aejax.vae import elbo
from aejax.vae import similarity as sim
from aejax.vae.evaluation import make_picture_fn, preview_images, validation_fn
from aejax.viz import save_image

RESTORE_KEYS = ("model", "data.image_size")  # what a checkpoint's config.json decides


def get_config() -> ml_collections.ConfigDict:
  """The faithful configuration on embedded synthetic textures (the `demo` preset)."""
  c = ml_collections.ConfigDict()
  c.data = dict(root=None, image_size=254, num_synthetic=256, synthetic_size=320, valid_fraction=0.2)
  c.data.update(split_seed=42, crop_scale=(0.2, 1.0), batch_size=16, num_epochs=16, worker_count=0)
  c.model = dict(latent_dim=512, features=(32, 64, 64, 128, 128, 256), bn_momentum=0.9)
  c.loss = dict(reconstruction="bce", beta=1.0, reduction="sum")
  c.optim = dict(name="adam", lr=1e-3)
  # num_steps / eval_every None: data.num_epochs epochs, validation every epoch.
  c.train = train_section(log_every=10, checkpoint_every=500, keep_checkpoints=2)
  c.eval = dict(batch_size=16, num_samples=16, num_recon=8, interp_steps=8)
  c.similarity = dict(pairs_per_image=4, crop_scale=(0.2, 1.0), sample=False, seed=0, num_synthetic=32)
  c.similarity.update(retrieval_queries=8, retrieval_k=5, bins=30)
  return c


def demo() -> ml_collections.ConfigDict:
  """The default: the faithful model on 256 embedded textures, 16 epochs (GPU work)."""
  return get_config()


def paper() -> ml_collections.ConfigDict:
  """The original's run: 16 epochs of an image folder (set `--config.data.root`)."""
  c = get_config()
  c.data.worker_count = 4
  return c


def smoke() -> ml_collections.ConfigDict:
  """A tiny model on a dozen 40x40 textures: 4 steps, 2 validations, seconds on CPU."""
  c = get_config()
  c.data.update(image_size=30, num_synthetic=12, synthetic_size=40, batch_size=4, num_epochs=None)
  c.model.update(latent_dim=8, features=(4, 8, 8))
  c.train.update(num_steps=4, log_every=2, eval_every=2, checkpoint_every=2)
  c.eval.update(batch_size=4, num_samples=4, num_recon=2, interp_steps=4)
  c.similarity.update(pairs_per_image=2, num_synthetic=6, retrieval_queries=3, retrieval_k=2, bins=10)
  return c


# ------------------------------------------------------------------------------------ pieces


def build_model(config) -> ConvVAE:
  """The ConvVAE of `config.model` at `config.data.image_size`."""
  s, m = config.data.image_size, dict(config.model)
  return ConvVAE(image_size=(s, s), **{**m, "features": tuple(m["features"])})


def example_image(config) -> jax.Array:
  """An example input [1, S, S, 3] for `model.init`."""
  return jnp.zeros((1, config.data.image_size, config.data.image_size, 3), jnp.float32)


def load_model(config, checkpoint=None):
  """`(model, variables, config)`: a checkpoint (its config.json decides the model) or, without
  one, the untrained model at `config.train.seed`."""
  if checkpoint:
    return restore_for_eval(
      checkpoint, config, build_model=build_model, example=example_image, keys=RESTORE_KEYS
    )
  model = build_model(config)
  rngs = split_rngs(jax.random.key(config.train.seed))
  return model, jax.jit(lambda: model.init(rngs, example_image(config), train=False))(), config


def make_loss_fn(reconstruction: str = "bce", beta: float = 1.0, reduction: str = "sum"):
  """The engine's `loss_fn`: batch `image` uint8 [B, H, W, 3] -> (loss, metrics, new state)."""

  def loss_fn(model, variables, batch, rngs, train):
    x = jnp.asarray(batch["image"], jnp.float32) / 255.0  # [B, H, W, 3]
    (x_hat, aux), new_state = apply_model(model, variables, x, rngs=rngs, train=train)
    loss, metrics = elbo.vae_loss(
      x,
      x_hat,
      aux["logits"],
      aux["mu"],
      aux["logvar"],
      reconstruction=reconstruction,
      beta=beta,
      reduction=reduction,
    )
    return loss, metrics, new_state

  return loss_fn


def image_sources(data):
  """(train, valid) sources: `data.root` (an image folder, seeded split, or a prepared
  `aejax_images` set, see `aejax.data.roots.images`) or embedded textures."""
  n, size, seed = data.num_synthetic, data.synthetic_size, data.split_seed
  name = f"textures-{{split}}-{n}-{size}-{seed}"
  return roots.image_splits(data, lambda: (synthetic.textured_images(n, size=size, seed=seed), name))


def pictures_of(model, ev):
  """`make_picture_fn` with the sizes of the `eval` config section."""
  return make_picture_fn(
    model, num_samples=ev.num_samples, num_recon=ev.num_recon, interp_steps=ev.interp_steps
  )


# ------------------------------------------------------------------------------------ modes


def train(config, workdir: Path, args) -> dict:
  """Train the VAE; validation every epoch, best checkpoint (validation ELBO) in WORKDIR/best."""
  data = config.data
  model = build_model(config)
  train_src, valid_src = image_sources(data)
  if len(valid_src) == 0:
    raise ValueError(f"data.valid_fraction={data.valid_fraction}: the validation split is empty")
  tx = make_optimizer(**config.optim)
  validate = validation_fn(model, data.image_size, config.eval.batch_size, valid_src)
  best_path = workdir / "best.json"
  best = json.loads(best_path.read_text()) if best_path.exists() else {"neg_elbo": float("inf")}
  valid_images = preview_images(valid_src, data.image_size)

  def eval_fn(state, step):
    metrics = validate(state.variables)
    if metrics["neg_elbo"] < best["neg_elbo"]:
      io = CheckpointIO(workdir / "best", max_to_keep=1)
      io.save(step, state)
      io.close()
      best.clear()
      best.update(step=int(step), **metrics)
      write_json(best_path, best)
    return metrics

  pictures = pictures_of(model, config.eval)

  def artefact_fn(state, step, writer):
    writer.images(step, pictures(state.variables, valid_images, seed=step))

  state = fit_epochs(
    train_src,
    transforms=[RandomResizedCrop(data.image_size, scale=tuple(data.crop_scale))],
    eval_every_epoch=True,
    config=config,
    workdir=workdir,
    model=model,
    loss_fn=make_loss_fn(**config.loss),
    tx=tx,
    init_fn=lambda rng: init_state(model, tx, rng, example_image(config)),
    eval_fn=eval_fn,
    artefact_fn=artefact_fn,
  )
  return {"step": int(state.step), "best": dict(best), "workdir": str(workdir)}


def evaluate(config, workdir: Path, args) -> dict:
  """Validation metrics (negative ELBO, nats and bits per dimension) of a checkpoint."""
  if not args.checkpoint:
    raise ValueError("eval needs --checkpoint (a workdir, its best/ folder or a step folder)")
  out = check_output(workdir / "eval_results.json", overwrite=args.overwrite)
  model, variables, config = load_model(config, args.checkpoint)
  _, valid_src = image_sources(config.data)
  result = validation_fn(model, config.data.image_size, config.eval.batch_size, valid_src)(variables)
  workdir.mkdir(parents=True, exist_ok=True)
  write_json(out, result)
  return result


def similarity(config, workdir: Path, args) -> dict:
  """Same-image vs different-image crop similarity of latent features, plus grids."""
  out = check_output(workdir / "similarity", inputs=[args.images], overwrite=args.overwrite)
  model, variables, config = load_model(config, args.checkpoint)
  sc, size = config.similarity, config.data.image_size
  if args.images:
    images, groups, names = sim.load_image_groups(args.images)
  else:  # unseen textures: another seed than the training set's
    images = list(
      synthetic.textured_images(
        sc.num_synthetic, size=config.data.synthetic_size, seed=config.data.split_seed + 1000
      )
    )
    groups, names = np.arange(len(images)), [f"texture{i}" for i in range(len(images))]
  encode = jax.jit(
    lambda v, x, key: model.apply(v, x, method=ConvVAE.features_of, sample=sc.sample, rngs={"sample": key})
  )
  keys = iter(jax.random.split(jax.random.key(sc.seed), 100_000))
  features = lambda x: encode(variables, x, next(keys))  # a fresh z per batch when sampling
  what = "sampled z" if sc.sample else "latent mean"
  ckpt = str(args.checkpoint) if args.checkpoint else "untrained (random init)"
  summary = sim.run_study(
    features,
    images,
    groups,
    names,
    size=size,
    out_dir=out,
    pairs_per_image=sc.pairs_per_image,
    scale=tuple(sc.crop_scale),
    seed=sc.seed,
    bins=sc.bins,
    queries=sc.retrieval_queries,
    k=sc.retrieval_k,
    batch_size=config.eval.batch_size,
    label=f"VAE {what}, {ckpt}",
  )
  resized = np.stack([Resize((size, size)).map({"image": im})["image"] for im in images[:8]])
  for name, im in pictures_of(model, config.eval)(variables, resized, sc.seed).items():
    save_image(out / f"{name}.png", im)
  summary.update(
    checkpoint=ckpt, features=what, images=str(args.images or "embedded textures"), outputs=str(out)
  )
  write_json(out / "summary.json", summary)
  return summary


PRESETS = {"demo": demo, "smoke": smoke, "paper": paper}
MODES = {"train": train, "eval": evaluate, "similarity": similarity}
FLAGS = {
  "checkpoint": "a workdir, its best/ folder or a step folder",
  "images": "folder of images for the similarity study (default: textures)",
}


main = cli.command(get_config, MODES, PRESETS, FLAGS, __doc__)

if __name__ == "__main__":
  main()
