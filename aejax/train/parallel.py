"""Device placement for the three ways a step runs: one device, sharded `jit`, and `pmap`.

The default is `jax.jit` with `NamedSharding` over a 1-D `("data",)` mesh of every device of every
process: the batch is split along its first axis, the state is replicated, and XLA inserts the
gradient all-reduce (BatchNorm statistics are computed over the global batch for free). `pmap`
runs the same step per device with explicit `lax.pmean` and synchronised BatchNorm.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh named `data` over all devices (of all processes) or the given ones."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (AXIS,))


def shard_batch(batch, mesh: Mesh):
  """Places a process-local batch as one global array sharded along its first axis."""
  sharding = NamedSharding(mesh, P(AXIS))
  replicated = NamedSharding(mesh, P())

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(sharding if x.ndim else replicated, x)

  return jax.tree.map(put, batch)


def replicate_on_mesh(tree, mesh: Mesh):
  """Puts every leaf fully replicated on the mesh."""
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def pmap_replicate(tree):
  """A copy of every leaf per local device (leading axis), for `pmap`."""
  n = jax.local_device_count()
  return jax.pmap(lambda x: x)(
    jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), tree)
  )


def pmap_split(batch):
  """Reshapes [B, ...] leaves to [num_local_devices, B / n, ...]."""
  n = jax.local_device_count()

  def split(x):
    x = np.asarray(x)
    if x.ndim == 0:  # scalars (e.g. a loss weight) go to every device
      return np.broadcast_to(x, (n,))
    if x.shape[0] % n:
      raise ValueError(f"batch size {x.shape[0]} is not divisible by {n} local devices")
    return x.reshape((n, x.shape[0] // n) + x.shape[1:])

  return jax.tree.map(split, batch)


def unreplicate(tree):
  """The first device's copy of a pmapped tree."""
  return jax.tree.map(lambda x: x[0], tree)


def maybe_initialize_distributed(
  coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
  """Calls `jax.distributed.initialize` when several processes are launched.

  Arguments fall back to `AEJAX_COORDINATOR`, `AEJAX_NUM_PROCESSES` and `AEJAX_PROCESS_ID`. With
  none given (and no cluster environment JAX detects by itself) this is a no-op and returns False.
  """
  coordinator_address = coordinator_address or os.environ.get("AEJAX_COORDINATOR")
  if num_processes is None and os.environ.get("AEJAX_NUM_PROCESSES"):
    num_processes = int(os.environ["AEJAX_NUM_PROCESSES"])
  if process_id is None and os.environ.get("AEJAX_PROCESS_ID"):
    process_id = int(os.environ["AEJAX_PROCESS_ID"])
  if not coordinator_address or not num_processes or num_processes <= 1:
    return False
  try:  # CPU collectives across processes (only affects the CPU backend)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except (AttributeError, ValueError):  # newer jax: gloo is the default
    pass
  kwargs = {}
  if process_id == 0 and coordinator_address.startswith(("127.", "localhost")):
    kwargs["coordinator_bind_address"] = coordinator_address  # loopback only (tests, one machine)
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id, **kwargs
  )
  return True
