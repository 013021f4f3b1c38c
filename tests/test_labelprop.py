"""Label propagation against a NumPy reference, on translating blobs, and the DAVIS runner."""

from __future__ import annotations

import numpy as np
import pytest

from aejax import davis, labelprop


def reference_propagate(feats, lab0, *, context, topk, radius, temperature, kind):
  """Loop-by-loop NumPy version of DINO / CRW propagation (a Python list as the queue)."""
  t_len, h, w, d = feats.shape
  p = h * w
  f = feats.reshape(t_len, p, d).astype(np.float64)
  f = f / np.linalg.norm(f, axis=-1, keepdims=True)
  k_cls = int(lab0.max()) + 1
  l0 = np.eye(k_cls)[lab0.reshape(-1)]
  ii, jj = np.divmod(np.arange(p), w)
  di, dj = ii[:, None] - ii[None, :], jj[:, None] - jj[None, :]
  if kind == "square":
    nb = (np.abs(di) <= radius) & (np.abs(dj) <= radius)
  else:
    nb = di**2 + dj**2 < radius**2
  out, queue = [l0], []
  for t in range(1, t_len):
    ctx = [(f[0], l0, kind == "square")] + [(fq, lq, True) for fq, lq in queue]
    scores = np.concatenate([np.where(nb, f[t] @ fc.T, -np.inf) if r else f[t] @ fc.T
                             for fc, _, r in ctx], axis=1)  # [P, C*P]
    labels = np.concatenate([lc for _, lc, _ in ctx])  # [C*P, K]
    pred = np.zeros((p, k_cls))
    for q in range(p):
      best = np.argsort(-scores[q], kind="stable")[:topk]
      v = scores[q, best] / temperature
      wts = np.exp(v - v.max())
      pred[q] = (wts / wts.sum()) @ labels[best]
    out.append(pred)
    queue.append((f[t], pred))
    if len(queue) > context:
      queue.pop(0)
  return np.stack(out).reshape(t_len, h, w, k_cls)


@pytest.mark.parametrize("kind", ["square", "euclidean"])
def test_matches_numpy_reference(kind):
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(7, 5, 6, 8)).astype(np.float32)  # T=7 > context+1: the ring wraps
  lab0 = rng.integers(0, 3, size=(5, 6))
  kw = dict(context=3, topk=5, radius=2, temperature=0.3)
  got = np.asarray(labelprop.propagate(feats, lab0, neighbourhood=kind, **kw))
  want = reference_propagate(feats, lab0, kind=kind, **kw)
  assert got.shape == (7, 5, 6, 3)
  np.testing.assert_allclose(got, want, atol=1e-5)
  np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)  # convex combinations of one-hots
  # Compiled once per shape: another call with other values but the same shapes reuses it.
  cache_size = getattr(labelprop._propagate, "_cache_size", lambda: 0)  # private jax API
  n = cache_size()
  labelprop.propagate(feats[::-1].copy(), lab0[::-1].copy(), neighbourhood=kind, **kw)
  kw["temperature"] = 0.07  # a temperature grid search reuses the compilation too
  hot = np.asarray(labelprop.propagate(feats, lab0, neighbourhood=kind, **kw))
  assert cache_size() == n
  np.testing.assert_allclose(hot, reference_propagate(feats, lab0, kind=kind, **kw), atol=1e-5)


def test_causal_zero_padding_keeps_earlier_frames():
  # The runner appends zero frames to bucket sequence lengths; frame t must not see later ones.
  rng = np.random.default_rng(1)
  feats = rng.normal(size=(5, 4, 4, 6)).astype(np.float32)
  lab0 = rng.integers(0, 2, size=(4, 4))
  padded = np.concatenate([feats, np.zeros((3, 4, 4, 6), np.float32)])
  a = np.asarray(labelprop.propagate(feats, lab0, context=2, topk=3, radius=1))
  b = np.asarray(labelprop.propagate(padded, lab0, context=2, topk=3, radius=1))
  assert np.isfinite(b).all()
  np.testing.assert_allclose(b[:5], a, atol=1e-6)


def test_neighbourhood_masks():
  # 3x3 grid, radius 1. Square: the centre (index 4) reaches all 9 cells, a corner (0) reaches
  # its 2x2 block {0, 1, 3, 4}. Euclidean strict (d² < 1): only the cell itself.
  sq = np.asarray(labelprop.neighbourhood_mask(3, 3, 1, "square"))
  eu = np.asarray(labelprop.neighbourhood_mask(3, 3, 1, "euclidean"))
  assert sq[4].all() and np.flatnonzero(sq[0]).tolist() == [0, 1, 3, 4]
  np.testing.assert_array_equal(eu, np.eye(9, dtype=bool))
  # Radius 2 Euclidean: d² in {0, 1, 2} < 4 -> the 3x3 block; the centre reaches all 9.
  assert np.asarray(labelprop.neighbourhood_mask(3, 3, 2, "euclidean"))[4].all()
  assert np.asarray(labelprop.neighbourhood_mask(3, 3, None)).all()


def _blob_video(t_len=8, h=8, w=14, same_look=False):
  """Two 2x2 blobs moving right / left by one cell a frame; features are colour codes."""
  masks = np.zeros((t_len, h, w), np.int64)
  for t in range(t_len):
    masks[t, 1:3, 1 + t:3 + t] = 1
    masks[t, 5:7, w - 3 - t:w - 1 - t] = 2
  colours = np.eye(3, dtype=np.float32)
  if same_look:
    colours[2] = colours[1]
  return colours[masks], masks  # features [T, h, w, 3], masks [T, h, w]


@pytest.mark.parametrize("kind", ["square", "euclidean"])
def test_translating_blobs_are_tracked(kind):
  feats, masks = _blob_video()
  soft = np.asarray(labelprop.propagate(feats, masks[0], context=4, topk=7, radius=3,
                                        temperature=0.1, neighbourhood=kind))
  np.testing.assert_array_equal(soft.argmax(-1), masks)


def test_identical_blobs_are_told_apart_by_the_square_window():
  # Both blobs look the same: only the spatial window (radius 2 < their 4-row separation)
  # keeps each blob's label; its own frame-0 copy is the only same-looking match in range.
  feats, masks = _blob_video(same_look=True)
  soft = np.asarray(labelprop.propagate(feats, masks[0], context=3, topk=4, radius=2,
                                        temperature=0.1, neighbourhood="square"))
  np.testing.assert_array_equal(soft.argmax(-1), masks)


def test_overlay_blends_palette_colours():
  # Pixel (100, 100, 100) under object 1 (DAVIS colour (128, 0, 0)), alpha 0.5:
  # 0.5 * 100 + 0.5 * (128, 0, 0) = (114, 50, 50). Background pixels are left untouched.
  frames = np.full((1, 1, 2, 3), 100, np.uint8)
  masks = np.array([[[1, 0]]], np.uint8)
  np.testing.assert_array_equal(labelprop.overlay(frames, masks),
                                [[[[114, 50, 50], [100, 100, 100]]]])


def _colour_features(frames, patch=4):
  """feature_fn for the runner: mean colour per patch plus a weak position code."""
  t, hh, ww, _ = frames.shape
  h, w = hh // patch, ww // patch
  pooled = frames[:, :h * patch, :w * patch].reshape(t, h, patch, w, patch, 3).mean((2, 4))
  ii, jj = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
  pos = np.broadcast_to(np.stack([ii, jj], -1), (t, h, w, 2)) * 0.2
  return np.concatenate([pooled - 0.5, pos], -1)


def test_propagate_davis_on_synthetic_sequences(tmp_path):
  from aejax.data import synthetic

  seqs = synthetic.davis_like(num_sequences=2, num_frames=6, size=(48, 64), seed=1)
  res = labelprop.propagate_davis(_colour_features, seqs, tmp_path / "pred", size=(48, 64),
                                  patch=4, context=3, topk=5, radius=3, temperature=0.1,
                                  overlay_sequence=seqs[0]["name"], log=None)
  for k in davis.GLOBAL_KEYS:
    assert 0.0 <= res[k] <= 1.0 or k.endswith("Decay")
  assert res["J&F-Mean"] == pytest.approx((res["J-Mean"] + res["F-Mean"]) / 2)
  # Colour features follow these shapes (objects of ~130 px on a 12x16 grid): J 0.63 here.
  assert res["J-Mean"] > 0.5
  # DAVIS layout: indexed PNGs with the DAVIS palette, frame 0 = GT, annotation size kept.
  name = seqs[0]["name"]
  m0, pal = davis.read_indexed_png(tmp_path / "pred" / name / "00000.png")
  np.testing.assert_array_equal(m0, seqs[0]["masks"][0])
  np.testing.assert_array_equal(pal[:4], davis.DAVIS_PALETTE[:4])
  m5, _ = davis.read_indexed_png(tmp_path / "pred" / name / "00005.png")
  assert m5.shape == (48, 64) and m5.max() <= seqs[0]["masks"][0].max()
  assert (tmp_path / "pred" / "global_results-val.csv").is_file()
  assert (tmp_path / "pred" / "overlays" / name / "00003.png").is_file()
  assert (tmp_path / "pred" / "overlays" / f"{name}.mp4").stat().st_size > 0
  # The same PNGs scored from a DAVIS-layout folder give the same numbers as in memory.
  gt_root = tmp_path / "gt"
  synthetic.write_davis_like(gt_root, num_sequences=2, num_frames=6, size=(48, 64), seed=1,
                             num_train=0)
  again = davis.evaluate(tmp_path / "pred", gt_root)
  for k in davis.GLOBAL_KEYS:
    assert again[k] == pytest.approx(res[k]), k
  # The folder runner (JPEG frames) scores with the toolkit and writes its CSVs.
  res2 = labelprop.propagate_davis(_colour_features, gt_root, tmp_path / "pred2", size=(48, 64),
                                   patch=4, context=3, topk=5, radius=3, temperature=0.1,
                                   neighbourhood="euclidean", log=None)
  assert res2["J-Mean"] > 0.5
  assert (tmp_path / "pred2" / "per-sequence_results-val.csv").read_text().startswith(
      "Sequence,J-Mean,F-Mean\nsynth-000_1,")


def test_runner_rejects_wrong_feature_grid(tmp_path):
  from aejax.data import synthetic

  seqs = synthetic.davis_like(num_sequences=1, num_frames=3, size=(32, 32), seed=0)
  with pytest.raises(ValueError, match=r"synth-000: feature_fn returned \(3, 2, 2, 5\)"):
    labelprop.propagate_davis(lambda x: np.zeros((len(x), 2, 2, 5)), seqs, tmp_path, size=(32, 32),
                              patch=8, log=None)
