"""ELBO terms of a Gaussian-latent VAE (Kingma & Welling, "Auto-Encoding Variational Bayes", 2014).

Pure functions of arrays. `vae_loss` reproduces the Quixel VAE's objective (KL + BCE, both summed
over the batch, the latent and the pixels; `specs/seeds_keyframe_oval_vae.md` §3.3) and adds the
size-independent numbers the original lacked: the negative ELBO per example, per dimension (nats)
and in bits per dimension. The Bernoulli likelihood of continuous targets in [0, 1] is not a
normalised density, so its bits/dim compare models, not codecs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

RECONSTRUCTIONS = ("bce", "mse")
REDUCTIONS = ("sum", "mean")


def gaussian_kl(mu, logvar):
  """KL(N(mu, exp(logvar)) || N(0, I)) per example: -0.5 * sum(1 + logvar - mu^2 - exp(logvar)).

  Args:
    mu, logvar: [B, ...] float arrays.

  Returns:
    [B] float32.
  """
  mu = jnp.asarray(mu, jnp.float32)
  logvar = jnp.asarray(logvar, jnp.float32)
  kl = -0.5 * (1.0 + logvar - jnp.square(mu) - jnp.exp(logvar))
  return kl.reshape(kl.shape[0], -1).sum(-1)


def bernoulli_nll(logits, targets):
  """Binary cross-entropy of targets in [0, 1] under sigmoid(logits), summed per example.

  Computed from logits (log sigmoid(l) = -softplus(-l)), which equals PyTorch's
  `binary_cross_entropy(sigmoid(l), x, reduction='sum')` wherever PyTorch's log clamp at -100 is
  inactive, and stays finite where it is not.

  Returns:
    [B] float32.
  """
  logits = jnp.asarray(logits, jnp.float32)
  x = jnp.asarray(targets, jnp.float32)
  nll = x * jax.nn.softplus(-logits) + (1.0 - x) * jax.nn.softplus(logits)
  return nll.reshape(nll.shape[0], -1).sum(-1)


def squared_error(x_hat, targets):
  """Sum of squared errors per example (PyTorch `mse_loss(reduction='sum')` split by example)."""
  d = jnp.asarray(x_hat, jnp.float32) - jnp.asarray(targets, jnp.float32)
  return jnp.square(d).reshape(d.shape[0], -1).sum(-1)


def per_dimension(neg_elbo, dims: int) -> dict:
  """`nats_per_dim` and `bits_per_dim` of a negative ELBO (nats per example) over `dims` values."""
  return {"nats_per_dim": neg_elbo / dims, "bits_per_dim": neg_elbo / (dims * math.log(2.0))}


def vae_loss(
  x, x_hat, logits, mu, logvar, *, reconstruction: str = "bce", beta: float = 1.0, reduction: str = "sum"
):
  """The VAE objective and its metrics.

  Args:
    x: targets [B, H, W, C] in [0, 1].
    x_hat: decoder output in [0, 1] (used by "mse").
    logits: pre-sigmoid decoder output (used by "bce" and the ELBO metrics).
    mu, logvar: posterior parameters [B, D].
    reconstruction: "bce" (the original's final choice) or "mse" (its first try, summed).
    beta: weight of the KL term (1 = the original).
    reduction: "sum" over the batch (the original; the loss scale grows with the batch) or "mean".

  Returns:
    `(loss, metrics)`: `metrics` holds `loss`, `kl`, `recon` (per example), `neg_elbo` (KL + BCE
    per example, nats, always with beta 1 and the Bernoulli likelihood so that runs compare),
    `nats_per_dim` and `bits_per_dim`.
  """
  if reconstruction not in RECONSTRUCTIONS:
    raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}")
  if reduction not in REDUCTIONS:
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
  kl = gaussian_kl(mu, logvar)  # [B]
  bce = bernoulli_nll(logits, x)  # [B]
  recon = bce if reconstruction == "bce" else squared_error(x_hat, x)
  per_example = recon + beta * kl
  loss = per_example.sum() if reduction == "sum" else per_example.mean()
  dims = math.prod(x.shape[1:])
  neg_elbo = (kl + bce).mean()
  metrics = {
    "loss": loss,
    "kl": kl.mean(),
    "recon": recon.mean(),
    "neg_elbo": neg_elbo,
    **per_dimension(neg_elbo, dims),
  }
  return loss, metrics
