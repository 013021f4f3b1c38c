"""Orbax checkpoints of {state, data iterator}; restore with clear errors."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(ValueError):
  """A checkpoint that cannot be found or does not fit the model (one-line message)."""


def _has_iterator_state(it) -> bool:
  return it is not None and hasattr(it, "get_state") and hasattr(it, "set_state")


def _keystr(path) -> str:
  parts = []
  for k in path:
    parts.append(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))))
  return "/".join(parts)


def _abstract(tree):
  """ShapeDtypeStructs with a sharding orbax can restore into (replicated on device 0's mesh)."""
  def leaf(x):
    sharding = getattr(x, "sharding", None)
    if sharding is None:
      sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)

  return jax.tree.map(leaf, tree)


class CheckpointIO:
  """Saves and restores `{state, data}` under `directory/<step>` with Orbax (keeps the last K)."""

  def __init__(self, directory, *, max_to_keep: int = 3, create: bool = True):
    self.directory = Path(directory).absolute()
    if not create and not self.directory.is_dir():
      raise CheckpointError(f"{self.directory}: no checkpoint folder")
    self.mngr = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create))

  def latest_step(self) -> int | None:
    return self.mngr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.mngr.all_steps())

  def save(self, step: int, state, data_iter=None) -> None:
    args = {"state": ocp.args.StandardSave(state)}
    if _has_iterator_state(data_iter):
      import grain

      args["data"] = grain.checkpoint.CheckpointSave(data_iter)
    self.mngr.save(int(step), args=ocp.args.Composite(**args), force=True)

  def wait(self) -> None:
    self.mngr.wait_until_finished()

  def _check_shapes(self, step: int, abstract_state) -> None:
    """Raises a one-line CheckpointError naming the first parameter whose shape differs."""
    state_dir = self.directory / str(step) / "state"
    try:
      from etils import epath

      saved = ocp.StandardCheckpointHandler().metadata(epath.Path(state_dir)).tree
    except Exception as e:  # noqa: BLE001 - unreadable metadata: report the folder, not a traceback
      raise CheckpointError(f"{state_dir}: unreadable checkpoint ({type(e).__name__})") from None
    model_part = lambda name: name.startswith(("params/", "batch_stats/"))
    saved_flat = {
        _keystr(p): v
        for p, v in jax.tree_util.tree_flatten_with_path(
            saved, is_leaf=lambda x: hasattr(x, "shape"))[0] if model_part(_keystr(p))}
    want_flat = {
        _keystr(p): v
        for p, v in jax.tree_util.tree_flatten_with_path(abstract_state)[0]
        if model_part(_keystr(p))}
    for name, want in want_flat.items():
      got = saved_flat.get(name)
      if got is None:
        raise CheckpointError(
            f"{self.directory / str(step)}: checkpoint has no parameter {name} (model shape "
            f"{tuple(want.shape)}); was it saved by another model or config?")
      if tuple(got.shape) != tuple(want.shape):
        raise CheckpointError(
            f"{self.directory / str(step)}: parameter {name} has shape {tuple(got.shape)} in the "
            f"checkpoint but {tuple(want.shape)} in the model")
    extra = sorted(set(saved_flat) - set(want_flat))
    if extra:
      raise CheckpointError(
          f"{self.directory / str(step)}: checkpoint has parameters the model lacks, e.g. {extra[0]}")

  def restore(self, abstract_state, step: int | None = None, data_iter=None):
    """Restores the state (into `abstract_state`'s shapes) and, if given, the data iterator."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"{self.directory}: no checkpoint to restore")
    abstract_state = _abstract(abstract_state)
    self._check_shapes(step, abstract_state)
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if _has_iterator_state(data_iter) and (self.directory / str(step) / "data").exists():
      import grain

      args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = self.mngr.restore(step, args=ocp.args.Composite(**args))
    return restored["state"]

  def close(self) -> None:
    self.mngr.wait_until_finished()
    self.mngr.close()


def resolve_checkpoint(path) -> tuple[Path, int | None]:
  """Maps a workdir, a checkpoints folder or one step folder to (checkpoints folder, step)."""
  path = Path(path).expanduser()
  if not path.exists():
    raise CheckpointError(f"{path}: checkpoint path does not exist")
  if (path / "checkpoints").is_dir():
    return (path / "checkpoints").absolute(), None
  if path.name.isdigit() and (path / "state").exists():
    return path.parent.absolute(), int(path.name)
  if any(p.name.isdigit() for p in path.iterdir() if p.is_dir()):
    return path.absolute(), None
  raise CheckpointError(f"{path}: not a workdir, checkpoints folder or step folder")


def restore_state(path, abstract_state, *, step: int | None = None):
  """Restores a state from a workdir (latest step), a checkpoints folder or a step folder."""
  directory, found_step = resolve_checkpoint(path)
  io = CheckpointIO(directory, create=False)
  try:
    return io.restore(abstract_state, step=step if step is not None else found_step)
  finally:
    io.close()


def restore_variables(path, *, step: int | None = None) -> dict:
  """The model variables (`params`, and `batch_stats` if any) of a checkpoint, for apps.

  Needs no optimiser or abstract state: the saved tree is read as it is. `path` is a workdir
  (latest step), a checkpoints folder or a step folder.
  """
  directory, found_step = resolve_checkpoint(path)
  io = CheckpointIO(directory, create=False)
  try:
    step = step if step is not None else (found_step if found_step is not None else io.latest_step())
    if step is None:
      raise CheckpointError(f"{directory}: no checkpoint to restore")
    restored = io.mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  finally:
    io.close()
  state = restored["state"]
  out = {"params": state["params"]}
  if state.get("batch_stats"):
    out["batch_stats"] = state["batch_stats"]
  return out
