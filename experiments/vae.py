"""Quixel conv VAE (abdullahchand/VariationalAutoEncoder, 2022): training and the feature study.

A 3,297,571-parameter conv VAE (`aejax.models.vae.ConvVAE`, 512-d latent, 3x254x254 inputs) trained
with the original's objective (KL + BCE summed over batch and pixels, Adam 1e-3, batch 16) on an
image folder (random resized crops to 254, scale 0.2-1; the validation split is resized), validated
every epoch (negative ELBO per image, nats per dimension and bits per dimension) with the best
checkpoint kept in `WORKDIR/best` (the original never validated). Without `--config.data.root` it
trains on embedded synthetic textures, so every command runs on a fresh clone:

  python -m experiments.vae train --workdir /tmp/vae            # demo: 256 textures, 16 epochs
  python -m experiments.vae train --preset paper --config.data.root DIR   # class sub-folders or flat
  python -m experiments.vae similarity --checkpoint /tmp/vae/best --images DIR

`similarity` compares pairs of random crops of the same image with crops of different images
(never the same folder) by the cosine similarity of the latent means (`--config.similarity.sample`
uses a sampled z, as the original), and writes overlaid histograms, summary statistics (means,
separation AUROC, top-1 retrieval), a nearest-neighbour retrieval grid, a samples grid, a
reconstruction grid and a latent interpolation strip to `WORKDIR/similarity/`. Training also writes
the three grids to `WORKDIR/artefacts/` at every validation.

Expected: the smoke preset runs in about a minute on CPU. The demo (16 epochs of 205 textures, 192
steps of batch 16) is GPU work. On a shared 2-core CPU, 120 steps of the faithful model on 77
textures took 17 min (validation neg. ELBO 133.2k -> 130.5k nats per image; reconstructions still
grey); its latent means then separated two crops of one real photo from crops of two photos
(26 photos, 104 + 104 pairs) with AUROC 0.79 (sampled z: 0.74, cosine means 0.11 vs 0.01 as the
original's histograms; untrained model: 0.70). The original reports ~110k nats per 254x254 image
after 16 epochs (`specs/seeds_keyframe_oval_vae.md` §3).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import cli
from aejax.data import synthetic
from aejax.data.pipeline import make_loader
from aejax.data.sources import ArraySource, ImageFolderSource, split_indices
from aejax.data.transforms import RandomResizedCrop, Resize
from aejax.models.vae import ConvVAE
from aejax.train import CheckpointIO, apply_model, fit, init_state, make_optimizer, restore_state
from aejax.vae import elbo
from aejax.vae import similarity as sim
from aejax.viz import make_grid, save_image


def get_config() -> ml_collections.ConfigDict:
  """The faithful configuration on embedded synthetic textures (the `demo` preset)."""
  c = ml_collections.ConfigDict()
  c.data = dict(root="", image_size=254, num_synthetic=256, synthetic_size=320, valid_fraction=0.2,
                split_seed=42, crop_scale=(0.2, 1.0), batch_size=16, num_epochs=16, worker_count=0)
  c.model = dict(latent_dim=512, features=(32, 64, 64, 128, 128, 256), bn_momentum=0.9)
  c.loss = dict(reconstruction="bce", beta=1.0, reduction="sum")
  c.optim = dict(name="adam", lr=1e-3)
  # num_steps / eval_every 0: derived from data.num_epochs and the epoch length.
  c.train = dict(num_steps=0, seed=0, log_every=10, eval_every=0, checkpoint_every=500,
                 keep_checkpoints=2, parallel="jit", ema_decay=None)
  c.eval = dict(batch_size=16, num_samples=16, num_recon=8, interp_steps=8)
  c.similarity = dict(pairs_per_image=4, crop_scale=(0.2, 1.0), sample=False, seed=0,
                      num_synthetic=32, retrieval_queries=8, retrieval_k=5, bins=30)
  return c


def demo() -> ml_collections.ConfigDict:
  return get_config()


def paper() -> ml_collections.ConfigDict:
  """The original's run: 16 epochs of an image folder (set `--config.data.root`)."""
  c = get_config()
  c.data.worker_count = 4
  return c


def smoke() -> ml_collections.ConfigDict:
  """A tiny model on a dozen 40x40 textures: 4 steps, 2 validations, seconds on CPU."""
  c = get_config()
  c.data.update(image_size=30, num_synthetic=12, synthetic_size=40, batch_size=4, num_epochs=0)
  c.model.update(latent_dim=8, features=(4, 8, 8))
  c.train.update(num_steps=4, log_every=2, eval_every=2, checkpoint_every=2)
  c.eval.update(batch_size=4, num_samples=4, num_recon=2, interp_steps=4)
  c.similarity.update(pairs_per_image=2, num_synthetic=6, retrieval_queries=3, retrieval_k=2, bins=10)
  return c


# ------------------------------------------------------------------------------------ pieces


def build_model(config) -> ConvVAE:
  s, m = config.data.image_size, dict(config.model)
  return ConvVAE(image_size=(s, s), **{**m, "features": tuple(m["features"])})


def make_loss_fn(reconstruction: str = "bce", beta: float = 1.0, reduction: str = "sum"):
  """The engine's `loss_fn`: batch `image` uint8 [B, H, W, 3] -> (loss, metrics, new state)."""

  def loss_fn(model, variables, batch, rngs, train):
    x = jnp.asarray(batch["image"], jnp.float32) / 255.0  # [B, H, W, 3]
    (x_hat, aux), new_state = apply_model(model, variables, x, rngs=rngs, train=train)
    loss, metrics = elbo.vae_loss(x, x_hat, aux["logits"], aux["mu"], aux["logvar"],
                                  reconstruction=reconstruction, beta=beta, reduction=reduction)
    return loss, metrics, new_state

  return loss_fn


def image_sources(data):
  """(train, valid) sources: the folder `data.root` (seeded split) or embedded textures."""
  if data.root:
    mk = lambda split: ImageFolderSource(data.root, split=split, valid_fraction=data.valid_fraction,
                                         seed=data.split_seed)
    return mk("train"), mk("valid")
  images = synthetic.textured_images(data.num_synthetic, size=data.synthetic_size,
                                     seed=data.split_seed)
  mk = lambda split: ArraySource(
      {"image": images[split_indices(len(images), split, data.valid_fraction, data.split_seed)]},
      name=f"textures-{split}-{data.num_synthetic}-{data.synthetic_size}-{data.split_seed}")
  return mk("train"), mk("valid")


def preview_images(source, size: int, n: int = 8) -> np.ndarray:
  """The first `n` images of `source` resized to size x size (at least two, for interpolation)."""
  resize = Resize((size, size))
  images = np.stack([resize.map(source[i])["image"] for i in range(min(len(source), n))])
  return images if len(images) > 1 else np.concatenate([images, images[:, :, ::-1]])


def validation_fn(model, data, eval_cfg, valid_source):
  """`fn(variables) -> metrics` over the whole validation split (resized, one z sample each)."""

  @jax.jit
  def per_example(variables, images, key):
    x = images.astype(jnp.float32) / 255.0
    _, aux = model.apply(variables, x, train=False, rngs={"sample": key})
    return elbo.gaussian_kl(aux["mu"], aux["logvar"]), elbo.bernoulli_nll(aux["logits"], x)

  def run(variables) -> dict[str, float]:
    # Every process reads the whole split, so all agree on the best checkpoint.
    it = make_loader(valid_source, batch_size=eval_cfg.batch_size, shuffle=False, num_epochs=1,
                     drop_remainder=False, transforms=[Resize((data.image_size,) * 2)], shard=False)
    kls, bces = [], []
    for i, batch in enumerate(it):
      images = batch["image"]
      n = len(images)
      pad = eval_cfg.batch_size - n  # pad to one shape: one compilation
      images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)]) if pad else images
      kl, bce = jax.device_get(per_example(variables, images, jax.random.key(i)))
      kls.append(kl[:n])
      bces.append(bce[:n])
    kl, bce = np.concatenate(kls), np.concatenate(bces)
    dims = 3 * data.image_size**2
    neg_elbo = float(np.mean(kl + bce))
    return {"neg_elbo": neg_elbo, "kl": float(kl.mean()), "bce": float(bce.mean()),
            "nats_per_dim": neg_elbo / dims, "bits_per_dim": neg_elbo / (dims * math.log(2.0))}

  return run


def _read_json(path: Path, default):
  return json.loads(path.read_text()) if path.exists() else default


def make_picture_fn(model, eval_cfg):
  """`fn(variables, images uint8 [N, H, W, 3], seed) -> dict of grids`: `samples` (decoded
  z ~ N(0, I)), `reconstructions` (top: input, bottom: decoded mu) and `interpolation` (decoded mu of
  images[0] -> images[1], framed by the two inputs). One jitted computation."""

  @jax.jit
  def compute(variables, x, key):
    samples = model.apply(variables, eval_cfg.num_samples, method=ConvVAE.generate,
                          rngs={"sample": key})
    recon, aux = model.apply(variables, x, train=False, sample=False)
    t = jnp.linspace(0.0, 1.0, eval_cfg.interp_steps)[:, None]
    z = (1.0 - t) * aux["mu"][0] + t * aux["mu"][1]  # [steps, D]
    return samples, recon, model.apply(variables, z, method=ConvVAE.decode)

  def fn(variables, images, seed: int = 0) -> dict[str, np.ndarray]:
    x = np.asarray(images[:max(eval_cfg.num_recon, 2)], np.float32) / 255.0  # [N, H, W, 3]
    samples, recon, strip = jax.device_get(compute(variables, x, jax.random.key(seed)))
    return {
        "samples": make_grid(samples, ncol=int(math.ceil(math.sqrt(len(samples))))),
        "reconstructions": make_grid(np.concatenate([x, recon]), ncol=len(x)),
        "interpolation": make_grid(np.concatenate([x[:1], strip, x[1:2]]),
                                   ncol=eval_cfg.interp_steps + 2),
    }

  return fn


def config_from_checkpoint(path, config):
  """The model/data sizes of the run that wrote `path` (its `config.json`), else `config`."""
  return cli.config_of_run(path, config, ("model", "data.image_size", "optim"))


# ------------------------------------------------------------------------------------ modes


def train(config, workdir: Path, args) -> dict:
  """Train the VAE; validation every epoch, best checkpoint (validation ELBO) in WORKDIR/best."""
  data = config.data
  model = build_model(config)
  train_src, valid_src = image_sources(data)
  if len(valid_src) == 0:
    raise ValueError(f"data.valid_fraction={data.valid_fraction}: the validation split is empty")
  steps_per_epoch = len(train_src) // data.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"{len(train_src)} training images is less than one batch of {data.batch_size}")
  train_cfg = dict(config.train)
  train_cfg["num_steps"] = train_cfg["num_steps"] or data.num_epochs * steps_per_epoch
  train_cfg["eval_every"] = train_cfg["eval_every"] or steps_per_epoch
  if train_cfg["num_steps"] <= 0:
    raise ValueError("set data.num_epochs or train.num_steps to a positive number")
  tx = make_optimizer(**config.optim)
  loader = make_loader(train_src, batch_size=data.batch_size, seed=train_cfg["seed"],
                       worker_count=data.worker_count,
                       transforms=[RandomResizedCrop(data.image_size, scale=tuple(data.crop_scale))])
  validate = validation_fn(model, data, config.eval, valid_src)
  example = jnp.zeros((1, data.image_size, data.image_size, 3), jnp.float32)
  best_path = workdir / "best.json"
  best = _read_json(best_path, {"neg_elbo": float("inf")})
  valid_images = preview_images(valid_src, data.image_size)

  def eval_fn(state, step):
    metrics = validate(state.variables)
    if metrics["neg_elbo"] < best["neg_elbo"]:
      io = CheckpointIO(workdir / "best", max_to_keep=1)
      io.save(step, state)
      io.close()
      best.clear()
      best.update(step=int(step), **metrics)
      best_path.write_text(json.dumps(best, indent=2))
    return metrics

  pictures = make_picture_fn(model, config.eval)

  def artefact_fn(state, step, writer):
    grids = pictures(state.variables, valid_images, seed=step)
    for name, im in grids.items():
      save_image(writer.artefact_path(f"{name}_{step:06d}.png"), im)
    writer.images(step, grids)

  print(f"train: {len(train_src)} images ({train_src!r}), valid: {len(valid_src)}; "
        f"{steps_per_epoch} steps/epoch, {train_cfg['num_steps']} steps")
  state = fit(workdir=workdir, config=config, model=model,
              loss_fn=make_loss_fn(**config.loss), tx=tx, train_iter=loader,
              init_fn=lambda rng: init_state(model, tx, rng, example),
              eval_fn=eval_fn, artefact_fn=artefact_fn, **train_cfg)
  return {"step": int(state.step), "best": dict(best), "workdir": str(workdir)}


def similarity(config, workdir: Path, args) -> dict:
  """Same-image vs different-image crop similarity of latent features, plus grids."""
  if args.checkpoint:
    config = config_from_checkpoint(args.checkpoint, config)
  model = build_model(config)
  tx = make_optimizer(**config.optim)
  example = jnp.zeros((1, config.data.image_size, config.data.image_size, 3), jnp.float32)
  sc, size = config.similarity, config.data.image_size
  if args.images:
    images, groups, names = sim.load_image_groups(args.images)
  else:  # unseen textures: another seed than the training set's
    images = list(synthetic.textured_images(sc.num_synthetic, size=config.data.synthetic_size,
                                            seed=config.data.split_seed + 1000))
    groups, names = np.arange(len(images)), [f"texture{i}" for i in range(len(images))]
  make_state = lambda: init_state(model, tx, jax.random.key(config.train.seed), example)
  if args.checkpoint:
    state = restore_state(args.checkpoint, jax.eval_shape(make_state))
  else:
    state = jax.jit(make_state)()
  variables = state.variables
  encode = jax.jit(lambda v, x, key: model.apply(v, x, method=ConvVAE.features_of, sample=sc.sample,
                                                  rngs={"sample": key}))
  keys = iter(jax.random.split(jax.random.key(sc.seed), 100_000))
  features = lambda x: encode(variables, x, next(keys))  # a fresh z per batch when sampling
  what = "sampled z" if sc.sample else "latent mean"
  ckpt = str(args.checkpoint) if args.checkpoint else "untrained (random init)"
  out = workdir / "similarity"
  summary = sim.run_study(features, images, groups, names, size=size, out_dir=out,
                          pairs_per_image=sc.pairs_per_image, scale=tuple(sc.crop_scale),
                          seed=sc.seed, bins=sc.bins, queries=sc.retrieval_queries,
                          k=sc.retrieval_k, batch_size=config.eval.batch_size,
                          label=f"VAE {what}, {ckpt}")
  resized = np.stack([Resize((size, size)).map({"image": im})["image"] for im in images[:8]])
  for name, im in make_picture_fn(model, config.eval)(variables, resized, sc.seed).items():
    save_image(out / f"{name}.png", im)
  summary.update(checkpoint=ckpt, features=what, images=str(args.images or "embedded textures"),
                 outputs=str(out))
  (out / "summary.json").write_text(json.dumps(summary, indent=2))
  return summary


def main(argv=None):
  return cli.run(get_config, modes={"train": train, "similarity": similarity},
                 presets={"demo": demo, "smoke": smoke, "paper": paper}, default_preset="demo",
                 flags={"checkpoint": "a workdir, its best/ folder or a step folder",
                        "images": "folder of images for the similarity study (default: textures)"},
                 doc=__doc__, argv=argv)


if __name__ == "__main__":
  main()
