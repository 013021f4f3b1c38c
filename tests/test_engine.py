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
  return subprocess.run([sys.executable, str(HERE / "_tiny.py"), *map(str, args)], env=e,
                        capture_output=True, text=True, timeout=timeout, cwd=HERE)


def _result(proc) -> dict:
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.split("RESULT ", 1)[1])


def _max_diff(a: dict, b: dict) -> float:
  return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a if
             not k.startswith("__"))


def test_single_sharded_and_pmap_agree(tmp_path):
  out = _result(_script("parallel", tmp_path,
                        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
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
    procs = [subprocess.Popen([sys.executable, str(HERE / "_tiny.py"), "multiprocess", str(work),
                               str(pid), "2", addr], env=env, cwd=HERE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for pid in (0, 1)]
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
  proc = subprocess.Popen([sys.executable, str(HERE / "_tiny.py"), "fit", str(work), "24", "0.03"],
                          env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
  np.testing.assert_allclose([e.value for e in acc.Scalars("loss")], [r["loss"] for r in rows],
                             rtol=1e-6)
  model, tx = _tiny.make_model(), make_optimizer("adam", 1e-2)
  abstract = jax.eval_shape(lambda: init_state(model, tx, jax.random.PRNGKey(0),
                                               jnp.zeros((1, 8, 8, 1))))
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
  fit(workdir=tmp_path, config=ml_collections.ConfigDict({"tiny": True}), model=model,
      loss_fn=_tiny.loss_fn, tx=tx, train_iter=_tiny.slice_iter(8),
      init_fn=lambda r: init_state(model, tx, r, jnp.zeros((1, 8, 8, 1))), num_steps=8, log_every=1,
      checkpoint_every=100, verbose=False)
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
      b = {n: v[(8 * k) % 256:(8 * k) % 256 + 8] for n, v in data.items()}
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
  abstract = jax.eval_shape(lambda: init_state(Wider(), tx, jax.random.PRNGKey(0),
                                               jnp.zeros((1, 8, 8, 1))))
  with pytest.raises(CheckpointError) as err:
    restore_state(tmp_path, abstract)
  msg = str(err.value)
  assert "\n" not in msg and "BatchNorm_0/bias" in msg or "Conv_0/kernel" in msg
  assert "(4,)" in msg or "(3, 3, 1, 4)" in msg
  with pytest.raises(CheckpointError, match="does not exist"):
    restore_state(tmp_path / "nope", abstract)
  # Same model, another optimiser: the state tree differs, a one-line error says so.
  sgd = make_optimizer("sgd", 0.1, momentum=0.9)
  other = jax.eval_shape(lambda: init_state(_tiny.make_model(), sgd, jax.random.PRNGKey(0),
                                            jnp.zeros((1, 8, 8, 1))))
  with pytest.raises(CheckpointError, match="does not fit this run") as err:
    restore_state(tmp_path, other)
  assert "\n" not in str(err.value)


def test_weight_decay_mask_and_schedules():
  params = {"Dense_0": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
            "LayerNorm_0": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
            "cls_token": jnp.ones((1, 1, 4)), "pos_embed": jnp.ones((1, 5, 4)),
            "Conv_0": {"kernel": jnp.ones((3, 3, 1, 2))}}
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
