"""Tests of the conv VAE (aejax/models/vae.py), its ELBO terms (aejax/elbo.py) and experiments/vae.py."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import elbo
from aejax.models.vae import ConvVAE, check_image_size, decoded_size, encoded_size, valid_sizes

TINY = dict(image_size=(30, 30), latent_dim=8, features=(4, 8, 8))
RNGS = lambda seed=0: {"params": jax.random.key(seed), "sample": jax.random.key(seed + 1)}


def _count(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def test_param_count_of_the_original():
  model = ConvVAE()
  shapes = jax.eval_shape(lambda: model.init(RNGS(), jnp.zeros((1, 254, 254, 3))))
  assert _count(shapes["params"]) == 3_297_571
  assert _count(shapes["params"]["encoder"]) == 1_688_704
  assert _count(shapes["params"]["decoder"]) == 1_608_867
  assert _count(shapes["batch_stats"]) == 384  # PyTorch's 386 include two num_batches_tracked
  assert shapes["params"]["encoder"]["mu"]["kernel"].shape == (1024, 512)
  assert shapes["params"]["decoder"]["t_conv6"]["kernel"].shape == (4, 4, 32, 3)


def test_original_shapes_through_eval_shape():
  model = ConvVAE()
  x = jnp.zeros((2, 254, 254, 3))
  (x_hat, aux), _ = jax.eval_shape(
      lambda: model.init_with_output(RNGS(), x, train=False))
  assert x_hat.shape == (2, 254, 254, 3)
  assert aux["mu"].shape == aux["logvar"].shape == aux["z"].shape == (2, 512)


def test_size_arithmetic():
  assert [encoded_size(n, 6) for n in (253, 254, 190)] == [2, 2, 1]
  assert decoded_size(2, 6) == 254
  assert valid_sizes(6, 400) == [190, 254, 318, 382]
  assert valid_sizes(3, 40) == [22, 30, 38]
  assert check_image_size((254, 318), 6) == (2, 3)


@pytest.mark.parametrize("size", [(253, 254), (256, 256), (100, 254), (30, 30)])
def test_bad_sizes_raise_one_clear_error(size):
  model = ConvVAE(image_size=size)
  with pytest.raises(ValueError, match=r"ConvVAE: input side \d+ is not reproduced"):
    model.init(RNGS(), jnp.zeros((1, *size, 3)))


def test_wrong_input_shape_is_an_error():
  model = ConvVAE(**TINY)
  with pytest.raises(ValueError, match=r"expected images \[B, 30, 30, 3\]"):
    model.init(RNGS(), jnp.zeros((1, 38, 38, 3)))


def test_tiny_model_shapes_sampling_and_batchnorm():
  model = ConvVAE(**TINY)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 30, 30, 3)), jnp.float32)
  variables = model.init(RNGS(), x, train=False)
  assert set(variables) == {"params", "batch_stats"}
  (x_hat, aux), new_state = model.apply(variables, x, train=True, rngs={"sample": jax.random.key(3)},
                                        mutable=["batch_stats"])
  assert x_hat.shape == (3, 30, 30, 3) and aux["logits"].shape == (3, 30, 30, 3)
  assert aux["z"].shape == (3, 8)
  assert bool(jnp.all((x_hat > 0) & (x_hat < 1)))
  np.testing.assert_allclose(x_hat, jax.nn.sigmoid(aux["logits"]), rtol=1e-6)
  # Training updates the running statistics (momentum 0.9 from mean 0).
  old = variables["batch_stats"]["encoder"]["bn1"]["mean"]
  new = new_state["batch_stats"]["encoder"]["bn1"]["mean"]
  assert not np.allclose(old, new)
  # z = mu + eps * exp(logvar / 2) with eps from the `sample` stream.
  eps = (aux["z"] - aux["mu"]) / jnp.exp(0.5 * aux["logvar"])
  assert abs(float(eps.std()) - 1.0) < 0.5
  same = model.apply(variables, x, rngs={"sample": jax.random.key(3)})
  other = model.apply(variables, x, rngs={"sample": jax.random.key(4)})
  again = model.apply(variables, x, rngs={"sample": jax.random.key(3)})
  np.testing.assert_array_equal(same[1]["z"], again[1]["z"])
  assert not np.allclose(same[1]["z"], other[1]["z"])
  (_, det) = model.apply(variables, x, sample=False)
  np.testing.assert_array_equal(det["z"], det["mu"])
  mu, logvar = model.apply(variables, x, method=ConvVAE.encode)
  np.testing.assert_allclose(mu, det["mu"], rtol=1e-6)
  feats = model.apply(variables, x, method=ConvVAE.features_of)
  np.testing.assert_allclose(feats, mu, rtol=1e-6)
  assert logvar.shape == (3, 8)


def test_generate_samples_the_prior():
  model = ConvVAE(**TINY)
  variables = model.init(RNGS(), jnp.zeros((1, 30, 30, 3)))
  imgs = model.apply(variables, 5, method=ConvVAE.generate, rngs={"sample": jax.random.key(7)})
  assert imgs.shape == (5, 30, 30, 3)
  again = model.apply(variables, 5, method=ConvVAE.generate, rngs={"sample": jax.random.key(7)})
  other = model.apply(variables, 5, method=ConvVAE.generate, rngs={"sample": jax.random.key(8)})
  np.testing.assert_array_equal(imgs, again)
  assert not np.allclose(imgs, other)
  assert float(jnp.abs(imgs[0] - imgs[1]).max()) > 0  # one z per image, not one shared z


def test_gaussian_kl_matches_numpy_closed_form():
  rng = np.random.default_rng(1)
  mu = rng.normal(size=(4, 6)).astype(np.float32)
  logvar = rng.normal(size=(4, 6)).astype(np.float32)
  var = np.exp(logvar.astype(np.float64))
  # KL(N(mu, diag var) || N(0, I)) = 0.5 * (tr(var) + |mu|^2 - k - log det var), per example.
  ref = 0.5 * (var.sum(1) + (mu.astype(np.float64) ** 2).sum(1) - mu.shape[1] - logvar.sum(1))
  np.testing.assert_allclose(elbo.gaussian_kl(mu, logvar), ref, rtol=1e-5)
  np.testing.assert_allclose(elbo.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3))), 0.0, atol=1e-7)


def test_bce_matches_pytorch_formula_and_loss_terms():
  rng = np.random.default_rng(2)
  x = rng.uniform(size=(2, 4, 4, 3)).astype(np.float32)
  logits = rng.normal(scale=2.0, size=x.shape).astype(np.float32)
  p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  ref_bce = -(x * np.maximum(np.log(p), -100) + (1 - x) * np.maximum(np.log(1 - p), -100))
  ref_bce = ref_bce.reshape(2, -1).sum(1)
  np.testing.assert_allclose(elbo.bernoulli_nll(logits, x), ref_bce, rtol=1e-5)
  mu = rng.normal(size=(2, 5)).astype(np.float32)
  logvar = rng.normal(size=(2, 5)).astype(np.float32)
  kl = np.asarray(elbo.gaussian_kl(mu, logvar))
  loss, m = elbo.vae_loss(x, p.astype(np.float32), logits, mu, logvar)
  np.testing.assert_allclose(loss, (ref_bce + kl).sum(), rtol=1e-5)  # summed over the batch
  np.testing.assert_allclose(m["neg_elbo"], (ref_bce + kl).mean(), rtol=1e-5)
  np.testing.assert_allclose(m["bits_per_dim"], (ref_bce + kl).mean() / (48 * math.log(2)), rtol=1e-5)
  loss_b, mb = elbo.vae_loss(x, p, logits, mu, logvar, reconstruction="mse", beta=0.5,
                             reduction="mean")
  sse = ((p - x) ** 2).reshape(2, -1).sum(1)
  np.testing.assert_allclose(loss_b, (sse + 0.5 * kl).mean(), rtol=1e-5)
  np.testing.assert_allclose(mb["neg_elbo"], m["neg_elbo"], rtol=1e-6)  # metric ignores beta/mse
  with pytest.raises(ValueError, match="reconstruction"):
    elbo.vae_loss(x, p, logits, mu, logvar, reconstruction="l1")
