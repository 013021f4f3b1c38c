"""`fit()`: the one training loop every experiment uses."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from clu import metrics as clu_metrics
from clu import parameter_overview

from aejax import io
from aejax.train.checkpoint import RUN_RECORD, CheckpointError, CheckpointIO
from aejax.train.optim import learning_rate
from aejax.train.restore import model_name
from aejax.train.step import make_train_step
from aejax.train.writer import Writer


class TrainingDiverged(RuntimeError):
  """A non-finite loss; the message is one line naming the step and the last good checkpoint."""


def _fmt_time(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class _Progress:
  """One line per log step: step, metrics, steps/s and ETA (no terminal tricks, logs stay clean)."""

  def __init__(self, total: int, start: int):
    self.total, self.start = total, start
    self.t0 = time.perf_counter()
    self.last_t, self.last_step = self.t0, start

  def line(self, step: int, metrics: dict) -> str:
    now = time.perf_counter()
    rate = (step - self.last_step) / max(now - self.last_t, 1e-9)
    overall = (step - self.start) / max(now - self.t0, 1e-9)
    self.last_t, self.last_step = now, step
    eta = (self.total - step) / overall if overall > 0 else float("inf")
    keys = sorted(metrics, key=lambda k: (k != "loss", k))[:4]
    shown = " ".join(f"{k} {metrics[k]:.4g}" for k in keys)
    pct = 100.0 * step / max(self.total, 1)
    return (
      f"[{step}/{self.total} {pct:3.0f}%] {shown} | {rate:.2f} steps/s | "
      f"elapsed {_fmt_time(now - self.t0)} | ETA {_fmt_time(eta)}"
    )


class _Stop:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps."""

  def __init__(self):
    self.requested = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread
        pass
    return self

  def _handle(self, signum, frame):
    if self.requested is not None:  # second signal: stop now
      raise KeyboardInterrupt
    self.requested = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    return False


def _accumulate(acc: dict, metrics: dict) -> dict:
  for k, v in metrics.items():
    m = clu_metrics.Average.from_model_output(np.asarray(v, np.float32))
    acc[k] = m if k not in acc else acc[k].merge(m)
  return acc


def fit(
  *,
  workdir,
  config,
  model,
  loss_fn,
  tx,
  train_iter,
  init_fn: Callable,
  eval_fn: Callable | None = None,
  artefact_fn: Callable | None = None,
  num_steps: int,
  seed: int = 0,
  log_every: int = 50,
  eval_every: int = 0,
  checkpoint_every: int = 1000,
  keep_checkpoints: int = 3,
  parallel: str = "jit",
  ema_decay: float | None = None,
  verbose: bool = True,
):
  """Trains `model` for `num_steps` steps, resuming from `workdir/checkpoints` if present.

  Every log step writes the step's metrics (averaged since the last log step) and, for an optimiser
  from `make_optimizer`, the `learning_rate` of the last step, to `metrics.jsonl` and TensorBoard.

  Args:
    workdir: the run folder (created): `metrics.jsonl`, `config.json`, `parameters.txt` (the
      parameter table), `tb/`, `checkpoints/`, `artefacts/`.
    config: the experiment's ConfigDict (saved to `config.json`).
    model, loss_fn, tx: see `make_train_step`.
    train_iter: an iterator of host batches (dicts of numpy arrays, process-local). A Grain
      `DatasetIterator` is checkpointed with the state and resumed exactly.
    init_fn: `init_fn(rng) -> TrainState` (jitted here).
    eval_fn: `eval_fn(state, step) -> dict[str, float]`, logged under `eval/`.
    artefact_fn: `artefact_fn(state, step, writer)`, for pictures and videos.
    num_steps: total training steps (a resumed run does the rest).
    seed: root seed of the init and of every step's RNG (the step folds in its counter).
    log_every: read metrics on the host, check the loss, log and print every this many steps.
    eval_every: run eval/artefacts every this many steps (0: only at the end).
    checkpoint_every: save every this many steps (and always at the end).
    keep_checkpoints: how many checkpoints to keep.
    parallel: "jit" (sharded over all devices), "pmap" or "none".
    ema_decay: keep an EMA of the parameters (needs an `init_fn` that creates `ema_params`).
    verbose: print the progress lines.

  The workdir is locked while the run uses it (`workdir/.lock`, host and PID; see
  `aejax.io.WorkdirLock`), and `run.json` records the experiment and the model class.

  Returns:
    The final `TrainState` (one replicated copy).

  Raises:
    TrainingDiverged: on a non-finite loss (the last good checkpoint is kept).
    WorkdirLocked: another live process trains in `workdir`.
    CheckpointError: `workdir` holds another experiment's or model's run; or a checkpoint could
      not be written (full disk, I/O error): one line naming the folder and the last complete step.
    OutputError: an artefact or log could not be written (one line, with the last complete step).
  """
  with _opened_run(workdir, config, model, keep_checkpoints) as (writer, ckpt):
    return _loop(writer, ckpt, dict(locals()))


def train_section(**changes) -> dict:
  """The `train` config section: `fit`'s step, logging and checkpoint keywords, updated by `changes`.

  `num_steps`, `eval_every` and `ema_decay` are None (unset) unless given: the experiment derives
  `num_steps` (e.g. from epochs), None `eval_every` evaluates only at the end, None `ema_decay` is off.
  """
  base = dict(num_steps=None, seed=0, log_every=50, eval_every=None, checkpoint_every=1000)
  return {**base, "keep_checkpoints": 3, "parallel": "jit", "ema_decay": None, **changes}


def fit_epochs(source, *, config, transforms=(), eval_every_epoch: bool = False, **fit_kwargs):
  """`fit` over epochs of a finite `source` of examples (image experiments).

  Args:
    source: a random-access source (`aejax.data.sources`); `len(source)` examples per epoch.
    config: the experiment's config: its `data` section (`batch_size`, `worker_count`,
      `num_epochs`) and `train` section (`train_section`; `num_steps` None: `data.num_epochs`
      epochs) drive the loop.
    transforms: Grain transforms of the training loader.
    eval_every_epoch: `eval_every` None means once per epoch (not only at the end).
    **fit_kwargs: the rest of `fit`'s keywords (workdir, model, loss_fn, tx, init_fn, ...).

  Raises:
    ValueError: fewer examples than one batch, or no positive number of steps.
  """
  from aejax.data.pipeline import make_loader

  data = config.data
  steps_per_epoch = len(source) // data.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"{len(source)} training examples is less than one batch of {data.batch_size}")
  train = dict(config.train)
  if train["num_steps"] is None:
    train["num_steps"] = (data.num_epochs or 0) * steps_per_epoch
  if train["num_steps"] <= 0:
    raise ValueError("set data.num_epochs or train.num_steps to a positive number")
  if eval_every_epoch and not train["eval_every"]:
    train["eval_every"] = steps_per_epoch
  batch, workers = data.batch_size, data.worker_count
  loader = make_loader(
    source, batch_size=batch, seed=train["seed"], worker_count=workers, transforms=list(transforms)
  )
  n = train["num_steps"]
  print(f"train: {len(source)} examples ({source!r}); {steps_per_epoch} steps/epoch, {n} steps")
  return fit(train_iter=loader, config=config, **fit_kwargs, **train)


@contextlib.contextmanager
def _opened_run(workdir, config, model, keep_checkpoints: int):
  """Locks `workdir`, opens the run (`_open_run`), yields `(writer, ckpt)`, closes and unlocks.

  An OSError inside (an artefact, a metrics line, an event file: no space, read-only, ...) becomes
  one line naming the last complete checkpoint.
  """
  workdir = io.check_workdir(workdir)
  lock = io.WorkdirLock(workdir) if jax.process_index() == 0 else None
  if lock is not None:
    lock.acquire()
  writer = ckpt = None
  try:
    writer, ckpt = _open_run(workdir, config, model, keep_checkpoints)
    yield writer, ckpt
  except OSError as e:
    if ckpt is None:
      raise
    raise io.OutputError(
      f"{io.describe_os_error(e, workdir)}; {_last_complete(ckpt)}; fix it and run the same command "
      "again to resume"
    ) from None
  finally:
    if ckpt is not None:
      _close_all(ckpt.close, writer.close)
    if lock is not None:
      lock.release()


def _check_owner(workdir: Path, experiment: str | None, model: str) -> None:
  """A workdir whose `run.json` names another experiment or model is not resumed."""
  path = workdir / RUN_RECORD
  if not path.is_file():
    return
  try:
    rec = json.loads(path.read_text())
  except (OSError, ValueError):
    return  # unreadable record (e.g. a crash mid-write of an older version): rewritten below
  theirs_exp, theirs_model = rec.get("experiment"), rec.get("model")
  if (experiment and theirs_exp and theirs_exp != experiment) or (theirs_model and theirs_model != model):
    raise CheckpointError(
      f"{workdir}: a workdir of {theirs_exp} (model {theirs_model}), not of "
      f"{experiment or '?'} (model {model}); use another --workdir"
    )


def _open_run(workdir: Path, config, model, keep_checkpoints: int) -> tuple[Writer, CheckpointIO]:
  """Checks the workdir's owner, writes `config.json` and `run.json`, opens the writer and checkpoints."""
  from aejax.cli import current_experiment

  experiment, mname = current_experiment(), model_name(model)
  _check_owner(workdir, experiment, mname)
  writer = Writer(workdir)
  try:
    writer.write_config(config)
    writer.write_run(experiment=experiment, model=mname)
    return writer, CheckpointIO(workdir / "checkpoints", max_to_keep=keep_checkpoints)
  except OSError as e:
    writer.close()
    raise io.OutputError(f"{io.describe_os_error(e, workdir)} (writing the run's files)") from None
  except BaseException:
    writer.close()
    raise


def _last_complete(ckpt: CheckpointIO) -> str:
  """'last complete checkpoint: step N in DIR' (an earlier save still being written counts once done)."""
  try:
    ckpt.wait()
  except Exception:  # noqa: BLE001 - its own failure is secondary to the one being reported
    pass
  done = ckpt.complete_steps()
  return (
    f"last complete checkpoint: step {done[-1]} in {ckpt.directory}" if done else "no complete checkpoint yet"
  )


def _loop(writer: Writer, ckpt: CheckpointIO, args: dict):
  """The loop proper over `fit`'s keyword arguments `args` (the caller closes `writer` and `ckpt`)."""
  o = types.SimpleNamespace(**args)
  train_iter, num_steps, verbose = o.train_iter, o.num_steps, o.verbose
  root = jax.random.PRNGKey(o.seed)
  init_rng, step_rng = jax.random.split(root)
  state = jax.jit(o.init_fn)(init_rng)
  start = ckpt.latest_step()
  if start is not None:
    state = ckpt.restore(state, step=start, data_iter=train_iter)
    _say(verbose, f"resumed from {ckpt.directory / str(start)}")
  start = int(jax.device_get(state.step))
  _parameter_table(writer, state.params, verbose)
  runner = make_train_step(o.model, o.loss_fn, o.tx, parallel=o.parallel, ema_decay=o.ema_decay)
  dstate = runner.put_state(state)
  del state
  progress = _Progress(num_steps, start)
  pending: list[dict] = []
  last_good = start if ckpt.latest_step() is not None else None

  def flush(step: int) -> dict:
    acc: dict = {}
    for m in pending:
      _accumulate(acc, jax.device_get(m))
    pending.clear()
    values = {k: float(v.compute()) for k, v in acc.items()}
    bad = [k for k, v in values.items() if k == "loss" and not math.isfinite(v)]
    if bad:
      where = (
        f"last good checkpoint: step {last_good} in {ckpt.directory}"
        if last_good is not None
        else "no checkpoint was saved yet"
      )
      raise TrainingDiverged(f"non-finite loss ({values['loss']}) by step {step}; {where}")
    return values

  def evaluate(step: int, host_state) -> None:
    if o.eval_fn is not None:
      res = o.eval_fn(host_state, step) or {}
      if res:
        writer.scalars(step, {f"eval/{k}": v for k, v in res.items()})
        shown = " ".join(f"{k} {v:.4g}" for k, v in res.items())
        _say(verbose, f"eval @ {step}: {shown}")
    if o.artefact_fn is not None:
      o.artefact_fn(host_state, step, writer)
    writer.flush()

  step = start
  with _Stop() as stop:
    while step < num_steps:
      try:
        batch = next(train_iter)
      except StopIteration:
        raise ValueError(f"the training data ran out at step {step} of {num_steps}") from None
      dstate, metrics = runner(dstate, batch, step_rng)
      step += 1
      pending.append(metrics)
      at_end = step == num_steps
      if step % o.log_every == 0 or at_end or stop.requested or step % o.checkpoint_every == 0:
        values = flush(step)
        lr = learning_rate(dstate.opt_state)
        writer.scalars(step, values if lr is None else {**values, "learning_rate": lr})
        if step % o.log_every == 0 or at_end:
          _say(verbose, progress.line(step, values))
      if o.eval_every and step % o.eval_every == 0 and not at_end:
        evaluate(step, runner.get_state(dstate))
      if step % o.checkpoint_every == 0 or at_end or stop.requested:
        ckpt.save(step, runner.get_state(dstate), train_iter)
        last_good = step
      if stop.requested:
        ckpt.wait()
        _say(
          True,
          f"{stop.requested}: saved a checkpoint at step {step} in {ckpt.directory}; "
          "run the same command again to resume",
        )
        break
  final = runner.get_state(dstate)
  if step == num_steps:
    evaluate(step, final)
  ckpt.wait()  # a failed last save is reported here, before the run counts as finished
  return final


def _close_all(*closers) -> None:
  """Calls every closer; raises the first error only when no other exception is on its way."""
  in_flight = sys.exc_info()[1] is not None
  first = None
  for close in closers:
    try:
      close()
    except Exception as e:  # noqa: BLE001
      first = first or e
  if first is not None and not in_flight:
    if isinstance(first, OSError):
      raise io.OutputError(io.describe_os_error(first)) from None
    raise first


def _parameter_table(writer: Writer, params, verbose: bool) -> None:
  """Writes clu's parameter table to `workdir/parameters.txt` and prints its total once."""
  table = parameter_overview.get_parameter_overview(params, include_stats=False)
  if writer.active:
    io.write_text(writer.workdir / "parameters.txt", table + "\n")
  total = table.strip().splitlines()[-1]  # "Total: 81 -- 324 bytes"
  _say(verbose, f"parameters: {total.removeprefix('Total: ')} (table in {writer.workdir / 'parameters.txt'})")


def _say(verbose: bool, msg: str) -> None:
  if verbose and jax.process_index() == 0:
    print(msg, file=sys.stdout, flush=True)
