"""The training engine: parallel equivalence, multi-process, resume, writer, errors, optimisers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _tiny
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.train import (
  CheckpointError,
  TrainingDiverged,
  init_state,
  make_optimizer,
  restore_state,
  restore_variables,
)
from aejax.train.optim import decay_mask, make_schedule

HERE = Path(__file__).parent


def _script(*args, env=None, timeout=240):
  e = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(HERE.parent))
  e.update(env or {})
  return subprocess.run(
    [sys.executable, str(HERE / "_tiny.py"), *map(str, args)],
    env=e,
    capture_output=True,
    text=True,
    timeout=timeout,
    cwd=HERE,
  )


def _result(proc) -> dict:
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.split("RESULT ", 1)[1])


def _max_diff(a: dict, b: dict) -> float:
  return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a if not k.startswith("__"))


def test_single_sharded_and_pmap_agree(tmp_path):
  out = _result(_script("parallel", tmp_path, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
  ref = out["none"]
  assert len(ref["__losses__"]) == 8 and ref["__losses__"][-1] < ref["__losses__"][0]
  for par in ("jit", "pmap"):
    np.testing.assert_allclose(out[par]["__losses__"], ref["__losses__"], rtol=1e-5, atol=1e-6)
    assert _max_diff(out[par], ref) < 1e-5, par
  # BatchNorm running statistics are part of the comparison and did move from their init.
  assert any("batch_stats" in k for k in ref)
  assert np.abs(np.asarray(ref["['batch_stats']['BatchNorm_0']['mean']"])).max() > 1e-4


def test_two_processes_match_one(tmp_path):
  import portpicker

  single = _result(_script("multiprocess", tmp_path / "one", 0, 1, "-"))
  for attempt in range(2):  # a fresh port on the (rare) failed connect
    port = portpicker.pick_unused_port()
    addr = f"127.0.0.1:{port}"
    work = tmp_path / f"two{attempt}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(HERE.parent))
    procs = [
      subprocess.Popen(
        [sys.executable, str(HERE / "_tiny.py"), "multiprocess", str(work), str(pid), "2", addr],
        env=env,
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
      for pid in (0, 1)
    ]
    try:
      outs = [p.communicate(timeout=150) for p in procs]
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      continue
    if all(p.returncode == 0 for p in procs):
      break
  else:
    pytest.fail("two-process run did not finish: " + outs[0][1][-2000:])
  two = json.loads(outs[0][0].split("RESULT ", 1)[1])
  losses = lambda r: [m["loss"] for m in r["__metrics__"]]
  np.testing.assert_allclose(losses(two), losses(single), rtol=1e-5)
  assert _max_diff(two, single) < 1e-5


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
  ref = _script("fit", tmp_path / "ref", 24, 0.0)
  assert ref.returncode == 0, ref.stderr[-2000:]
  ref_params = json.loads(ref.stdout.strip().splitlines()[-1])
  work = tmp_path / "killed"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(HERE.parent))
  proc = subprocess.Popen(
    [sys.executable, str(HERE / "_tiny.py"), "fit", str(work), "24", "0.03"],
    env=env,
    cwd=HERE,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
  )
  ckpts = work / "checkpoints"
  deadline = time.time() + 120
  while time.time() < deadline:  # wait for a committed checkpoint, then kill mid-run
    steps = [int(p.name) for p in ckpts.glob("[0-9]*") if p.name.isdigit()] if ckpts.exists() else []
    if steps and max(steps) >= 6:
      break
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = max(int(p.name) for p in ckpts.glob("[0-9]*") if p.name.isdigit())
  assert 0 < killed_at < 24, killed_at
  again = _script("fit", work, 24, 0.0)
  assert again.returncode == 0, again.stderr[-2000:]
  resumed = json.loads(again.stdout.strip().splitlines()[-1])
  assert _max_diff(resumed, ref_params) < 1e-6
  steps_logged = [json.loads(x)["step"] for x in (work / "metrics.jsonl").read_text().splitlines()]
  assert steps_logged[-1] == 24


def test_writer_outputs_read_back_and_restore_into_eval_shape(tmp_path):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  state = _tiny.run_fit(tmp_path, num_steps=8, log_every=2, checkpoint_every=4)
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  rows = [json.loads(x) for x in lines]
  assert [r["step"] for r in rows] == [2, 4, 6, 8] and all(np.isfinite(r["loss"]) for r in rows)
  assert json.loads((tmp_path / "config.json").read_text()) == {"tiny": True}
  acc = EventAccumulator(str(tmp_path / "tb"))
  acc.Reload()
  assert "loss" in acc.Tags()["scalars"]
  assert [e.step for e in acc.Scalars("loss")] == [2, 4, 6, 8]
  np.testing.assert_allclose([e.value for e in acc.Scalars("loss")], [r["loss"] for r in rows], rtol=1e-6)
  model, tx = _tiny.make_model(), make_optimizer("adam", 1e-2)
  abstract = jax.eval_shape(lambda: init_state(model, tx, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1))))
  restored = restore_state(tmp_path, abstract)
  assert int(restored.step) == 8
  for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  step4 = restore_state(tmp_path / "checkpoints" / "4", abstract)
  assert int(step4.step) == 4
  variables = restore_variables(tmp_path)  # no optimiser or abstract state needed
  assert set(variables) == {"params", "batch_stats"}
  for a, b in zip(jax.tree.leaves(variables["params"]), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_logged_learning_rate_follows_the_schedule_and_parameter_table(tmp_path):
  import ml_collections

  from aejax.train import fit

  model = _tiny.make_model()
  tx = make_optimizer("adam", 0.1, schedule="warmup_cosine", warmup_steps=3, total_steps=8)
  fit(
    workdir=tmp_path,
    config=ml_collections.ConfigDict({"tiny": True}),
    model=model,
    loss_fn=_tiny.loss_fn,
    tx=tx,
    train_iter=_tiny.slice_iter(8),
    init_fn=lambda r: init_state(model, tx, r, jnp.zeros((1, 8, 8, 1))),
    num_steps=8,
    log_every=1,
    checkpoint_every=100,
    verbose=False,
  )
  rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == list(range(1, 9))
  sched = make_schedule(0.1, "warmup_cosine", warmup_steps=3, total_steps=8)
  # Row `step` logs the rate its last update used: the schedule at step - 1 (0 at the first step).
  expected = [float(sched(r["step"] - 1)) for r in rows]
  np.testing.assert_allclose([r["learning_rate"] for r in rows], expected, rtol=1e-5, atol=1e-9)
  assert rows[0]["learning_rate"] == 0.0 and rows[3]["learning_rate"] == pytest.approx(0.1)
  table = (tmp_path / "parameters.txt").read_text()
  assert "Conv_0/kernel" in table and "(3, 3, 1, 4)" in table and "Total: 81 " in table


def test_nan_stops_with_one_line_error_and_keeps_last_good(tmp_path):
  data = _tiny.dataset()

  def poisoned():
    k = 0
    while True:
      b = {n: v[(8 * k) % 256 : (8 * k) % 256 + 8] for n, v in data.items()}
      b["scale"] = np.float32(np.nan if k >= 9 else 1.0)
      yield b
      k += 1

  with pytest.raises(TrainingDiverged) as err:
    _tiny.run_fit(tmp_path, num_steps=20, train_iter=poisoned(), log_every=2, checkpoint_every=4)
  msg = str(err.value)
  assert "\n" not in msg and "step 10" in msg and "last good checkpoint: step 8" in msg
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").glob("[0-9]*"))[-1] == 8


def test_shape_mismatch_names_the_parameter(tmp_path):
  import flax.linen as nn

  _tiny.run_fit(tmp_path, num_steps=2, checkpoint_every=2)

  class Wider(nn.Module):
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, *, train):
      h = nn.Conv(6, (3, 3), use_bias=False)(x)
      h = nn.BatchNorm(use_running_average=not train)(h)
      return nn.Conv(1, (3, 3))(nn.relu(h)), {}

  tx = make_optimizer("adam", 1e-2)
  abstract = jax.eval_shape(lambda: init_state(Wider(), tx, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1))))
  with pytest.raises(CheckpointError) as err:
    restore_state(tmp_path, abstract)
  msg = str(err.value)
  assert "\n" not in msg and "BatchNorm_0/bias" in msg or "Conv_0/kernel" in msg
  assert "(4,)" in msg or "(3, 3, 1, 4)" in msg
  with pytest.raises(CheckpointError, match="does not exist"):
    restore_state(tmp_path / "nope", abstract)
  # Same model, another optimiser: the state tree differs, a one-line error says so.
  sgd = make_optimizer("sgd", 0.1, momentum=0.9)
  other = jax.eval_shape(
    lambda: init_state(_tiny.make_model(), sgd, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
  )
  with pytest.raises(CheckpointError, match="does not fit this run") as err:
    restore_state(tmp_path, other)
  assert "\n" not in str(err.value)


def test_weight_decay_mask_and_schedules():
  params = {
    "Dense_0": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
    "LayerNorm_0": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
    "cls_token": jnp.ones((1, 1, 4)),
    "pos_embed": jnp.ones((1, 5, 4)),
    "Conv_0": {"kernel": jnp.ones((3, 3, 1, 2))},
  }
  m = decay_mask(params)
  assert m["Dense_0"]["kernel"] and m["Conv_0"]["kernel"]
  assert not m["Dense_0"]["bias"] and not m["LayerNorm_0"]["scale"]
  assert not m["cls_token"] and not m["pos_embed"]
  # AdamW decays only the masked-in leaves: with zero gradients only kernels shrink.
  tx = make_optimizer("adamw", 0.1, weight_decay=0.5)
  upd, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  assert float(upd["Dense_0"]["kernel"][0, 0]) == pytest.approx(-0.05)
  assert float(upd["Dense_0"]["bias"][0]) == 0.0 and float(upd["cls_token"][0, 0, 0]) == 0.0
  sgd = make_optimizer("sgd", 0.5)
  upd, _ = sgd.update({"w": jnp.ones(2)}, sgd.init({"w": jnp.ones(2)}))
  np.testing.assert_allclose(upd["w"], [-0.5, -0.5])
  mom = make_optimizer("sgd", 0.5, momentum=0.9)
  s = mom.init({"w": jnp.ones(1)})
  _, s = mom.update({"w": jnp.ones(1)}, s)
  upd, _ = mom.update({"w": jnp.ones(1)}, s)
  np.testing.assert_allclose(upd["w"], [-0.5 * 1.9])
  sched = make_schedule(1.0, "warmup_cosine", warmup_steps=10, total_steps=110)
  assert float(sched(0)) == 0.0 and float(sched(10)) == pytest.approx(1.0)
  assert float(sched(60)) == pytest.approx(0.5, abs=1e-6) and float(sched(110)) == pytest.approx(0.0)
  clipped = make_optimizer("sgd", 1.0, grad_clip=1.0)
  upd, _ = clipped.update({"w": jnp.array([3.0, 4.0])}, clipped.init({"w": jnp.zeros(2)}))
  np.testing.assert_allclose(upd["w"], [-0.6, -0.8], rtol=1e-6)
  with pytest.raises(ValueError, match="unknown optimizer"):
    make_optimizer("lion")


# ----------------------------------------------------------------------------- safe output (issue 17)


def _fit_script(work, steps, sleep):
  """A fit in another process; prints 'ERR <message>' and exits 1 on an error (no traceback)."""
  code = (
    "import sys, _tiny\n"
    "try:\n"
    f"  _tiny.run_fit({str(work)!r}, num_steps={steps}, sleep={sleep}, checkpoint_every=3)\n"
    "except Exception as e:\n"
    "  print('ERR', e)\n"
    "  sys.exit(1)\n"
    "print('DONE')\n"
  )
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=f"{HERE.parent}:{HERE}")
  return [sys.executable, "-c", code], env


def test_second_run_on_a_locked_workdir_stops_at_once_naming_the_first(tmp_path):
  import socket

  work = tmp_path / "w"
  cmd, env = _fit_script(work, 60, 0.03)
  first = subprocess.Popen(cmd, env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 120
    while time.time() < deadline and not (work / ".lock").exists():
      time.sleep(0.05)
    lock = json.loads((work / ".lock").read_text())
    assert lock["pid"] == first.pid and lock["host"] == socket.gethostname()
    second = subprocess.run(cmd, env=env, cwd=HERE, capture_output=True, text=True, timeout=120)
    assert second.returncode == 1, second.stdout + second.stderr[-2000:]
    msg = second.stdout.strip().splitlines()[-1]
    assert msg.startswith("ERR ") and f"in use by process {first.pid} on {socket.gethostname()}" in msg
    assert str(work) in msg and first.poll() is None  # the first run goes on
  finally:
    out, err = first.communicate(timeout=200)
  assert first.returncode == 0 and "DONE" in out, err[-2000:]
  assert not (work / ".lock").exists()  # released at the end
  rows = [json.loads(x)["step"] for x in (work / "metrics.jsonl").read_text().splitlines()]
  assert rows == sorted(rows) and rows[-1] == 60  # only the first run wrote


def test_stale_lock_of_a_dead_process_is_taken_over_a_live_one_is_not(tmp_path):
  import socket

  from aejax.io import WorkdirLock, WorkdirLocked

  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  work = tmp_path / "w"
  work.mkdir()
  (work / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
  _tiny.run_fit(work, num_steps=2, checkpoint_every=2)  # takes over, trains, releases
  assert not (work / ".lock").exists() and (work / "checkpoints" / "2").is_dir()
  alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    (work / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": alive.pid, "since": "then"}))
    before = (work / "metrics.jsonl").read_bytes()
    with pytest.raises(WorkdirLocked) as err:
      _tiny.run_fit(work, num_steps=4, checkpoint_every=2)
    assert f"in use by process {alive.pid}" in str(err.value) and "\n" not in str(err.value)
    assert (work / "metrics.jsonl").read_bytes() == before  # stopped before writing anything
    with pytest.raises(WorkdirLocked, match=f"in use by process {alive.pid}"):
      WorkdirLock(work).check()
    (work / ".lock").write_text(json.dumps({"host": "another-host", "pid": dead.pid}))
    with pytest.raises(WorkdirLocked, match="on another-host"):  # never broken across hosts
      WorkdirLock(work).acquire()
  finally:
    alive.kill()
    alive.wait()


def test_run_record_names_experiment_and_model_and_restore_refuses_others(tmp_path, monkeypatch):
  import flax.linen as nn
  import ml_collections

  from aejax import cli
  from aejax.train import restore_for_eval

  cfg = ml_collections.ConfigDict({"tiny": True})
  monkeypatch.setitem(cli._CURRENT, "experiment", "experiments.tiny")
  _tiny.run_fit(tmp_path, num_steps=2, checkpoint_every=2)
  rec = json.loads((tmp_path / "run.json").read_text())
  model = _tiny.make_model()
  assert rec["experiment"] == "experiments.tiny"
  assert rec["model"] == f"{type(model).__module__}.{type(model).__qualname__}"
  example = lambda c: jnp.zeros((1, 8, 8, 1))
  restored, variables, _ = restore_for_eval(
    tmp_path, cfg, build_model=lambda c: _tiny.make_model(), example=example, keys=()
  )
  assert set(variables) == {"params", "batch_stats"}
  monkeypatch.setitem(cli._CURRENT, "experiment", "experiments.other")
  with pytest.raises(CheckpointError) as err:
    restore_for_eval(tmp_path, cfg, build_model=lambda c: _tiny.make_model(), example=example, keys=())
  msg = str(err.value)
  assert "a run of experiments.tiny" in msg and "not of experiments.other" in msg and "\n" not in msg

  class Other(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
      return nn.Conv(1, (3, 3))(x), {}

  monkeypatch.setitem(cli._CURRENT, "experiment", None)  # library use: the model class decides
  with pytest.raises(CheckpointError, match=r"a run of model .*Tiny, not .*Other"):
    restore_for_eval(tmp_path, cfg, build_model=lambda c: Other(), example=example, keys=())
  # fit refuses to resume another experiment's workdir
  monkeypatch.setitem(cli._CURRENT, "experiment", "experiments.other")
  with pytest.raises(CheckpointError, match="a workdir of experiments.tiny"):
    _tiny.run_fit(tmp_path, num_steps=4, checkpoint_every=2)
  # a run without the record (older aejax) falls back to the shape checks
  (tmp_path / "run.json").unlink()
  restore_for_eval(tmp_path, cfg, build_model=lambda c: _tiny.make_model(), example=example, keys=())


def test_full_disk_at_a_checkpoint_is_one_line_and_resume_continues(tmp_path, monkeypatch):
  from aejax.train import checkpoint as ckpt_mod

  real = ckpt_mod._free_bytes
  calls = []

  def free(folder):
    calls.append(1)
    return 1000 if len(calls) >= 3 else real(folder)  # the third save finds the disk full

  monkeypatch.setattr(ckpt_mod, "_free_bytes", free)
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "checkpoints" / "1.orbax-checkpoint-tmp-123").mkdir()  # a crash's leftover
  with pytest.raises(CheckpointError) as err:
    _tiny.run_fit(tmp_path, num_steps=12, checkpoint_every=2)
  msg = str(err.value)
  assert "\n" not in msg and "checkpoints/6: checkpoint not written (no space left on device" in msg
  assert "last complete checkpoint: step 4" in msg
  left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
  assert left == ["2", "4"] and not (tmp_path / ".lock").exists()
  monkeypatch.setattr(ckpt_mod, "_free_bytes", real)  # space freed: the same run resumes at 4
  state = _tiny.run_fit(tmp_path, num_steps=8, checkpoint_every=2)
  assert int(state.step) == 8
  rows = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows[-1] == 8


def test_orbax_write_error_is_one_line_and_cleans_its_temporary_folder(tmp_path, monkeypatch):
  """ENOSPC raised by Orbax itself (the space check passed): the same one line, tmp folder gone."""
  import orbax.checkpoint as ocp

  from aejax.train import checkpoint as ckpt_mod

  real_save = ocp.CheckpointManager.save

  def save(self, step, *a, **kw):
    if step == 6:
      (Path(self.directory) / "6.orbax-checkpoint-tmp-99").mkdir()
      raise ValueError(
        "RESOURCE_EXHAUSTED: Error writing local file: No space left on device [os_error_code='28']"
      )
    return real_save(self, step, *a, **kw)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)
  with pytest.raises(ckpt_mod.CheckpointError) as err:
    _tiny.run_fit(tmp_path, num_steps=12, checkpoint_every=2)
  msg = str(err.value)
  assert "\n" not in msg and "no space left on device" in msg and "last complete checkpoint: step 4" in msg
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"]


def test_full_tmpfs_keeps_the_last_checkpoint_restorable(tmp_path):
  """A real full disk (a 1 MiB tmpfs; skipped where mounting is not allowed)."""
  mnt = tmp_path / "mnt"
  mnt.mkdir()
  if (
    os.geteuid() != 0
    or subprocess.run(
      ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    ).returncode
    != 0
  ):
    pytest.skip("cannot mount a tmpfs here")
  try:
    work = mnt / "w"
    _tiny.run_fit(work, num_steps=4, checkpoint_every=2)
    (mnt / "filler").write_bytes(b"\0" * (os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize - 40_000))
    with pytest.raises(CheckpointError, match="no space left on device.*last complete checkpoint: step 4"):
      _tiny.run_fit(work, num_steps=40, checkpoint_every=2)
    assert not [p for p in (work / "checkpoints").iterdir() if "tmp" in p.name]
    model, tx = _tiny.make_model(), make_optimizer("adam", 1e-2)
    abstract = jax.eval_shape(lambda: init_state(model, tx, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1))))
    assert int(restore_state(work, abstract).step) == 4
    (mnt / "filler").unlink()
    assert int(_tiny.run_fit(work, num_steps=8, checkpoint_every=2).step) == 8
  finally:
    subprocess.run(["umount", str(mnt)], check=False)


def test_workdir_that_is_a_file_is_one_line(tmp_path):
  from aejax.io import OutputError

  f = tmp_path / "w"
  f.write_text("not a folder")
  with pytest.raises(OutputError) as err:
    _tiny.run_fit(f, num_steps=2)
  assert str(err.value) == f"{f}: the workdir is a file, not a folder; pass another --workdir"
  assert f.read_text() == "not a folder"


def test_atomic_write_leaves_old_or_new_and_check_output(tmp_path):
  from aejax import io

  p = tmp_path / "a.json"
  io.write_json(p, {"v": 1})
  with pytest.raises(RuntimeError):
    with io.atomic_path(p) as tmp:
      tmp.write_text('{"v": 2, "half')
      raise RuntimeError("interrupted")
  assert json.loads(p.read_text()) == {"v": 1} and sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]
  io.write_json(p, {"v": 2})
  assert json.loads(p.read_text()) == {"v": 2}
  with pytest.raises(io.OutputError, match="a.json: the output file already exists; pass --overwrite"):
    io.check_output(p, inputs=[])
  assert io.check_output(p, inputs=[], overwrite=True) == p
  assert io.check_output(None, inputs=[p]) is None  # an optional --out not given
  link = tmp_path / "link.json"
  os.link(p, link)  # same inode, another name
  for out in (p, link, tmp_path / "." / "a.json"):
    with pytest.raises(io.OutputError, match="is also an input"):
      io.check_output(out, inputs=[None, p], overwrite=True)
  (tmp_path / "empty").mkdir()
  assert io.check_output(tmp_path / "empty", inputs=[p]) == tmp_path / "empty"
  with pytest.raises(io.OutputError, match="is a file, so"):
    io.check_output(p / "x.png", inputs=[], overwrite=True)
  with pytest.raises(io.OutputError, match="the --out is a file, not a folder"):
    io.check_output(p, inputs=[], overwrite=True, folder=True, what="--out")


def test_full_disk_while_writing_an_artefact_is_one_line(tmp_path):
  import errno

  from aejax.io import OutputError

  def artefact_fn(state, step, writer):
    if step == 4:
      raise OSError(errno.ENOSPC, "No space left on device", str(writer.artefact_path("grid.png")))

  model, tx = _tiny.make_model(), make_optimizer("adam", 1e-2)
  import ml_collections

  from aejax.train import fit

  with pytest.raises(OutputError) as err:
    fit(
      workdir=tmp_path,
      config=ml_collections.ConfigDict({"tiny": True}),
      model=model,
      loss_fn=_tiny.loss_fn,
      tx=tx,
      train_iter=_tiny.slice_iter(8),
      init_fn=lambda r: init_state(model, tx, r, jnp.zeros((1, 8, 8, 1))),
      num_steps=8,
      eval_every=4,
      artefact_fn=artefact_fn,
      checkpoint_every=2,
      verbose=False,
    )
  assert str(err.value) == (
    f"{tmp_path / 'artefacts' / 'grid.png'}: no space left on device; last complete "
    f"checkpoint: step 2 in {tmp_path / 'checkpoints'}; fix it and run the same "
    "command again to resume"
  )
  assert not (tmp_path / ".lock").exists()
