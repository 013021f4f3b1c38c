"""Restoring for evaluation and apps: a checkpoint path's folder and step, its model variables,
its run's `config.json` (which decides the model) and `run.json` (which experiment and model wrote
it), shape checks with one-line errors, and `restore_for_eval`, the one restore path of every
eval and app mode. Saving and resuming training live in `aejax.train.checkpoint`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from aejax import io
from aejax.train.checkpoint import RUN_RECORD, CheckpointError, CheckpointIO, _unreadable, check_shapes


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
  ckio = CheckpointIO(directory, create=False)
  try:
    return ckio.restore(abstract_state, step=step if step is not None else found_step)
  finally:
    ckio.close()


def restore_variables(path, *, step: int | None = None) -> dict:
  """The model variables (`params`, and `batch_stats` if any) of a checkpoint, for apps.

  Needs no optimiser or abstract state: the saved tree is read as it is. `path` is a workdir
  (latest step), a checkpoints folder or a step folder.
  """
  directory, found_step = resolve_checkpoint(path)
  ckio = CheckpointIO(directory, create=False)
  try:
    step = step if step is not None else (found_step if found_step is not None else ckio.latest_step())
    if step is None:
      raise CheckpointError(f"{directory}: no checkpoint to restore")
    try:
      restored = ckio.mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    except Exception as e:  # noqa: BLE001 - a step folder with missing or broken files
      raise _unreadable(directory / str(step), e) from None
  finally:
    ckio.close()
  state = restored["state"]
  out = {"params": state["params"]}
  if state.get("batch_stats"):
    out["batch_stats"] = state["batch_stats"]
  return out


def find_run_config(path) -> Path | None:
  """The `config.json` of the run that wrote checkpoint `path`: in it or up to 3 folders above."""
  p = Path(path).expanduser().absolute()
  for folder in (p, *p.parents[:3]):
    if (folder / "config.json").is_file():
      return folder / "config.json"
  return None


def _merge(dst, src: dict, prefix: str = "") -> None:
  """Copies `src` (JSON) into ConfigDict `dst`; JSON lists become tuples where `dst` has tuples."""
  for k, v in src.items():
    if k not in dst:
      continue  # a key this version no longer has: ignored, the current default stands
    if isinstance(v, dict) and hasattr(dst[k], "items"):
      _merge(dst[k], v, f"{prefix}{k}.")
    elif isinstance(dst[k], tuple) and isinstance(v, list):
      dst[k] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
    else:
      dst[k] = v


def run_config(path, config, keys: Sequence[str] = ("model",)):
  """`config` with `keys` taken from the `config.json` of the run that wrote checkpoint `path`.

  A key names a whole section ("model") or one value ("data.image_size"). JSON lists become
  tuples where the current value is a tuple. Returns a copy, or `config` itself when the run has
  no `config.json` (e.g. a bare step folder copied elsewhere).
  """
  import ml_collections

  found = find_run_config(path)
  if found is None:
    return config
  try:
    saved = json.loads(found.read_text())
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{found}: unreadable run config ({type(e).__name__})") from None
  config = ml_collections.ConfigDict(config.to_dict())
  for key in keys:
    *parents, leaf = key.split(".")
    src, dst = saved, config
    try:
      for k in parents:
        src, dst = src[k], dst[k]
      value = src[leaf]
    except (KeyError, TypeError):
      raise CheckpointError(
        f"{found}: the run's config has no {key!r}; was it written by another experiment?"
      ) from None
    if isinstance(value, dict):
      _merge(dst[leaf], value)
    else:
      _merge(dst, {leaf: value})
  return config


def model_name(model) -> str:
  """`module.Class` of a model (or a model class), as `run.json` records it."""
  cls = model if isinstance(model, type) else type(model)
  return f"{cls.__module__}.{cls.__qualname__}"


def read_run_record(path) -> tuple[Path, dict] | None:
  """`(file, record)` of the `run.json` beside the `config.json` of checkpoint `path`, if any."""
  p = Path(path).expanduser().absolute()
  for folder in (p, *p.parents[:3]):
    f = folder / RUN_RECORD
    if f.is_file():
      try:
        return f, json.loads(f.read_text())
      except (OSError, ValueError) as e:
        raise CheckpointError(f"{f}: unreadable run record ({type(e).__name__})") from None
    if (folder / "config.json").is_file():
      return None  # an older run: a config.json without a record
  return None


def check_run_record(path, *, experiment: str | None, model: str | None) -> None:
  """Raises a one-line CheckpointError when the run at `path` was written by another experiment
  or model class (`None` skips that check; a run without `run.json` passes)."""
  found = read_run_record(path)
  if found is None:
    return
  where, rec = found
  theirs_exp, theirs_model = rec.get("experiment"), rec.get("model")
  if experiment and theirs_exp and theirs_exp != experiment:
    raise CheckpointError(
      f"{where.parent}: a run of {theirs_exp} (model {theirs_model}), not of "
      f"{experiment} (model {model or '?'}); pass a checkpoint of {experiment}"
    )
  if model and theirs_model and theirs_model != model:
    raise CheckpointError(
      f"{where.parent}: a run of model {theirs_model}, not {model} "
      f"({experiment or theirs_exp or 'this experiment'}); pass a checkpoint of {model}"
    )


def restore_for_eval(
  path,
  config,
  *,
  build_model: Callable,
  example: Callable,
  keys: Sequence[str] = ("model",),
  init_kwargs: dict | None = None,
  step: int | None = None,
):
  """Restores a checkpoint for evaluation and apps: `(model, variables, config)`.

  Args:
    path: a workdir (latest step), a checkpoints folder or one step folder.
    config: the experiment's current config; its `keys` are replaced by the run's `config.json`
      (so the model is the one that was trained, whatever the command line's preset).
    build_model: `build_model(config) -> nn.Module`.
    example: `example(config) -> example input(s)` for `model.init` (only shapes matter; a tuple
      is splatted).
    keys: the config entries that define the trained model (sections or dotted values).
    init_kwargs: extra keyword arguments for `model.init`.
    step: a step to restore instead of the latest (or the step folder's).

  Returns:
    The model, its variables (`params`, and `batch_stats` if any, as host arrays) and the config.

  Raises:
    CheckpointError: one line naming the checkpoint and the problem: another experiment's or
      model's run (from its `run.json`), a run config this model cannot be built from, or the
      first parameter that does not fit.
  """
  from aejax.cli import current_experiment
  from aejax.train.state import split_rngs

  resolve_checkpoint(path)  # a missing path or a folder without checkpoints: say so first
  check_run_record(path, experiment=current_experiment(), model=model_name(build_model(config)))
  try:
    config = run_config(path, config, keys)
    model = build_model(config)
    ex = example(config)
    ex = ex if isinstance(ex, tuple) else (ex,)
    abstract = jax.eval_shape(
      lambda: model.init(split_rngs(jax.random.key(0)), *ex, train=False, **(init_kwargs or {}))
    )
  except CheckpointError:
    raise
  except (TypeError, KeyError, ValueError, AttributeError) as e:  # an older run without run.json
    found = find_run_config(path)
    raise CheckpointError(
      f"{found or path}: this model cannot be built from the run's config ({type(e).__name__}: "
      f"{io.first_line(e)}); was the checkpoint written by another experiment?"
    ) from None
  variables = restore_variables(path, step=step)
  directory, found_step = resolve_checkpoint(path)
  check_shapes(variables, abstract, directory if found_step is None else directory / str(found_step))
  variables = jax.tree.map(np.asarray, variables)
  return model, variables, config
