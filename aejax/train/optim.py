"""Optimisers: one optax choice for every experiment (SGD, Adam, AdamW) with schedules."""

from __future__ import annotations

import jax
import numpy as np
import optax
from flax import traverse_util


def decay_mask(params):
  """True for leaves that get weight decay: kernels and embeddings, not biases/norms/tokens."""
  flat = traverse_util.flatten_dict(params, sep="/")
  mask = {}
  for path, leaf in flat.items():
    name = path.split("/")[-1]
    is_norm = any(
      ("norm" in part.lower() or part.lower().startswith(("bn", "ln"))) for part in path.split("/")[:-1]
    )
    mask[path] = not (
      name in ("bias", "scale")
      or "token" in name.lower()
      or name.lower().startswith("pos_embed")
      or is_norm
      or leaf.ndim <= 1
    )
  return traverse_util.unflatten_dict(mask, sep="/")


def make_schedule(
  lr: float,
  schedule: str = "constant",
  *,
  warmup_steps: int = 0,
  total_steps: int | None = None,
  end_lr: float = 0.0,
) -> optax.Schedule:
  """Constant, cosine or warm-up + cosine learning-rate schedules (per step)."""
  if schedule == "constant":
    if warmup_steps:
      return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup_steps), optax.constant_schedule(lr)], [warmup_steps]
      )
    return optax.constant_schedule(lr)
  if total_steps is None or total_steps <= 0:
    raise ValueError(f"schedule {schedule!r} needs total_steps > 0")
  if schedule == "cosine":
    return optax.cosine_decay_schedule(lr, total_steps, alpha=end_lr / lr if lr else 0.0)
  if schedule == "warmup_cosine":
    warmup_steps = min(warmup_steps, total_steps - 1)
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup_steps, 1), total_steps, end_lr)
  raise ValueError(f"unknown schedule {schedule!r}: use constant, cosine or warmup_cosine")


def make_optimizer(
  name: str = "adam",
  lr: float = 1e-3,
  *,
  momentum: float | None = None,
  nesterov: bool = False,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  weight_decay: float = 0.0,
  schedule: str = "constant",
  warmup_steps: int = 0,
  total_steps: int | None = None,
  end_lr: float = 0.0,
  grad_clip: float | None = None,
) -> optax.GradientTransformation:
  """Builds the optimiser named by `name`.

  Args:
    name: "sgd" (plain, or with `momentum`), "adam" or "adamw".
    lr: peak learning rate.
    momentum: SGD momentum (None or 0 = plain SGD).
    nesterov: Nesterov momentum for SGD.
    b1, b2, eps: Adam parameters.
    weight_decay: decoupled weight decay (AdamW; for SGD and Adam it is added to the gradient),
      masked off biases, norm parameters, tokens and position embeddings.
    schedule: "constant", "cosine" or "warmup_cosine".
    warmup_steps, total_steps, end_lr: schedule parameters.
    grad_clip: clip the global gradient norm to this value when set.

  Returns:
    The optimiser under `optax.inject_hyperparams`: its state's `hyperparams["learning_rate"]` is
    the learning rate of the last step (read it with `learning_rate(opt_state)`).
  """
  sched = make_schedule(lr, schedule, warmup_steps=warmup_steps, total_steps=total_steps, end_lr=end_lr)
  name = name.lower()
  if name not in ("sgd", "adam", "adamw"):
    raise ValueError(f"unknown optimizer {name!r}: use sgd, adam or adamw")

  def build(learning_rate):
    decay = optax.add_decayed_weights(weight_decay, decay_mask) if weight_decay else None
    if name == "sgd":
      parts = [decay, optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)]
    elif name == "adam":
      parts = [decay, optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)]
    else:
      parts = [optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)]
    parts = [optax.clip_by_global_norm(grad_clip) if grad_clip else None, *parts]
    parts = [p for p in parts if p is not None]
    return optax.chain(*parts) if len(parts) > 1 else parts[0]

  # The schedule's value of the last step lives in `opt_state.hyperparams["learning_rate"]`.
  return optax.inject_hyperparams(build)(learning_rate=sched)


def learning_rate(opt_state) -> float | None:
  """The learning rate of the last step, from a `make_optimizer` state (None for other optimisers).

  Works on a host, replicated or pmapped (one copy per device) state.
  """
  hyperparams = getattr(opt_state, "hyperparams", None)
  if not isinstance(hyperparams, dict) or "learning_rate" not in hyperparams:
    return None
  return float(np.asarray(jax.device_get(hyperparams["learning_rate"])).reshape(-1)[0])
