"""The train state: arrays only; the model and optimiser are closed over by the step."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

RNG_STREAMS = ("params", "dropout", "mask", "sample", "noise")


@flax.struct.dataclass
class TrainState:
  """Everything a step updates. `batch_stats` is `{}` for models without BatchNorm."""

  step: jax.Array
  params: Any
  opt_state: Any
  batch_stats: Any = flax.struct.field(default_factory=dict)
  ema_params: Any = None

  @property
  def variables(self) -> dict:
    """The variables dict for `model.apply`."""
    v = {"params": self.params}
    if self.batch_stats:
      v["batch_stats"] = self.batch_stats
    return v


def split_rngs(rng: jax.Array, streams=RNG_STREAMS) -> dict[str, jax.Array]:
  """One independent key per named RNG stream."""
  return {name: jax.random.fold_in(rng, i) for i, name in enumerate(streams)}


def init_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  rng: jax.Array,
  *init_args,
  ema: bool = False,
  **init_kwargs,
) -> TrainState:
  """Initialises the model with `train=False` on example inputs and builds the state.

  Args:
    model: a Flax Linen module whose `__call__` takes `train` as a keyword.
    tx: the optimiser.
    rng: the root key; each RNG stream gets its own fold.
    *init_args: example inputs (only their shapes matter).
    ema: whether to keep an exponential moving average of the parameters.
    **init_kwargs: extra keyword arguments for `model.init`.
  """
  variables = model.init(split_rngs(rng), *init_args, train=False, **init_kwargs)
  variables = (
    flax.core.unfreeze(variables) if isinstance(variables, flax.core.FrozenDict) else dict(variables)
  )
  params = variables.pop("params")
  batch_stats = variables.pop("batch_stats", {})
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=tx.init(params),
    batch_stats=batch_stats,
    ema_params=jax.tree.map(jnp.copy, params) if ema else None,
  )


def apply_model(
  model: nn.Module, variables: dict, *args, rngs=None, train: bool = False, method=None, **kwargs
):
  """Runs the model; returns `(output, new_model_state)`.

  When training a model with BatchNorm the `batch_stats` collection is mutable and its new value is
  returned in `new_model_state`; otherwise `new_model_state` is `{}`.
  """
  if train and "batch_stats" in variables:
    out, new_state = model.apply(
      variables, *args, rngs=rngs, train=train, method=method, mutable=["batch_stats"], **kwargs
    )
    return out, dict(new_state)
  out = model.apply(variables, *args, rngs=rngs, train=train, method=method, **kwargs)
  return out, {}
