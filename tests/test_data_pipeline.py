"""Grain pipelines: order, shuffling, epochs, sharding, exact resume (Orbax), worker processes."""

from __future__ import annotations

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aejax.data import synthetic
from aejax.data import transforms as T
from aejax.data.pipeline import make_dataset, make_loader, merge_repeats
from aejax.data.sources import ArraySource, MovingMNISTSource, VideoPairSource


def _toy(n=10):
  return ArraySource(
    {"image": np.arange(n * 12, dtype=np.uint8).reshape(n, 2, 2, 3), "label": np.arange(n, dtype=np.int32)},
    name="toy",
  )


def _labels(it, k):
  return [next(it)["label"].tolist() for _ in range(k)]


def test_order_epochs_and_remainder():
  it = make_loader(_toy(), batch_size=4, shuffle=False, num_epochs=1, drop_remainder=False)
  batches = list(it)
  assert [b["label"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
  assert batches[0]["image"].shape == (4, 2, 2, 3) and batches[0]["image"].dtype == np.uint8
  it = make_loader(_toy(), batch_size=4, shuffle=False, num_epochs=1)
  assert len(list(it)) == 2  # drop_remainder
  it = make_loader(_toy(), batch_size=5, shuffle=True, num_epochs=2, seed=1)
  e1 = sum(_labels(it, 2), [])
  e2 = sum(_labels(it, 2), [])
  assert sorted(e1) == sorted(e2) == list(range(10)) and e1 != e2  # new order per epoch
  with pytest.raises(StopIteration):
    next(it)
  again = make_loader(_toy(), batch_size=5, shuffle=True, num_epochs=2, seed=1)
  assert sum(_labels(again, 2), []) == e1  # deterministic by seed
  other = make_loader(_toy(), batch_size=5, shuffle=True, num_epochs=2, seed=2)
  assert sum(_labels(other, 2), []) != e1


@pytest.mark.parametrize("n", [7, 1100])  # NumPy permutation (small) and Grain's index shuffle
def test_make_dataset_epochs_are_permutations(n):
  src = ArraySource({"label": np.arange(n)})
  ds = make_dataset(src, seed=4, num_epochs=3)
  labels = np.array([int(ds[k]["label"]) for k in range(3 * n)]).reshape(3, n)
  for e in range(3):
    np.testing.assert_array_equal(np.sort(labels[e]), np.arange(n))
  assert not np.array_equal(labels[0], labels[1]) and not np.array_equal(labels[0], np.arange(n))
  again = make_dataset(src, seed=4, num_epochs=3)
  assert [int(again[k]["label"]) for k in range(n)] == labels[0].tolist()


def test_shard_by_process(monkeypatch):
  import jax

  monkeypatch.setattr(jax, "process_count", lambda: 2)
  seen = []
  for i in range(2):
    monkeypatch.setattr(jax, "process_index", lambda i=i: i)
    ds = make_dataset(_toy(), shuffle=True, seed=3, num_epochs=1)
    seen.append({int(ds[k]["label"]) for k in range(len(ds))})
  assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(10))
  assert len(seen[0]) == len(seen[1]) == 5


def _pair_source(tmp_path):
  synthetic.write_video_folder(tmp_path / "v", n=3, num_frames=20, size=(32, 40), fps=30.0)
  return VideoPairSource(tmp_path / "v", gap=(2, 10), cache_path=False)


def test_sampled_sources_draw_new_pairs_each_epoch(tmp_path):
  src = _pair_source(tmp_path)
  it = make_loader(
    src, batch_size=3, shuffle=False, num_epochs=3, transforms=[T.RandomResizedCrop(16), T.ToFloat()]
  )
  idx = [next(it)["frame_index"].tolist() for _ in range(3)]
  assert idx[0] != idx[1] or idx[1] != idx[2]
  b = make_loader(src, batch_size=3, shuffle=False)
  first = next(b)
  assert first["frames"].shape == (3, 2, 16 * 2, 20 * 2, 3)  # no transforms: source size
  rep = VideoPairSource(tmp_path / "v", gap=(2, 10), repeats=2, cache_path=False)
  mb = merge_repeats(next(make_loader(rep, batch_size=3, transforms=[T.RandomResizedCrop(8)])))
  assert mb["frames"].shape == (6, 2, 8, 8, 3) and mb["gap"].shape == (6,)
  np.testing.assert_array_equal(mb["frame_index"][:, 1] - mb["frame_index"][:, 0], mb["gap"])


def test_resume_exactly_through_orbax(tmp_path):
  src = MovingMNISTSource(num_sequences=12, num_frames=4, size=32, seed=0)
  tf = [T.RandomFlip(), T.ToFloat(), T.GaussianNoise(0.1)]
  it = make_loader(src, batch_size=4, transforms=tf, seed=7)
  for _ in range(4):  # past an epoch boundary
    next(it)
  mngr = ocp.CheckpointManager(tmp_path / "ckpt")
  mngr.save(4, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
  mngr.wait_until_finished()
  want = [next(it) for _ in range(3)]
  fresh = make_loader(src, batch_size=4, transforms=tf, seed=7)
  mngr.restore(4, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  got = [next(fresh) for _ in range(3)]
  for w, g in zip(want, got):
    np.testing.assert_array_equal(w["index"], g["index"])
    np.testing.assert_array_equal(w["video"], g["video"])  # noise and flips included
  mngr.close()


def test_worker_processes_match_and_resume(tmp_path):
  src = _toy(16)
  tf = [T.RandomFlip(), T.ToFloat(), T.GaussianNoise(0.1)]
  ref = make_loader(src, batch_size=4, transforms=tf, seed=5)
  want = [next(ref) for _ in range(6)]
  it = make_loader(src, batch_size=4, transforms=tf, seed=5, worker_count=2)
  try:
    got = [next(it) for _ in range(3)]
    state = it.get_state()
  finally:
    it.close()
  it2 = make_loader(src, batch_size=4, transforms=tf, seed=5, worker_count=2)
  try:
    it2.set_state(state)
    got += [next(it2) for _ in range(3)]
  finally:
    it2.close()
  for w, g in zip(want, got):
    np.testing.assert_array_equal(w["label"], g["label"])
    np.testing.assert_allclose(w["image"], g["image"])
