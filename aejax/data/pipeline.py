"""Grain input pipelines: source → seed → shard by JAX process → shuffle → transforms → batch.

`make_loader` returns a `grain.DatasetIterator`; its state goes into the Orbax checkpoint with
`grain.checkpoint.CheckpointSave(iterator)` and comes back with `CheckpointRestore(fresh_iterator)`
(same source `repr`, same arguments), resuming exactly, random transforms included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import grain
import numpy as np
from absl import flags


def _worker_init(worker_index: int, worker_count: int) -> None:
  """Worker processes: one OpenCV thread each, so N workers use N cores, not N × cores; memory
  freed by one batch kept for the next (`_keep_freed_memory`)."""
  del worker_index, worker_count
  import cv2

  cv2.setNumThreads(1)
  _keep_freed_memory()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc `mallopt` parameters


def _keep_freed_memory() -> None:
  """glibc's malloc in a loader worker: frames and batches from the heap, freed memory kept.

  By default arrays over 128 kB (a threshold that moves) are mapped and unmapped per allocation and
  freed heap tops go back to the system, so each batch faults its pages in again: ~190 page faults
  per 224² pair in a worker, ~0.2 CPU-ms (measured: 2.2 -> 2.0 CPU-ms per prepared pair). The
  worker's footprint stays at its peak instead. Does nothing without glibc.
  """
  import ctypes

  try:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # the largest threshold glibc accepts
    libc.mallopt(_M_TRIM_THRESHOLD, 512 << 20)
  except (OSError, AttributeError):
    pass


@dataclasses.dataclass
class _RandomGet(grain.transforms.RandomMap):
  """Index → element through `source.random_getitem(index, rng)` (new draws every epoch)."""

  source: object

  def random_map(self, index, rng: np.random.Generator):
    return self.source.random_getitem(int(index), rng)


SHM_MIN_BYTES = 1 << 16  # batch arrays from worker processes smaller than this come back pickled

# Grain's `index_shuffle` costs ~10-20 ms per element for index spaces below a few hundred
# (it cycle-walks a fixed-size domain); small data sets use a cached NumPy permutation instead.
SMALL_SHUFFLE = 1024


@dataclasses.dataclass
class _SmallShuffle(grain.transforms.MapWithIndex):
  """Position i of the repeated sequence → values[perm_epoch[i % n]], perm_epoch by (seed, epoch)."""

  values: np.ndarray
  seed: int

  def map_with_index(self, index: int, element):
    del element
    n = len(self.values)
    epoch, pos = divmod(int(index), n)
    cache = self.__dict__.setdefault("_perms", {})
    if epoch not in cache:
      if len(cache) > 2:
        cache.clear()
      cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(n)
    return int(self.values[cache[epoch][pos]])


@dataclasses.dataclass
class _Get(grain.transforms.Map):
  """Index → `source[index]`."""

  source: object

  def map(self, index):
    return self.source[int(index)]


def make_dataset(
  source,
  *,
  transforms: Sequence = (),
  seed: int = 0,
  shuffle: bool = True,
  num_epochs: int | None = None,
  shard: bool = True,
) -> grain.MapDataset:
  """The unbatched `MapDataset`: indices → seed → shard by process → shuffle → repeat → read →
  transforms.

  Sources with `random_getitem(index, rng)` (random pairs, clips, generated sequences) are read
  through it with Grain's per-element RNG, so every epoch draws afresh and resumes exactly.
  `transforms` are `grain.transforms.Map` / `RandomMap` objects or plain callables (maps).
  Each epoch is a new permutation (Grain's index shuffle, or a seeded NumPy permutation for
  fewer than `SMALL_SHUFFLE` elements per process).
  """
  if len(source) == 0:
    raise ValueError(f"{source!r}: empty data source")
  ds = grain.MapDataset.range(len(source)).seed(seed)
  if shard:
    import jax

    n, i = jax.process_count(), jax.process_index()
    if n > 1:
      ds = ds[i::n]
  small = len(ds) < SMALL_SHUFFLE
  if shuffle and not small:
    ds = ds.shuffle()
  values = np.asarray([ds[k] for k in range(len(ds))]) if shuffle and small else None
  ds = ds.repeat(num_epochs)
  if values is not None:
    ds = ds.map_with_index(_SmallShuffle(values, seed))
  if hasattr(source, "random_getitem"):
    ds = ds.random_map(_RandomGet(source))
  else:
    ds = ds.map(_Get(source))
  for t in transforms:
    if isinstance(t, grain.transforms.RandomMap):
      ds = ds.random_map(t)
    elif isinstance(t, grain.transforms.Map):
      ds = ds.map(t)
    elif callable(t):
      ds = ds.map(t)
    else:
      raise TypeError(f"not a transform: {t!r}")
  return ds


def make_loader(
  source,
  *,
  batch_size: int,
  transforms: Sequence = (),
  seed: int = 0,
  shuffle: bool = True,
  num_epochs: int | None = None,
  drop_remainder: bool = True,
  worker_count: int = 0,
  num_threads: int | None = None,
  prefetch: int | None = None,
  worker_buffer_size: int = 1,
  shard: bool = True,
) -> grain.DatasetIterator:
  """A checkpointable iterator of batches (dicts of stacked NumPy arrays).

  Args:
    source: a random-access source (`__len__`, `__getitem__`, deterministic `__repr__`).
    batch_size: per-process batch size.
    transforms: Grain `Map` / `RandomMap` transforms, applied in order before batching.
    seed: seeds the shuffle and every random transform.
    shuffle: shuffle each epoch (a different order per epoch).
    num_epochs: None repeats forever.
    drop_remainder: drop a last partial batch.
    worker_count: > 0 runs everything up to batching in that many worker processes (each with one
      OpenCV thread; videos are decoded single-threaded anyway).
    num_threads, prefetch: read threads (each assembles whole batches) and how many batches they
      keep ready (Grain `ReadOptions`; default `num_threads`). `num_threads=None`: 8 in-process,
      1 in each worker process (the processes are the parallelism: more threads per worker only
      contend for its GIL, ~0.15 CPU-ms more per 224² pair measured with 8).
    worker_buffer_size: batches each worker process keeps ready. Arrays of a batch smaller than
      `SHM_MIN_BYTES` come back pickled, larger ones through shared memory.
    shard: split the data between JAX processes (each process gets every n-th element).
  """
  if not flags.FLAGS.is_parsed():  # Grain worker processes read absl flags
    flags.FLAGS.mark_as_parsed()
  ds = make_dataset(
    source, transforms=transforms, seed=seed, shuffle=shuffle, num_epochs=num_epochs, shard=shard
  )
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  if num_threads is None:
    num_threads = 1 if worker_count > 0 else 8
  prefetch = num_threads if prefetch is None else prefetch
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
  if worker_count > 0:
    # A shared-memory block costs a create, a map, an unlink and two resource-tracker messages:
    # not worth it for `index`, `gap` and the like.
    it = grain.experimental.WithOptionsIterDataset(
      it, grain.experimental.DatasetOptions(min_shm_size=SHM_MIN_BYTES)
    )
    it = it.mp_prefetch(
      grain.MultiprocessingOptions(num_workers=worker_count, per_worker_buffer_size=worker_buffer_size),
      worker_init_fn=_worker_init,
    )
  return iter(it)


def merge_repeats(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """[B, R, 2, H, W, C] repeated-sampling pairs → [B * R, 2, H, W, C] (and `gap` [B, R] → [B*R])."""
  out = dict(batch)
  f = batch["frames"]
  if f.ndim == 6:
    out["frames"] = f.reshape(-1, *f.shape[2:])
    if "gap" in batch:
      out["gap"] = np.asarray(batch["gap"]).reshape(-1)
    if "frame_index" in batch:
      out["frame_index"] = np.asarray(batch["frame_index"]).reshape(-1, 2)
    if "index" in batch:
      out["index"] = np.repeat(np.asarray(batch["index"]), f.shape[1])
  return out
