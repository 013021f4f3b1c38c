"""Orbax checkpoints of {state, data iterator}; restore with clear errors.

Apps and evaluation restore through `restore_for_eval(path, config, ...)`: it checks the run's
`run.json` (which experiment and model wrote it), reads its `config.json`, rebuilds the model from
it and checks every parameter's shape. Saves that fail on a full disk or an I/O error become a
one-line `CheckpointError` naming the folder and the last complete checkpoint, and Orbax's
half-written `*.orbax-checkpoint-tmp*` folders are removed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from aejax import io

RUN_RECORD = "run.json"  # beside config.json: the experiment and the model class that wrote the run


class CheckpointError(ValueError):
  """A checkpoint that cannot be found or does not fit the model (one-line message)."""


def _has_iterator_state(it) -> bool:
  return it is not None and hasattr(it, "get_state") and hasattr(it, "set_state")


def _abstract(tree):
  """ShapeDtypeStructs with a sharding orbax can restore into (replicated on device 0's mesh)."""

  def leaf(x):
    sharding = getattr(x, "sharding", None)
    if sharding is None:
      sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)

  return jax.tree.map(leaf, tree)


class CheckpointIO:
  """Saves and restores `{state, data}` under `directory/<step>` with Orbax (keeps the last K).

  A save that fails for lack of space or an I/O error (now or when the asynchronous write finishes)
  raises a one-line CheckpointError naming the folder and the last complete step, after removing
  the half-written temporary folder; the complete checkpoints stay restorable.
  """

  def __init__(self, directory, *, max_to_keep: int = 3, create: bool = True):
    self.directory = Path(directory).absolute()
    if not create and not self.directory.is_dir():
      raise CheckpointError(f"{self.directory}: no checkpoint folder")
    if create:
      io.check_workdir(self.directory)
    self.failed = False
    self._pending: int | None = None
    if create:  # the writer's folder (fit holds the workdir lock): leftovers of a crash go
      self.remove_temporaries()
      _install_log_filter()
    try:
      self.mngr = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
      )
    except OSError as e:
      raise CheckpointError(f"{io.describe_os_error(e, self.directory)} (checkpoint folder)") from None

  def latest_step(self) -> int | None:
    """The newest saved step, or None when there is none."""
    return self.mngr.latest_step()

  def complete_steps(self) -> list[int]:
    """The steps whose folders are complete on disk (finalised by Orbax), oldest first."""
    if not self.directory.is_dir():
      return []
    return sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit() and p.is_dir())

  def remove_temporaries(self) -> list[Path]:
    """Deletes Orbax's `*.orbax-checkpoint-tmp*` folders (left by a crash or a full disk)."""
    if jax.process_index() != 0 or not self.directory.is_dir():
      return []
    gone = [p for p in self.directory.iterdir() if ".orbax-checkpoint-tmp" in p.name]
    for p in gone:
      shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return gone

  def _failure(self, e: BaseException | None, step: int | None, reason: str = "") -> CheckpointError:
    """The one-line error of a failed save (and the clean-up of its temporary folder)."""
    _quiet_closed_loops()
    self.failed = True
    self.remove_temporaries()
    done = [s for s in self.complete_steps() if s != step]
    last = (
      f"last complete checkpoint: step {done[-1]} in {self.directory}"
      if done
      else "no complete checkpoint yet"
    )
    where = self.directory / str(step) if step is not None else self.directory
    reason = reason or ("no space left on device" if io.is_no_space(e) else io.first_line(e))
    return CheckpointError(
      f"{where}: checkpoint not written ({reason}); {last}; free space and run "
      "the same command again to resume"
    )

  def _guard(self, fn, step: int | None):
    try:
      return fn()
    except Exception as e:  # noqa: BLE001 - disk and I/O failures become one line
      if isinstance(e, CheckpointError) or not (io.is_disk_error(e) or isinstance(e, OSError)):
        raise
      raise self._failure(e, step) from None

  def save(self, step: int, state, data_iter=None) -> None:
    """Saves `state` (and a Grain iterator's position) as step `step`, asynchronously."""
    args = {"state": ocp.args.StandardSave(state)}
    if _has_iterator_state(data_iter):
      import grain

      args["data"] = grain.checkpoint.CheckpointSave(data_iter)
    self._guard(self.wait, self._pending)  # a previous asynchronous save's failure surfaces here
    self._check_space(int(step), state)
    self._pending = int(step)
    self._guard(lambda: self.mngr.save(int(step), args=ocp.args.Composite(**args), force=True), int(step))

  def _check_space(self, step: int, state) -> None:
    """Refuses a save that cannot fit: the free space must exceed the last checkpoint's size (or
    the state's bytes) by 10 % + 256 KiB. Checked before Orbax starts, so a full disk leaves no
    half-written folder and no background-thread noise."""
    if jax.process_index() != 0:
      return
    need = sum(
      int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize
      for x in jax.tree.leaves(state)
      if hasattr(x, "dtype")
    )
    done = self.complete_steps()
    if done:
      need = max(need, _folder_bytes(self.directory / str(done[-1])))
    need = int(need * 1.1) + (1 << 18)
    free = _free_bytes(self.directory)
    if free < need:
      raise self._failure(
        None, step, f"no space left on device: {free / 1e6:.2f} MB free, about {need / 1e6:.2f} MB needed"
      )

  def wait(self) -> None:
    """Blocks until pending saves are written (raises a one-line error if one failed)."""
    self._guard(self.mngr.wait_until_finished, self._pending)
    self._pending = None

  def _check_shapes(self, step: int, abstract_state) -> None:
    """Raises a one-line CheckpointError naming the first parameter whose shape differs."""
    state_dir = self.directory / str(step) / "state"
    try:
      from etils import epath

      saved = ocp.StandardCheckpointHandler().metadata(epath.Path(state_dir)).tree
    except Exception as e:  # noqa: BLE001 - unreadable metadata: report the folder, not a traceback
      raise CheckpointError(f"{state_dir}: unreadable checkpoint ({type(e).__name__})") from None
    check_shapes(saved, abstract_state, self.directory / str(step))

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
    try:
      restored = self.mngr.restore(step, args=ocp.args.Composite(**args))
    except ValueError as e:  # e.g. an optimiser state of another layout (older aejax, other tx)
      raise CheckpointError(
        f"{self.directory / str(step)}: the saved train state does not fit this run's "
        f"({io.first_line(e)}); use a new workdir, or read only the model with restore_variables"
      ) from None
    except Exception as e:  # noqa: BLE001 - missing or broken files (TensorStore raises Exception)
      raise _unreadable(self.directory / str(step), e) from None
    return restored["state"]

  def close(self) -> None:
    """Waits for pending saves and releases the manager (after a failed save, quietly)."""
    try:
      if self.failed:
        try:
          self.mngr.wait_until_finished()
        except Exception:  # noqa: BLE001 - already reported as a CheckpointError
          pass
      else:
        self.wait()
    finally:
      try:
        self.mngr.close()
      except Exception:  # noqa: BLE001
        if not self.failed:
          raise
      if self.failed:
        self.remove_temporaries()


def _quiet_closed_loops() -> None:
  """After a failed Orbax read or write, TensorStore callbacks still fire into the event loop
  Orbax has closed and print `RuntimeError: Event loop is closed` tracebacks through
  `sys.unraisablehook`; this drops those (and only those), so the one-line error stays alone."""
  old = sys.unraisablehook
  if getattr(old, "_aejax_quiet", False):
    return

  def hook(unraisable):
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc):
      return
    old(unraisable)

  hook._aejax_quiet = True
  sys.unraisablehook = hook


class _DropOrbaxDiskErrors:
  """A logging filter: Orbax's background threads log a full disk as ERROR with a traceback before
  the failure reaches `CheckpointIO`, which reports it as one line; those records are dropped."""

  def filter(self, record) -> bool:
    if "orbax" not in (record.pathname or ""):
      return True
    text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
    return not any(s in text for s in ("RESOURCE_EXHAUSTED", "No space left", "Disk quota"))


def _install_log_filter() -> None:
  import logging

  for name in ("absl", ""):
    logger = logging.getLogger(name)
    if not any(isinstance(f, _DropOrbaxDiskErrors) for f in logger.filters):
      logger.addFilter(_DropOrbaxDiskErrors())
    for handler in logger.handlers:
      if not any(isinstance(f, _DropOrbaxDiskErrors) for f in handler.filters):
        handler.addFilter(_DropOrbaxDiskErrors())


def _unreadable(where: Path, e: BaseException) -> CheckpointError:
  """The one-line error of a checkpoint whose files are missing or broken."""
  _quiet_closed_loops()
  text = str(e)
  if "Encountered error while reading" in text or "NOT_FOUND" in text:
    detail = "a data file is missing or corrupt"
  else:
    detail = f"{type(e).__name__}: {io.first_line(e, 120)}"
  return CheckpointError(f"{where}: unreadable checkpoint ({detail}); restore another step or retrain")


def _folder_bytes(folder: Path) -> int:
  """The total size of the files under `folder`."""
  return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _free_bytes(folder: Path) -> int:
  """Free bytes on the file system of `folder` (for unprivileged users; unknown: a huge number)."""
  try:
    return shutil.disk_usage(folder).free
  except OSError:
    return 1 << 62


def _model_leaves(tree) -> dict:
  """{"params/a/b": leaf} for the `params` and `batch_stats` leaves of a state or variables tree."""
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
  out = {}
  for path, leaf in flat:
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    if name.startswith(("params/", "batch_stats/")):
      out[name] = leaf
  return out


def check_shapes(saved, wanted, where) -> None:
  """Raises a one-line CheckpointError naming the first parameter whose shape differs.

  `saved` and `wanted` are state or variables trees (arrays or ShapeDtypeStructs); only their
  `params` and `batch_stats` leaves are compared. `where` names the checkpoint in the message.
  """
  saved_flat, want_flat = _model_leaves(saved), _model_leaves(wanted)
  for name, want in want_flat.items():
    got = saved_flat.get(name)
    if got is None:
      raise CheckpointError(
        f"{where}: checkpoint has no parameter {name} (model shape {tuple(want.shape)}); was it "
        "saved by another model or config?"
      )
    if tuple(got.shape) != tuple(want.shape):
      raise CheckpointError(
        f"{where}: parameter {name} has shape {tuple(got.shape)} in the checkpoint but "
        f"{tuple(want.shape)} in the model"
      )
  extra = sorted(set(saved_flat) - set(want_flat))
  if extra:
    raise CheckpointError(f"{where}: checkpoint has parameters the model lacks, e.g. {extra[0]}")
