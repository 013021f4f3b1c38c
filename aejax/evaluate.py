"""Batched evaluation: one padding rule for every jitted function run over host arrays.

A jitted function compiles once per input shape, so a short last batch is padded to the batch
size (by repeating its last row, which keeps BatchNorm-free statistics and value ranges sane) and
the padded rows are sliced off the outputs. `evaluate` averages metrics with padded rows masked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import numpy as np


def pad_batch(x, size: int, *, mode: str = "edge"):
  """Pads the leading axis of `x` (an array or a pytree of arrays) to `size`: `(padded, n)`.

  Args:
    x: arrays with a common leading axis of length `n <= size`.
    size: the batch size to pad to.
    mode: "edge" repeats the last row, "zeros" appends zeros.

  Returns:
    The padded tree and the number of real rows `n`.
  """
  leaves = jax.tree.leaves(x)
  if not leaves:
    raise ValueError("pad_batch: nothing to pad")
  n = len(leaves[0])
  if n == 0:
    raise ValueError("pad_batch: an empty batch cannot be padded")
  if n > size:
    raise ValueError(f"pad_batch: batch of {n} is larger than the batch size {size}")
  if n == size:
    return x, n

  def pad(a):
    a = np.asarray(a)
    fill = (np.repeat(a[-1:], size - n, axis=0) if mode == "edge"
            else np.zeros((size - n, *a.shape[1:]), a.dtype))
    return np.concatenate([a, fill])

  if mode not in ("edge", "zeros"):
    raise ValueError(f"pad_batch: mode must be 'edge' or 'zeros', got {mode!r}")
  return jax.tree.map(pad, x), n


def batches_of(x, batch_size: int) -> Iterable:
  """Consecutive slices `x[i:i + batch_size]` of an array or a pytree of arrays."""
  n = len(jax.tree.leaves(x)[0])
  for i in range(0, n, batch_size):
    yield jax.tree.map(lambda a: a[i:i + batch_size], x)


def map_batches(fn: Callable, x, batch_size: int, *, mode: str = "edge", pad: bool = True):
  """`fn` over `x` in batches of `batch_size`, padded to one shape; outputs concatenated on host.

  Args:
    fn: a (jitted) function of one batch returning an array or a pytree of arrays with the batch
      as leading axis.
    x: an array or a pytree of arrays with a common leading axis (for a stream of batches, call
      `pad_batch` on each).
    batch_size: the fixed batch size `fn` sees.
    mode: how to pad (see `pad_batch`).
    pad: False runs short batches at their own length (for stateful functions such as a
      recurrent carry that must not see padding).

  Returns:
    `fn`'s outputs for the real rows only, as NumPy arrays (same tree structure as one output).
  """
  parts = []
  for chunk in batches_of(x, batch_size):
    padded, n = pad_batch(chunk, batch_size, mode=mode) if pad else (chunk, None)
    out = jax.device_get(fn(padded))
    parts.append(jax.tree.map(lambda a: np.asarray(a)[:n], out))
  if not parts:
    raise ValueError("map_batches: no input")
  return jax.tree.map(lambda *a: np.concatenate(a), *parts)


def evaluate(predict_fn: Callable, state, batches: Iterable[dict], *, batch_size: int | None = None
             ) -> dict[str, float]:
  """Means of per-example metrics over all batches, padded examples masked out.

  Args:
    predict_fn: `predict_fn(state, batch) -> dict[str, array [B]]` of per-example metrics.
    state: whatever `predict_fn` takes first (a TrainState or variables).
    batches: dicts of host arrays; a short batch is padded to `batch_size` (default: the first
      batch's size) so that `predict_fn` compiles once.
    batch_size: the padded size.

  Returns:
    `{name: mean over real examples}` as Python floats.
  """
  sums: dict[str, float] = {}
  count = 0
  for batch in batches:
    if batch_size is None:
      batch_size = len(jax.tree.leaves(batch)[0])
    padded, n = pad_batch(batch, batch_size)
    out = jax.device_get(predict_fn(state, padded))
    for k, v in out.items():
      v = np.asarray(v, np.float64).reshape(len(np.asarray(v)), -1).mean(1)[:n]
      sums[k] = sums.get(k, 0.0) + float(v.sum())
    count += n
  if count == 0:
    raise ValueError("evaluate: no batches")
  return {k: v / count for k, v in sums.items()}
