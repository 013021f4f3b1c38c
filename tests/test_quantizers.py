"""Quantisers: NumPy references for assignment, EMA updates by hand, gradients, statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.models.quantizers import (
  ScalarQuantizer,
  VectorQuantizer,
  code_statistics,
  empirical_entropy_bits,
)


def _scalar(mode, z, k=8, **kw):
  q = ScalarQuantizer(num_codes=k, mode=mode, **kw)
  params = q.init(jax.random.key(0), z)
  return q, params


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), (2, 3, 4, 5, 2)])
def test_scalar_assignment_matches_numpy_any_rank(shape):
  z = jax.random.normal(jax.random.key(1), shape) * 2
  q, params = _scalar("ste", z)
  c = np.asarray(params["params"]["centroids"])
  assert c.shape == (8,) and np.all(np.abs(c) <= np.sqrt(6.0))
  out, aux = q.apply(params, z)
  ref_idx = np.argmin(np.abs(np.asarray(z)[..., None] - c), axis=-1)
  np.testing.assert_array_equal(np.asarray(aux["indices"]), ref_idx)
  np.testing.assert_allclose(np.asarray(out), c[ref_idx], atol=1e-6)
  out_h, _ = ScalarQuantizer(num_codes=8, mode="hard").apply(params, z)
  np.testing.assert_allclose(np.asarray(out_h), c[ref_idx], atol=1e-6)


def test_legacy_forward_is_distance_to_nearest_centroid():
  z = jax.random.normal(jax.random.key(2), (4, 6))
  q, params = _scalar("legacy", z)
  c = np.asarray(params["params"]["centroids"])
  out, _ = q.apply(params, z)
  ref = np.min(np.abs(np.asarray(z)[..., None] - c), axis=-1)
  np.testing.assert_allclose(np.asarray(out), ref, atol=3e-7)
  assert np.all(np.asarray(out) >= 0)


def test_soft_to_hard_gradient_is_the_soft_assignment_gradient():
  z = jnp.array([-1.3, 0.2, 0.9, 2.1])
  q, params = _scalar("ste", z, sigma=2.0)
  c = np.asarray(params["params"]["centroids"], np.float64)
  g = np.asarray(jax.grad(lambda z: q.apply(params, z)[0].sum())(z))

  def soft(x):  # NumPy reference of sum_k softmax(-sigma |x - c_k|) c_k
    w = np.exp(-2.0 * np.abs(x[:, None] - c))
    return (w * c).sum(-1) / w.sum(-1)

  x = np.asarray(z, np.float64)
  h = 1e-5
  fd = (soft(x + h) - soft(x - h)) / (2 * h)
  np.testing.assert_allclose(g, fd, rtol=1e-3, atol=1e-5)
  assert np.abs(g).max() > 1e-2


def _linear_codec_grads(quantizer, **init_kw):
  """Gradient of a reconstruction loss w.r.t. a linear encoder through `quantizer`."""
  x = jax.random.normal(jax.random.key(3), (64, 8))
  w_enc = jax.random.normal(jax.random.key(4), (8, 4)) * 0.5
  w_dec = jax.random.normal(jax.random.key(5), (4, 8)) * 0.5
  variables = quantizer.init(jax.random.key(6), x @ w_enc)

  def loss(w_enc, w_dec):
    zq, aux = quantizer.apply(variables, x @ w_enc)
    return jnp.mean((zq @ w_dec - x) ** 2) + aux["loss"]

  return jax.grad(loss, argnums=(0, 1))(w_enc, w_dec)


def test_encoder_gets_no_gradient_in_legacy_mode_and_does_in_fixed_modes():
  g_enc, g_dec = _linear_codec_grads(ScalarQuantizer(num_codes=16, mode="legacy"))
  assert float(jnp.abs(g_dec).max()) > 1e-2
  assert float(jnp.abs(g_enc).max()) < 1e-6  # float noise of d(sum softmax)/dz == 0
  for q in (
    ScalarQuantizer(num_codes=16, mode="ste"),
    ScalarQuantizer(num_codes=16, mode="hard"),
    VectorQuantizer(num_codes=16, num_codebooks=2),
  ):
    g_enc, _ = _linear_codec_grads(q)
    assert float(jnp.abs(g_enc).max()) > 1e-3, q


def _np_vq(z, codebook):
  g, k, d = codebook.shape
  flat = z.reshape(-1, g, d)
  dist = ((flat[:, :, None, :] - codebook[None]) ** 2).sum(-1)  # [N, G, K]
  idx = dist.argmin(-1)
  quant = np.stack([codebook[j, idx[:, j]] for j in range(g)], 1)
  return idx, quant


@pytest.mark.parametrize("groups", [1, 4])
def test_vq_assignment_and_commitment_match_numpy(groups):
  z = jax.random.normal(jax.random.key(7), (2, 3, 5, 8))
  vq = VectorQuantizer(num_codes=16, num_codebooks=groups, commitment_cost=0.25)
  variables = vq.init(jax.random.key(8), z)
  cb = np.asarray(variables["batch_stats"]["codebook"])
  assert cb.shape == (groups, 16, 8 // groups)
  out, aux = vq.apply(variables, z)
  idx, quant = _np_vq(np.asarray(z), cb)
  np.testing.assert_array_equal(np.asarray(aux["indices"]).reshape(-1, groups), idx)
  assert aux["indices"].shape == (2, 3, 5, groups)
  np.testing.assert_allclose(np.asarray(out), quant.reshape(z.shape), atol=1e-5)
  commit = np.mean((np.asarray(z).reshape(quant.shape) - quant) ** 2)
  np.testing.assert_allclose(float(aux["loss"]), 0.25 * commit, rtol=1e-5)
  # Straight-through: the quantiser passes the gradient of its output unchanged to z.
  g = jax.grad(lambda z: jnp.sum(vq.apply(variables, z)[0] * 3.0))(z)
  np.testing.assert_allclose(np.asarray(g), 3.0, atol=1e-6)


def test_vq_ema_update_and_dead_code_restart_by_hand():
  decay, eps = 0.5, 1e-5
  vq = VectorQuantizer(num_codes=3, num_codebooks=1, decay=decay, epsilon=eps, restart_threshold=0.6)
  z = jnp.array([[0.9, 0.1], [1.1, -0.1], [-1.0, 0.0], [0.8, 0.3]])
  variables = vq.init(jax.random.key(0), z)
  cb0 = np.array([[[1.0, 0.0], [-1.0, 0.0], [0.0, 5.0]]])
  variables = {
    "batch_stats": {
      "codebook": jnp.asarray(cb0),
      "cluster_size": jnp.ones((1, 3)),
      "embed_sum": jnp.asarray(cb0),
    }
  }
  _, new = vq.apply(variables, z, train=True, mutable=["batch_stats"], rngs={"sample": jax.random.key(1)})
  new = new["batch_stats"]
  # Hand computation: codes 0 <- rows 0, 1, 3; code 1 <- row 2; code 2 unused.
  counts = np.array([3.0, 1.0, 0.0])
  size = decay * 1.0 + (1 - decay) * counts  # [2.0, 1.0, 0.5]
  dw = np.array([[2.8, 0.3], [-1.0, 0.0], [0.0, 0.0]])
  esum = decay * cb0[0] + (1 - decay) * dw
  total = size.sum()
  smoothed = (size + eps) / (total + 3 * eps) * total
  expect = esum / smoothed[:, None]
  np.testing.assert_allclose(np.asarray(new["cluster_size"])[0, :2], size[:2], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(new["embed_sum"])[0, :2], esum[:2], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(new["codebook"])[0, :2], expect[:2], rtol=1e-5)
  # Code 2's EMA size 0.5 < 0.6: restarted at one of the batch vectors with size 1.
  restarted = np.asarray(new["codebook"])[0, 2]
  assert np.min(np.abs(np.asarray(z) - restarted).sum(-1)) < 1e-6
  assert float(new["cluster_size"][0, 2]) == 1.0
  # Without `train` nothing changes.
  _, same = vq.apply(variables, z, train=False, mutable=["batch_stats"])
  np.testing.assert_array_equal(np.asarray(same["batch_stats"]["codebook"]), cb0)


def test_vq_without_ema_learns_codebook_by_loss():
  vq = VectorQuantizer(num_codes=4, ema=False, commitment_cost=0.25)
  z = jax.random.normal(jax.random.key(2), (10, 3))
  variables = vq.init(jax.random.key(3), z)
  assert "batch_stats" not in variables
  g = jax.grad(lambda p: vq.apply({"params": p}, z)[1]["loss"])(variables["params"])
  assert float(jnp.abs(g["codebook"]).max()) > 1e-3


def test_code_statistics_perplexity_and_usage():
  idx = jnp.array([0, 1, 2, 3] * 5)
  perp, usage, counts = code_statistics(idx, 8)
  np.testing.assert_allclose(float(perp), 4.0, rtol=1e-6)
  assert float(usage) == 0.5 and counts.tolist() == [5, 5, 5, 5, 0, 0, 0, 0]
  perp, usage, _ = code_statistics(jnp.zeros((7,), jnp.int32), 8)
  assert float(perp) == pytest.approx(1.0) and float(usage) == pytest.approx(1 / 8)
  assert empirical_entropy_bits([5, 5, 5, 5, 0]) == pytest.approx(2.0)
  assert empirical_entropy_bits([1, 3]) == pytest.approx(0.8112781245)


def test_bad_mode_and_groups_are_clear_errors():
  with pytest.raises(ValueError, match="mode"):
    ScalarQuantizer(mode="nope").init(jax.random.key(0), jnp.zeros(3))
  with pytest.raises(ValueError, match="divide"):
    VectorQuantizer(num_codebooks=3).init(jax.random.key(0), jnp.zeros((2, 8)))
