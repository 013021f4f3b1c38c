"""Label propagation against a NumPy reference, on translating blobs, and the DAVIS runner."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

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
    scores = np.concatenate(
      [np.where(nb, f[t] @ fc.T, -np.inf) if r else f[t] @ fc.T for fc, _, r in ctx], axis=1
    )  # [P, C*P]
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


@pytest.mark.parametrize("ties", [False, True])
def test_queries_in_blocks_give_the_same_labels(monkeypatch, ties):
  # Large grids (a patch-8 ViT at 480x880: P = 6,600) propagate their queries in blocks to bound
  # the [b, C, P] affinities; blocks of 4 rows over P = 35 (the last one padded) change nothing.
  import jax

  rng = np.random.default_rng(3)
  feats = rng.normal(size=(6, 5, 7, 8)).astype(np.float32)
  lab0 = rng.integers(0, 3, size=(5, 7))
  kw = dict(context=3, topk=5, radius=2, temperature=0.3, neighbourhood="square", ties=ties)
  whole = np.asarray(labelprop.propagate(feats, lab0, **kw))
  monkeypatch.setattr(labelprop, "AFFINITY_BLOCK", 4 * 4 * 35)  # C = 4 slots: 4 query rows
  jax.clear_caches()
  try:
    blocks = np.asarray(labelprop.propagate(feats, lab0, **kw))
  finally:
    jax.clear_caches()
  np.testing.assert_allclose(blocks, whole, atol=1e-6)
  if not ties:
    want = reference_propagate(
      feats, lab0, kind="square", **{k: kw[k] for k in ("context", "topk", "radius")}, temperature=0.3
    )
    np.testing.assert_allclose(blocks, want, atol=1e-5)


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
    masks[t, 1:3, 1 + t : 3 + t] = 1
    masks[t, 5:7, w - 3 - t : w - 1 - t] = 2
  colours = np.eye(3, dtype=np.float32)
  if same_look:
    colours[2] = colours[1]
  return colours[masks], masks  # features [T, h, w, 3], masks [T, h, w]


@pytest.mark.parametrize("kind", ["square", "euclidean"])
def test_translating_blobs_are_tracked(kind):
  feats, masks = _blob_video()
  soft = np.asarray(
    labelprop.propagate(feats, masks[0], context=4, topk=7, radius=3, temperature=0.1, neighbourhood=kind)
  )
  np.testing.assert_array_equal(soft.argmax(-1), masks)


def test_identical_blobs_are_told_apart_by_the_square_window():
  # Both blobs look the same: only the spatial window (radius 2 < their 4-row separation)
  # keeps each blob's label; its own frame-0 copy is the only same-looking match in range.
  feats, masks = _blob_video(same_look=True)
  soft = np.asarray(
    labelprop.propagate(feats, masks[0], context=3, topk=4, radius=2, temperature=0.1, neighbourhood="square")
  )
  np.testing.assert_array_equal(soft.argmax(-1), masks)


def test_overlay_blends_palette_colours():
  # Pixel (100, 100, 100) under object 1 (DAVIS colour (128, 0, 0)), alpha 0.5:
  # 0.5 * 100 + 0.5 * (128, 0, 0) = (114, 50, 50). Background pixels are left untouched.
  frames = np.full((1, 1, 2, 3), 100, np.uint8)
  masks = np.array([[[1, 0]]], np.uint8)
  np.testing.assert_array_equal(labelprop.overlay(frames, masks), [[[[114, 50, 50], [100, 100, 100]]]])


def _colour_features(frames, patch=4):
  """feature_fn for the runner: mean colour per patch plus a weak position code."""
  t, hh, ww, _ = frames.shape
  h, w = hh // patch, ww // patch
  pooled = frames[:, : h * patch, : w * patch].reshape(t, h, patch, w, patch, 3).mean((2, 4))
  ii, jj = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
  pos = np.broadcast_to(np.stack([ii, jj], -1), (t, h, w, 2)) * 0.2
  return np.concatenate([pooled - 0.5, pos], -1)


def test_propagate_davis_on_synthetic_sequences(tmp_path):
  from aejax.data import synthetic

  seqs = synthetic.davis_like(num_sequences=2, num_frames=6, size=(48, 64), seed=1)
  res = labelprop.propagate_davis(
    _colour_features,
    seqs,
    tmp_path / "pred",
    size=(48, 64),
    patch=4,
    context=3,
    topk=5,
    radius=3,
    temperature=0.1,
    overlay_sequence=seqs[0]["name"],
    log=None,
  )
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
  synthetic.write_davis_like(gt_root, num_sequences=2, num_frames=6, size=(48, 64), seed=1, num_train=0)
  again = davis.evaluate(tmp_path / "pred", gt_root)
  for k in davis.GLOBAL_KEYS:
    assert again[k] == pytest.approx(res[k]), k
  # The folder runner (JPEG frames) scores with the toolkit and writes its CSVs.
  res2 = labelprop.propagate_davis(
    _colour_features,
    gt_root,
    tmp_path / "pred2",
    size=(48, 64),
    patch=4,
    context=3,
    topk=5,
    radius=3,
    temperature=0.1,
    neighbourhood="euclidean",
    log=None,
  )
  assert res2["J-Mean"] > 0.5
  assert (
    (tmp_path / "pred2" / "per-sequence_results-val.csv")
    .read_text()
    .startswith("Sequence,J-Mean,F-Mean\nsynth-000_1,")
  )


def test_runner_rejects_wrong_feature_grid(tmp_path):
  from aejax.data import synthetic

  seqs = synthetic.davis_like(num_sequences=1, num_frames=3, size=(32, 32), seed=0)
  with pytest.raises(ValueError, match=r"synth-000: feature_fn returned \(3, 2, 2, 5\)"):
    labelprop.propagate_davis(
      lambda x: np.zeros((len(x), 2, 2, 5)), seqs, tmp_path, size=(32, 32), patch=8, log=None
    )


# ------------------------------------------------- DINO's eval_video_segmentation.py in NumPy


def dino_label_propagation(feat_tar, list_frame_feats, list_segs, h, w, topk, size_mask):
  """NumPy port of DINO's `label_propagation` (features [h*w, dim], segs [1, C, h, w])."""
  ncontext = len(list_frame_feats)
  # F.normalize(x, dim=1, p=2): x / max(||x||, 1e-12) along axis 1
  norm = lambda f: f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)  # noqa: E731
  feat_sources = norm(np.stack(list_frame_feats))  # nmb_context x dim x h*w
  feat_tar = norm(feat_tar)  # h*w x dim
  aff = np.exp(np.einsum("pd,cdq->cpq", feat_tar, feat_sources) / 0.1).astype(np.float32)
  if size_mask > 0:
    ii, jj = np.divmod(np.arange(h * w), w)
    mask = (np.abs(ii[:, None] - ii[None, :]) <= size_mask) & (
      np.abs(jj[:, None] - jj[None, :]) <= size_mask
    )  # restrict_neighborhood, [tar, src]
    aff = aff * mask[None]
  aff = aff.transpose(0, 2, 1).reshape(-1, h * w)  # nmb_context*h*w (source) x h*w (target)
  tk_val = -np.sort(-aff, axis=0)[:topk]  # torch.topk(aff, dim=0, k=topk) values
  tk_val_min = tk_val.min(axis=0)
  aff[aff < tk_val_min] = 0  # every source >= the k-th largest is kept (ties included)
  aff = aff / aff.sum(axis=0, keepdims=True)
  segs = np.concatenate(list_segs)  # nmb_context x C x h x w
  c = segs.shape[1]
  segs = segs.reshape(ncontext, c, -1).transpose(0, 2, 1).reshape(-1, c).T  # C x nmb_context*h*w
  return (segs @ aff).reshape(1, c, h, w)


def dino_upsample(x, factor):
  """F.interpolate(scale_factor=factor, mode='bilinear', align_corners=False) of [C, h, w]."""

  def axis(n):
    src = np.maximum((np.arange(n * factor) + 0.5) / factor - 0.5, 0)
    i0 = np.floor(src).astype(int)
    return i0, np.minimum(i0 + 1, n - 1), (src - i0).astype(np.float32)

  (r0, r1, lr), (c0, c1, lc) = axis(x.shape[1]), axis(x.shape[2])
  rows = x[:, r0] * (1 - lr)[None, :, None] + x[:, r1] * lr[None, :, None]
  return rows[:, :, c0] * (1 - lc) + rows[:, :, c1] * lc


def dino_norm_mask(mask):
  """DINO's `norm_mask` of [C, H, W]."""
  mask = mask.copy()
  for cnt in range(mask.shape[0]):
    m = mask[cnt]
    if m.max() > 0:
      m = m - m.min()
      mask[cnt] = m / m.max()
  return mask


def dino_masks(feats, seg_ori, patch, n_last_frames=7, size_mask=12, topk=5):
  """DINO's `eval_video_tracking_davis` on given features [T, h, w, D] and the first annotation;
  returns (masks [T, H, W] at the annotation size, soft labels [T, C, h, w], scores [T, C, H, W])."""
  t_len, h, w, d = feats.shape
  small = np.asarray(Image.fromarray(seg_ori).resize((w, h), 0))  # read_seg: NEAREST to the grid
  first_seg = np.eye(int(small.max()) + 1, dtype=np.float32)[small].transpose(2, 0, 1)[None]
  flat = feats.reshape(t_len, h * w, d)
  que = []  # queue.Queue(n_last_frames) of [feat (dim x h*w), seg]
  masks, softs, scores = [seg_ori], [first_seg[0]], [None]
  frame1_feat = flat[0].T
  for cnt in range(1, t_len):
    used_feats = [frame1_feat] + [p[0] for p in que]
    used_segs = [first_seg] + [p[1] for p in que]
    avg = dino_label_propagation(flat[cnt], used_feats, used_segs, h, w, topk, size_mask)
    if len(que) == n_last_frames:
      que.pop(0)
    que.append([flat[cnt].T, avg.copy()])
    up = dino_norm_mask(dino_upsample(avg[0], patch))
    seg = up.argmax(0).astype(np.uint8)
    masks.append(np.asarray(Image.fromarray(seg).resize(seg_ori.shape[::-1], 0)))
    softs.append(avg[0])
    scores.append(up)
  return np.stack(masks), np.stack(softs), scores


def test_protocols_map_to_the_published_parameters():
  s, d = labelprop.PROTOCOLS["siammae"], labelprop.PROTOCOLS["dino"]
  assert (s["topk"], s["context"], s["radius"], s["temperature"], s["size"]) == (7, 20, 20, 0.7, (480, 880))
  assert not s["norm_mask"] and not s["ties"] and s["neighbourhood"] == "square"
  assert (d["topk"], d["context"], d["radius"], d["temperature"], d["size"]) == (5, 7, 12, 0.1, 480)
  assert d["norm_mask"] and d["ties"] and d["neighbourhood"] == "square"
  assert d["pixel_std"] == (0.228, 0.224, 0.225)
  # DINO's read_frame sizing: short side 480, long side floored to a multiple of 64.
  assert labelprop.dino_size(480, 854) == (480, 832)
  assert labelprop.dino_size(854, 480) == (832, 480)
  assert labelprop.dino_size(1080, 1920) == (480, 832)


def _dino_case(seed=0, t_len=11, grid=(16, 24), dim=16):
  """Features that follow a synthetic sequence's objects, frame 1 a copy of frame 0 (exact ties)."""
  from aejax.data import synthetic

  seq = synthetic.davis_like(1, t_len, (96, 160), seed=seed, num_objects=2)[0]
  rng = np.random.default_rng(seed)
  emb = rng.normal(size=(3, dim)).astype(np.float32)
  ids = np.stack([np.asarray(Image.fromarray(m).resize(grid[::-1], 0)) for m in seq["masks"]])
  feats = emb[ids] + 0.8 * rng.normal(size=(t_len, *grid, dim)).astype(np.float32)
  feats[1] = feats[0]
  return seq, feats


def test_many_token_frames_go_to_the_features_fewer_at_a_time(tmp_path, monkeypatch):
  # A ViT's attention grows with (h w)^2: frames with many tokens are passed in smaller calls
  # than `frames_per_call` (here room for 3 frames of 16 x 24 tokens), and the masks are the same.
  seq, feats = _dino_case()
  proto = {**labelprop.PROTOCOLS["dino"], "size": 128}
  calls = {}

  def run(out):
    seen = calls.setdefault(out, [])

    def feature_fn(x):
      seen.append(len(x))
      return feats[sum(seen) - len(x) : sum(seen)]

    labelprop.propagate_davis(
      feature_fn, [seq], tmp_path / out, patch=8, frames_per_call=8, log=None, **proto
    )
    return [davis.read_indexed_png(p)[0] for p in sorted((tmp_path / out / seq["name"]).glob("*.png"))]

  whole = run("a")
  monkeypatch.setattr(labelprop, "ATTENTION_PAIRS", 3 * (16 * 24) ** 2)
  parts = run("b")
  assert calls == {"a": [8, 3], "b": [3, 3, 3, 2]}
  np.testing.assert_array_equal(np.stack(parts), np.stack(whole))


def test_dino_protocol_reproduces_dino_masks(tmp_path):
  """`--protocol dino` = DINO's script on given features: input sizing, first-frame labels, queue
  of 7, square window 12, top-k 5 with ties, temperature 0.1, bilinear x patch, norm_mask, argmax,
  NEAREST back to the annotation size."""
  seq, feats = _dino_case()
  proto = {**labelprop.PROTOCOLS["dino"], "size": 128}  # 96x160 -> 128x192 (DINO's rule)
  seen = []

  def feature_fn(x):
    seen.append(x.shape)
    return feats[: len(x)]

  labelprop.propagate_davis(feature_fn, [seq], tmp_path, patch=8, log=None, **proto)
  assert seen == [(11, 128, 192, 3)]  # 128 // 8 x 192 // 8 = the 16 x 24 feature grid
  want, want_soft, scores = dino_masks(feats, seq["masks"][0], patch=8)
  got = np.stack(
    [davis.read_indexed_png(tmp_path / seq["name"] / f"{t:05d}.png")[0] for t in range(len(feats))]
  )
  # Masks equal wherever DINO's decision is not within float rounding of a tie between objects.
  ambiguous = np.zeros_like(want, bool)
  for t in range(1, len(feats)):
    top2 = np.sort(scores[t], axis=0)[-2:]
    amb = (top2[1] - top2[0] < 1e-4).astype(np.uint8)
    ambiguous[t] = np.asarray(Image.fromarray(amb).resize(want.shape[:0:-1], 0)) > 0
  assert ambiguous.mean() < 0.001
  np.testing.assert_array_equal(got[~ambiguous], want[~ambiguous])
  assert len(np.unique(want[-1])) == 3  # both objects still tracked at the end
  # The soft labels themselves, and the tie rule: frame 1 duplicates frame 0, so from frame 2 on
  # the affinities come in equal pairs and DINO keeps 6 positions where exactly-k keeps 5.
  kw = dict(context=7, topk=5, radius=12, temperature=0.1, neighbourhood="square")
  soft = np.asarray(labelprop.propagate(feats, want_soft[0].argmax(0), ties=True, **kw))
  np.testing.assert_allclose(soft, want_soft.transpose(0, 2, 3, 1), atol=2e-5)
  exact_k = np.asarray(labelprop.propagate(feats, want_soft[0].argmax(0), ties=False, **kw))
  assert np.abs(exact_k - soft)[2:].max() > 1e-2
