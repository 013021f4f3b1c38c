"""Batched evaluation: one padding rule for every jitted function run over host arrays.

A jitted function compiles once per input shape, so a short last batch is padded to the batch
size (by repeating its last row, which keeps BatchNorm-free statistics and value ranges sane) and
the padded rows are sliced off the outputs. `evaluate` averages metrics with padded rows masked.
`train_probe` fits a small multi-label probe (e.g. `ClipProbe`) on features and scores it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import numpy as np
from flax import linen as nn


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
    fill = (
      np.repeat(a[-1:], size - n, axis=0) if mode == "edge" else np.zeros((size - n, *a.shape[1:]), a.dtype)
    )
    return np.concatenate([a, fill])

  if mode not in ("edge", "zeros"):
    raise ValueError(f"pad_batch: mode must be 'edge' or 'zeros', got {mode!r}")
  return jax.tree.map(pad, x), n


def batches_of(x, batch_size: int) -> Iterable:
  """Consecutive slices `x[i:i + batch_size]` of an array or a pytree of arrays."""
  n = len(jax.tree.leaves(x)[0])
  for i in range(0, n, batch_size):
    yield jax.tree.map(lambda a: a[i : i + batch_size], x)


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


def evaluate(
  predict_fn: Callable, state, batches: Iterable[dict], *, batch_size: int | None = None
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


def multi_hot(labels, num_classes: int) -> np.ndarray:
  """[N, D] integer labels -> [N, num_classes] float32 with a 1 for every class present."""
  labels = np.asarray(labels, np.int64)
  out = np.zeros((len(labels), num_classes), np.float32)
  np.put_along_axis(out, labels.reshape(len(labels), -1), 1.0, axis=1)
  return out


def train_probe(
  model,
  x_train,
  y_train,
  x_test,
  y_test,
  *,
  steps: int,
  batch_size: int,
  lr: float,
  seed: int = 0,
  prepare: Callable | None = None,
) -> dict:
  """Trains a multi-label probe (a Flax module giving logits [B, K]) and scores it on held-out data.

  Sigmoid cross-entropy and Adam on `steps` random batches (drawn with replacement), then the
  test predictions (`logits > 0`) in padded batches, timed after compiling.

  Args:
    model: the probe; `model.apply(params, prepare(x))` gives logits [B, K].
    x_train, y_train: host inputs and multi-hot targets [N, K] (see `multi_hot`).
    x_test, y_test: the same for scoring.
    steps, batch_size, lr: the optimisation.
    seed: seeds the init and the batch draws.
    prepare: maps a host batch to the model input inside the jitted functions (default as is).

  Returns:
    `label_accuracy` (each label), `set_accuracy` (every label of an example right),
    `final_train_loss`, `train_seconds`, `seconds_per_example` (test inference), `input_shape`
    and `params` (the probe's parameter count).
  """
  import time

  import jax.numpy as jnp
  import optax

  prep = prepare or jnp.asarray
  params = model.init(jax.random.key(seed), prep(x_train[:1]))
  tx = optax.adam(lr)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, x, y):
    loss = lambda p: optax.sigmoid_binary_cross_entropy(model.apply(p, prep(x)), y).mean()
    val, grads = jax.value_and_grad(loss)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, val

  predict = jax.jit(lambda p, x: model.apply(p, prep(x)) > 0)
  rng = np.random.default_rng(seed)
  b = min(batch_size, len(x_train))
  jax.block_until_ready(step(params, opt, x_train[:b], y_train[:b]))  # compile (result discarded)
  t0, val = time.perf_counter(), jnp.nan
  for _ in range(steps):
    idx = rng.integers(0, len(x_train), b)
    params, opt, val = step(params, opt, x_train[idx], y_train[idx])
  jax.block_until_ready(params)
  train_s = time.perf_counter() - t0
  predict(params, pad_batch(x_test[:batch_size], batch_size)[0]).block_until_ready()  # compile
  t0 = time.perf_counter()
  pred = map_batches(lambda x: predict(params, x), x_test, batch_size)
  infer_s = (time.perf_counter() - t0) / len(x_test)
  truth = np.asarray(y_test) > 0.5
  return {
    "label_accuracy": float((pred == truth).mean()),
    "set_accuracy": float((pred == truth).all(1).mean()),
    "final_train_loss": float(val),
    "train_seconds": round(train_s, 2),
    "seconds_per_example": infer_s,
    "input_shape": list(np.shape(x_train)[1:]),
    "params": int(sum(np.size(a) for a in jax.tree.leaves(params))),
  }


class ClipProbe(nn.Module):
  """A small multi-label probe on clips [B, T, H, W, C]: per frame `downsample` stride-2 convs (for
  pixels; widths ..., width/4, width/2, width) and two 3x3 convs, max over time and space, linear."""

  width: int = 32
  downsample: int = 0
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    """Clips x [B, T, H, W, C] -> class logits [B, num_classes]."""
    b, t = x.shape[:2]
    h = x.reshape((b * t,) + x.shape[2:])
    for i in range(self.downsample):
      h = nn.relu(nn.Conv(max(self.width >> (self.downsample - 1 - i), 1), (3, 3), strides=2)(h))
    h = nn.relu(nn.Conv(self.width, (3, 3))(h))
    h = nn.relu(nn.Conv(self.width, (3, 3))(h))
    return nn.Dense(self.num_classes)(h.reshape((b, -1, self.width)).max(1))  # presence: max
