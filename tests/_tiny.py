"""A tiny BatchNorm conv model and runnable scenarios for the engine tests (also run as a script)."""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def make_model():
  import flax.linen as nn

  class Tiny(nn.Module):
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, *, train):
      h = nn.Conv(4, (3, 3), use_bias=False)(x)  # no bias before BN: its true gradient is 0
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name)(h)
      h = nn.relu(h)
      return nn.Conv(1, (3, 3))(h), {}

  return Tiny()


def loss_fn(model, variables, batch, rngs, train):
  import jax.numpy as jnp

  from aejax.train import apply_model

  (y, _), new_state = apply_model(model, variables, batch["x"], rngs=rngs, train=train)
  loss = jnp.mean((y - batch["y"]) ** 2) * batch.get("scale", 1.0)
  return loss, {"loss": loss}, new_state


def dataset(n=256, seed=0):
  r = np.random.RandomState(seed)
  x = r.randn(n, 8, 8, 1).astype(np.float32)
  return {"x": x, "y": np.roll(x, 1, axis=1)}


def grain_iter(batch_size=8, seed=0, sleep=0.0, shard=None):
  """A checkpointable Grain iterator over the tiny dataset (optionally slow, optionally sharded)."""
  import grain

  data = dataset()
  ds = grain.MapDataset.range(len(data["x"]))
  if shard is not None:
    index, count = shard
    ds = ds[index::count]
  ds = ds.shuffle(seed=seed).repeat()

  def get(i):
    if sleep:
      time.sleep(sleep)
    return {k: v[i] for k, v in data.items()}

  return iter(ds.map(get).batch(batch_size).to_iter_dataset())


def slice_iter(global_batch, pid=0, nproc=1):
  """Global batch k is rows [k*B, (k+1)*B); process p reads its contiguous 1/nproc of it."""
  data = dataset()
  local = global_batch // nproc
  k = 0
  while True:
    lo = (k * global_batch) % len(data["x"]) + pid * local
    yield {name: v[lo : lo + local] for name, v in data.items()}
    k += 1


def run_fit(
  workdir,
  *,
  parallel="jit",
  num_steps=12,
  batch_size=8,
  sleep=0.0,
  checkpoint_every=4,
  train_iter=None,
  lr=1e-2,
  log_every=4,
  seed=0,
):
  import jax.numpy as jnp
  import ml_collections

  from aejax.train import fit, init_state, make_optimizer

  model = make_model()
  tx = make_optimizer("adam", lr)
  it = train_iter if train_iter is not None else grain_iter(batch_size, sleep=sleep)
  return fit(
    workdir=workdir,
    config=ml_collections.ConfigDict({"tiny": True}),
    model=model,
    loss_fn=loss_fn,
    tx=tx,
    train_iter=it,
    init_fn=lambda r: init_state(model, tx, r, jnp.zeros((1, 8, 8, 1))),
    num_steps=num_steps,
    seed=seed,
    log_every=log_every,
    checkpoint_every=checkpoint_every,
    parallel=parallel,
    verbose=False,
  )


def flat_params(state):
  import jax

  return {
    jax.tree_util.keystr(p): np.asarray(v).tolist()
    for p, v in jax.tree_util.tree_flatten_with_path(
      {"params": state.params, "batch_stats": state.batch_stats}
    )[0]
  }


def main(argv):
  """`python _tiny.py MODE WORKDIR [...]`: scenarios that need a fresh process."""
  mode, workdir = argv[1], argv[2]
  if mode == "fit":  # a slow run, to be killed and resumed
    state = run_fit(workdir, num_steps=int(argv[3]), sleep=float(argv[4]), checkpoint_every=3)
    print(json.dumps(flat_params(state)))
  elif mode == "parallel":  # same run under one device, sharded jit and pmap (4 forced devices)
    import jax

    assert jax.device_count() == 4, jax.devices()
    out = {}
    for par in ("none", "jit", "pmap"):
      state = run_fit(
        f"{workdir}/{par}",
        parallel=par,
        num_steps=8,
        train_iter=slice_iter(8),
        checkpoint_every=100,
        log_every=1,
      )
      out[par] = flat_params(state)
      out[par]["__losses__"] = [json.loads(line)["loss"] for line in open(f"{workdir}/{par}/metrics.jsonl")]
    print("RESULT " + json.dumps(out))
  elif mode == "multiprocess":  # one of several processes; each reads its shard of the global batch
    from aejax.train import maybe_initialize_distributed

    pid, nproc, addr = int(argv[3]), int(argv[4]), argv[5]
    if nproc > 1:
      maybe_initialize_distributed(addr, nproc, pid)
    import jax

    assert jax.process_count() == nproc, jax.process_count()
    it = slice_iter(8, pid, nproc)
    state = run_fit(workdir, num_steps=6, train_iter=it, checkpoint_every=100)
    if pid == 0:
      out = flat_params(state)
      out["__metrics__"] = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
      print("RESULT " + json.dumps(out))


if __name__ == "__main__":
  main(sys.argv)
