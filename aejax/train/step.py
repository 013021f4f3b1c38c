"""The pure train step, and the runner that places it on devices."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from aejax.train import parallel as par
from aejax.train.state import TrainState, split_rngs

# loss_fn(model, variables, batch, rngs, train) -> (loss, metrics, new_model_state)
LossFn = Callable[[nn.Module, dict, dict, dict, bool], tuple[jax.Array, dict, dict]]
PARALLEL_MODES = ("jit", "pmap", "none")


_global_norm = (
  optax.tree.norm if hasattr(optax, "tree") and hasattr(optax.tree, "norm") else (optax.global_norm)
)


def _with_axis_name(model: nn.Module, axis_name: str | None) -> nn.Module:
  if axis_name and hasattr(model, "axis_name"):
    return model.clone(axis_name=axis_name)
  return model


def _train_body(model, loss_fn: LossFn, tx, ema_decay, axis_name):
  """The step as a pure function; `axis_name` set only under pmap."""

  def train_step(state: TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    if axis_name:
      rng = jax.random.fold_in(rng, lax.axis_index(axis_name))
    rngs = split_rngs(rng)

    def compute(params):
      variables = {"params": params}
      if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
      loss, metrics, new_model_state = loss_fn(model, variables, batch, rngs, True)
      return loss, (metrics, new_model_state)

    (loss, (metrics, new_model_state)), grads = jax.value_and_grad(compute, has_aux=True)(state.params)
    metrics = dict(metrics)
    metrics.setdefault("loss", loss)
    if axis_name:
      grads = lax.pmean(grads, axis_name)
      metrics = lax.pmean(metrics, axis_name)
    metrics["grad_norm"] = _global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None and ema_decay is not None:
      ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
    new_state = state.replace(
      step=state.step + 1,
      params=params,
      opt_state=opt_state,
      batch_stats=new_model_state.get("batch_stats", state.batch_stats),
      ema_params=ema,
    )
    metrics = jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), metrics)
    return new_state, metrics

  return train_step


class StepRunner:
  """A jitted train step (state donated) plus the placement it expects.

  Call it as `state, metrics = runner(state, batch, rng)` with a state from `put_state` and a host
  batch (numpy); `get_state` brings the state back as one (replicated) copy for checkpoints and apps.
  """

  def __init__(self, fn, parallel: str, mesh):
    if parallel not in PARALLEL_MODES:
      raise ValueError(f"parallel must be one of {PARALLEL_MODES}, got {parallel!r}")
    self.parallel = parallel
    self.mesh = mesh
    if parallel == "pmap":
      self._fn = jax.pmap(fn, axis_name=par.AXIS, in_axes=(0, 0, None), donate_argnums=(0,))
    elif parallel == "jit":
      repl = NamedSharding(mesh, P())
      # The batch keeps the sharding `put_batch` gave it (first axis over "data", scalars replicated).
      self._fn = jax.jit(fn, in_shardings=(repl, None, repl), out_shardings=(repl, repl), donate_argnums=(0,))
    else:
      self._fn = jax.jit(fn, donate_argnums=(0,))

  def put_state(self, state):
    """Places a host state as the step expects it (replicated, or one copy per device)."""
    if self.parallel == "pmap":
      return par.pmap_replicate(state)
    if self.parallel == "jit":
      return par.replicate_on_mesh(state, self.mesh)
    return jax.device_put(state)

  def get_state(self, state):
    """One copy of a placed state (for checkpoints, evaluation and apps)."""
    return par.unreplicate(state) if self.parallel == "pmap" else state

  def put_batch(self, batch):
    """Places a process-local host batch: sharded over the mesh, or split per device."""
    if self.parallel == "pmap":
      return par.pmap_split(batch)
    if self.parallel == "jit":
      return par.shard_batch(batch, self.mesh)
    return batch

  def __call__(self, state, batch, rng):
    """One step: `(state, metrics)`; `state` is donated."""
    return self._fn(state, self.put_batch(batch), rng)


def make_train_step(
  model: nn.Module,
  loss_fn: LossFn,
  tx: optax.GradientTransformation,
  *,
  parallel: str = "jit",
  mesh=None,
  ema_decay: float | None = None,
) -> StepRunner:
  """Builds `train_step(state, batch, rng) -> (state, metrics)`, jitted once with donated state.

  Args:
    model: the Flax module (closed over, never part of the state).
    loss_fn: `loss_fn(model, variables, batch, rngs, train) -> (loss, metrics, new_model_state)`.
    tx: the optax optimiser.
    parallel: "jit" (sharded jit over a `("data",)` mesh, default), "pmap", or "none".
    mesh: the mesh for "jit"; all devices by default.
    ema_decay: when set (and the state has `ema_params`), updates the parameter EMA every step.
  """
  axis = par.AXIS if parallel == "pmap" else None
  model = _with_axis_name(model, axis)
  mesh = mesh if mesh is not None or parallel != "jit" else par.make_mesh()
  return StepRunner(_train_body(model, loss_fn, tx, ema_decay, axis), parallel, mesh)
