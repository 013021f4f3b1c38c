"""Per-sample random token masking (He et al., "Masked Autoencoders Are Scalable Vision Learners",
CVPR 2022), as used by SiamMAE (Gupta et al., NeurIPS 2023) on the future frame.

Each sample draws its own uniform noise from the `mask` stream; the tokens with the smallest
noise are kept. As MAE's `random_masking`, `int(L * (1 - ratio))` tokens are kept (9 of 196 for
ViT-S/16 at 224 and ratio 0.95, where the public replication kept 10 and shared one permutation
across the batch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["num_kept", "random_masking"]


def num_kept(length: int, mask_ratio: float) -> int:
  """Visible tokens: int(length * (1 - mask_ratio)), at least 1."""
  if not 0.0 <= mask_ratio < 1.0:
    raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
  n = int(length * (1 - mask_ratio))
  if n < 1:
    raise ValueError(f"mask_ratio {mask_ratio} keeps no token out of {length}")
  return n


def random_masking(key: jax.Array, batch: int, length: int, mask_ratio: float):
  """Draws an independent random mask for every sample.

  Args:
    key: a PRNG key (the `mask` stream).
    batch, length: B and the number of tokens L.
    mask_ratio: the fraction of tokens hidden.

  Returns:
    ids_keep [B, n] int32 (kept token indices, in noise order), mask [B, L] float32 (1 = hidden,
    0 = visible, in the original order) and ids_restore [B, L] int32 (the inverse permutation:
    position of each original token in `concat(kept, hidden)`).
  """
  n_keep = num_kept(length, mask_ratio)
  noise = jax.random.uniform(key, (batch, length))  # [B, L]
  ids_shuffle = jnp.argsort(noise, axis=1).astype(jnp.int32)  # ascending: small noise is kept
  ids_restore = jnp.argsort(ids_shuffle, axis=1).astype(jnp.int32)
  ids_keep = ids_shuffle[:, :n_keep]  # [B, n]
  mask = (jnp.arange(length)[None, :] >= n_keep).astype(jnp.float32)  # in shuffled order
  mask = jnp.take_along_axis(mask, ids_restore, axis=1)  # [B, L] in the original order
  return ids_keep, mask, ids_restore
