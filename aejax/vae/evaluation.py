"""Evaluating a VAE: the validation ELBO over a data split, and the picture grids.

`validation_fn` is what `experiments/vae.py` runs every epoch (and in `eval`); `make_picture_fn`
draws samples from the prior, reconstructions and a latent interpolation, written at every
validation (to `WORKDIR/artefacts/` and TensorBoard) and by the `similarity` app. Any
`aejax.models.vae.ConvVAE`-like model (`encode`/`generate`/`decode`, `(x_hat, aux)` outputs with
`mu`, `logvar`, `logits`) works.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from aejax.data.pipeline import make_loader
from aejax.data.transforms import Resize
from aejax.evaluate import map_batches
from aejax.models.vae import ConvVAE
from aejax.vae import elbo
from aejax.viz import make_grid


def preview_images(source, size: int, n: int = 8) -> np.ndarray:
  """The first `n` images of `source` resized to size x size (at least two, for interpolation)."""
  resize = Resize((size, size))
  images = np.stack([resize.map(source[i])["image"] for i in range(min(len(source), n))])
  return images if len(images) > 1 else np.concatenate([images, images[:, :, ::-1]])


def validation_fn(model, image_size: int, batch_size: int, valid_source):
  """`fn(variables) -> metrics` over the whole of `valid_source` (resized, one z sample each).

  Batches are zero-padded to `batch_size` (one compilation); batch i draws z with key i. The
  metrics are the means over the split of `kl`, `bce` and `neg_elbo` (their sum, nats per
  example), and `nats_per_dim` / `bits_per_dim`.
  """

  @jax.jit
  def per_example(variables, images, key):
    x = images.astype(jnp.float32) / 255.0
    _, aux = model.apply(variables, x, train=False, rngs={"sample": key})
    return elbo.gaussian_kl(aux["mu"], aux["logvar"]), elbo.bernoulli_nll(aux["logits"], x)

  def run(variables) -> dict[str, float]:
    # Every process reads the whole split, so all agree on the best checkpoint.
    it = make_loader(
      valid_source,
      batch_size=batch_size,
      shuffle=False,
      num_epochs=1,
      drop_remainder=False,
      transforms=[Resize((image_size,) * 2)],
      shard=False,
    )
    parts = [
      map_batches(
        lambda x, i=i: per_example(variables, x, jax.random.key(i)), batch["image"], batch_size, mode="zeros"
      )
      for i, batch in enumerate(it)
    ]
    kl, bce = (np.concatenate(p) for p in zip(*parts))
    neg_elbo = float(np.mean(kl + bce))
    return {
      "neg_elbo": neg_elbo,
      "kl": float(kl.mean()),
      "bce": float(bce.mean()),
      **elbo.per_dimension(neg_elbo, 3 * image_size**2),
    }

  return run


def make_picture_fn(model: ConvVAE, *, num_samples: int = 16, num_recon: int = 8, interp_steps: int = 8):
  """`fn(variables, images uint8 [N, H, W, 3], seed) -> dict of grids` (one jitted computation).

  The grids: `samples` (`num_samples` decoded z ~ N(0, I)), `reconstructions` (top: the first
  `num_recon` inputs, bottom: their decoded mu) and `interpolation` (decoded mu of images[0] ->
  images[1] in `interp_steps` steps, framed by the two inputs).
  """

  @jax.jit
  def compute(variables, x, key):
    samples = model.apply(variables, num_samples, method=ConvVAE.generate, rngs={"sample": key})
    recon, aux = model.apply(variables, x, train=False, sample=False)
    t = jnp.linspace(0.0, 1.0, interp_steps)[:, None]
    z = (1.0 - t) * aux["mu"][0] + t * aux["mu"][1]  # [steps, D]
    return samples, recon, model.apply(variables, z, method=ConvVAE.decode)

  def fn(variables, images, seed: int = 0) -> dict[str, np.ndarray]:
    x = np.asarray(images[: max(num_recon, 2)], np.float32) / 255.0  # [N, H, W, 3]
    samples, recon, strip = jax.device_get(compute(variables, x, jax.random.key(seed)))
    return {
      "samples": make_grid(samples, ncol=int(math.ceil(math.sqrt(len(samples))))),
      "reconstructions": make_grid(np.concatenate([x, recon]), ncol=len(x)),
      "interpolation": make_grid(np.concatenate([x[:1], strip, x[1:2]]), ncol=interp_steps + 2),
    }

  return fn
