"""Shot-aware key frames (`aejax.keyframes.shots`), sets of videos with known shots
(`aejax.keyframes.cutset`) and their scoring, `extract --weights` and `eval --videos`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aejax import keyframes as kf
from aejax.data.video import open_video
from aejax.keyframes import cutset
from aejax.keyframes import shots as S


def test_cut_cue_and_relative_distance():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 255, (36, 64, 3), dtype=np.uint8)
  ha, hb = S.hsv_small(a), S.hsv_small(255 - a)
  assert ha.shape == (36, 64, 3) and S.hsv_small(np.zeros((90, 320, 3), np.uint8)).shape == (27, 96, 3)
  assert S.content_score(ha, ha) == 0.0 and S.content_score(ha, hb) > 30
  f = rng.normal(size=(5, 7))
  assert S.relative_distance(f, f) == 0.0
  assert S.relative_distance(3 * f, 3 * f + 0.3) == pytest.approx(S.relative_distance(f, f + 0.1))
  assert S.relative_distance(f, -f) == pytest.approx(2.0)
  maps = rng.normal(size=(2, 4, 6, 3))
  p = S.pooled(maps)
  assert p.shape == (2, 6)
  np.testing.assert_allclose(p[1, :3], maps[1].mean((0, 1)))
  np.testing.assert_allclose(S.pooled(maps[:, :, ::-1]), p)  # a mirrored (panned) view: same pooled stats


def test_find_cuts_absolute_and_local_ratio():
  # a cut at 3 (score 50 among ~2) and a pan 6..9 (scores ~25 among ~25): only the cut counts
  scores = np.array([np.nan, 2, 1, 50, 2, 3, 24, 26, 25, 27, 1])
  assert S.find_cuts(scores, threshold=20, ratio=2) == [3]
  assert S.find_cuts(scores, threshold=20, ratio=0) == [3, 6, 7, 8, 9]
  assert S.find_cuts(scores, threshold=60, ratio=0) == []


def test_segments_static_short_and_near_duplicates():
  times = np.arange(20) / 2.0  # 2 samples per second, 10 s
  sharp = np.arange(20, dtype=float) % 7
  feats = np.zeros((20, 4))
  feats[10:] = [1, 0, 0, 0]  # shot 2 changes content at sample 10 ...
  feats[16:] = 0  # ... and returns to the first look at 16 (8 s)
  shots = [0, 4, 5]  # shot 1 is 0.5 s: no key frame
  short = S.short_shots(shots, times, 10.0, 1.0)
  assert short == [False, True, False]
  segs = S.segment_shots(shots, feats, sharp, times, change_threshold=0.5, min_segment=1.0, short=short)
  assert [(g.shot, g.start, g.end) for g in segs] == [
    (0, 0, 4),
    (1, 4, 5),
    (2, 5, 10),
    (2, 10, 16),
    (2, 16, 20),
  ]
  # the sharpest sample of each segment; the return to the first look (16..19) repeats key 6: no key
  assert [g.key for g in segs] == [3, -1, 6, 13, -1]
  # with a duplicate threshold below the distance of the two looks (1.41) but above 0: the same
  kw = dict(change_threshold=0.5, min_segment=1.0, short=short)
  assert [g.key for g in S.segment_shots(shots, feats, sharp, times, duplicate_threshold=0.1, **kw)] == [
    3,
    -1,
    6,
    13,
    -1,
  ]
  # one above it: every representative of shot 2 repeats the first, so shot 2 is one segment
  segs = S.segment_shots(shots, feats, sharp, times, duplicate_threshold=1.5, **kw)
  assert [(g.start, g.end, g.key) for g in segs][2:] == [(5, 20, 6)]
  static = S.segment_shots([0], np.ones((20, 4)), sharp, times, change_threshold=0.5, min_segment=1.0)
  assert len(static) == 1 and static[0].key == 6
  # near-duplicate representatives merge: a one-sample flash at 5 opens segments at 5 and 7, but
  # every segment's sharpest sample shows the same picture: one segment, the sharpest overall
  flash = np.zeros((20, 4))
  flash[5] = [1, 0, 0, 0]
  sharp = np.zeros(20)
  sharp[[6, 12]] = [5.0, 9.0]
  segs = S.segment_shots([0], flash, sharp, times, change_threshold=0.5, min_segment=1.0)
  assert [(g.start, g.end, g.key) for g in segs] == [(0, 20, 12)]


def _follow(keeper, cue, times, sharp, feats, frames, batch=8):
  """Feeds a `PossibleKeys` as `scan.scan_shots` does (features given in batches, late); returns
  the positions whose features it wanted and the most frames it held at once."""
  wanted, queued, decided, most = [], [], 0, 0

  def decide(final):
    nonlocal decided
    while decided < len(keeper.cue) and (final or keeper.final(decided)):
      if keeper.wanted(decided):
        wanted.append(decided)
        queued.append(decided)
      decided += 1
      if len(queued) == batch or final:
        for q in queued:
          keeper.set_feature(q, feats[q])
        queued.clear()

  for t in range(len(times)):
    keeper.cue.append(cue[t])
    keeper.add(times[t], sharp[t], frames[t])
    decide(final=False)
    most = max(most, len(keeper.frames) + keeper.backlog)
  decide(final=True)
  keeper.finish()
  return wanted, most


def test_possible_keys_want_only_the_features_read_and_hold_every_key_frame():
  rng = np.random.default_rng(3)
  n = 300
  times = np.arange(n) / 5.0
  cue = rng.uniform(0, 8, n)
  cue[0] = np.nan
  cue[rng.choice(np.arange(5, n), 12, replace=False)] = 60.0  # cuts (some only a sample apart)
  looks = rng.normal(size=(4, 6))  # four looks, each for 2.4 s at a time, that come back
  feats = looks[rng.integers(0, 4, n // 12).repeat(12)] + rng.normal(0, 0.05, (n, 6))
  sharp = rng.integers(0, 5, n).astype(float)  # ties: the first maximum wins, as np.argmax
  kw = dict(cut_threshold=20.0, cut_ratio=2.0, change_threshold=0.3, min_segment=2.0)
  dup = dict(min_shot=1.0, duplicate_threshold=0.6)
  rules = S.ShotRules(**kw, **dup)
  select = lambda f: S.select_shots(times, cue, f, sharp, n / 5.0, rules)
  starts, segs = select(feats)
  keys = {g.key for g in segs if g.key >= 0}
  shots_with_keys = {g.shot for g in segs if g.key >= 0}
  assert len(keys) > 10 and any(g.key < 0 and g.shot in shots_with_keys for g in segs)  # near-duplicates
  frames = rng.integers(0, 255, (n, 4, 4, 3), dtype=np.uint8)
  keeper = S.PossibleKeys(rules)
  wanted, most = _follow(keeper, cue, times, sharp, feats, frames)
  assert len(wanted) < 0.7 * n and most < 3 * len(keys)  # some features and frames are never needed
  # the selection reads no other feature: the wanted ones and those of `compared` give the same result
  known = np.full_like(feats, np.nan)
  known[wanted + keeper.compared] = feats[wanted + keeper.compared]
  assert select(known) == (starts, segs)
  assert keys <= set(keeper.frames) and all(np.array_equal(keeper.frames[k], frames[k]) for k in keys)
  small = S.PossibleKeys(rules, max_bytes=5 * 48)  # room for five 4x4x3 frames: the latest five kept
  _follow(small, cue, times, sharp, feats, frames)
  assert list(small.frames) == list(keeper.frames)[-5:]


def test_score_keyframes_hand_worked():
  entry = {
    "fps": 10,
    "num_frames": 100,
    "shots": [{"start": 0, "static": True}, {"start": 30}, {"start": 35}, {"start": 60, "static": True}],
  }
  r = cutset.score_keyframes([5, 20, 40, 61, 70, 80], entry, cut_frames=[0, 31, 58, 90])
  assert r == {
    "shots": 4,
    "long_shots": 3,
    "covered": 3,
    "keyframes": 6,
    "redundant": 3,
    "static_shots": 2,
    "cuts": 3,
    "cuts_detected": 3,
    "cuts_found": 2,
  }
  s = cutset.summarize([r, r])
  assert s["coverage"] == 1.0 and s["keyframes_per_shot"] == 1.5 and s["redundant"] == 6
  assert s["cut_recall"] == pytest.approx(2 / 3) and s["cut_precision"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def real_set(realdata, tmp_path_factory):
  """One small real-footage video with known shots (pans, zooms, static, real video, a short shot)."""
  out = tmp_path_factory.mktemp("cutset")
  cutset.make_real_set(
    out,
    realdata / "photos",
    realdata / "videos",
    num_videos=1,
    shots_per_video=6,
    seed=3,
    formats=((90, 160, 12.0),),
  )
  return out


def test_real_set_is_what_shots_json_says(real_set):
  from aejax.data.video import VideoReader

  entries = cutset.load_set(real_set)
  ((path, e),) = entries.items()
  kinds = [s["kind"] for s in e["shots"]]
  assert len(kinds) == 6 and kinds.count("short") == 1 and kinds.count("video") == 2
  with VideoReader(path) as r:
    assert r.num_frames == e["num_frames"] and r.size == (90, 160)
    frames = r.read([s["start"] for s in e["shots"]] + [s["start"] - 1 for s in e["shots"][1:]])
  k = len(kinds)
  # every cut is a real change of picture: the frames either side differ far more than H.264 noise
  for first, last_before in zip(frames[1:k], frames[k:]):
    assert np.abs(first.astype(int) - last_before).mean() > 10


def test_shot_selection_covers_every_shot_of_real_footage(real_set):
  ((path, e),) = cutset.load_set(real_set).items()
  sel = kf.select_video(path, kf.raw_embed_fn, model_size=(48, 96), rate=6.0)
  keys = [sel["candidates"][k].index for k in sel["keys"]]
  r = cutset.score_keyframes(keys, e, cut_frames=sel["shot_starts"])
  assert r["covered"] == r["long_shots"] and r["redundant"] == 0 and r["cuts_found"] == r["cuts"]
  assert r["keyframes"] <= 1.5 * r["shots"]
  # the key frames' pixels were kept while scanning, the same as decoding them again
  with open_video(path) as reader:
    again = reader.read(keys)
  assert sorted(sel["frames"]) == sorted(keys)
  assert all(np.array_equal(sel["frames"][k], f) for k, f in zip(keys, again))
  # clips are the segments: they tile the video, and each starts at a detected shot start or inside a shot
  clips = sel["clips"]
  assert clips[0]["start"] == 0 and clips[-1]["end"] == e["num_frames"]
  assert all(a["end"] == b["start"] for a, b in zip(clips[:-1], clips[1:]))
  assert set(sel["shot_starts"]) <= {c["start"] for c in clips}


def test_extract_with_weights_file_and_eval_folder(real_set, tmp_path):
  import jax.numpy as jnp
  from test_original_weights import _keyframe_torch_layout, _random_variables

  from aejax.models.keyframe_ae import KeyframeAE
  from experiments import keyframes as exp

  weights = tmp_path / "released.npz"
  np.savez(
    weights,
    **_keyframe_torch_layout(_random_variables(KeyframeAE(share_norms=True), jnp.zeros((1, 8, 8, 3)))),
  )
  ((path, e),) = cutset.load_set(real_set).items()
  common = [
    "--weights",
    str(weights),
    "--compilation_cache",
    "",
    "--config.extract.model_size=(48, 96)",
    "--config.extract.write_clips=False",
  ]
  res = exp.main(["extract", "--video", path, "--out", str(tmp_path / "x"), *common])
  meta = json.loads((tmp_path / "x" / "keyframes.json").read_text())
  assert res["keyframes"] == len(meta["keyframes"]) >= 1 and meta["shot_starts"][0] == 0
  assert (tmp_path / "x" / "contact_sheet.png").is_file() and meta["clips"] == []
  with pytest.raises(ValueError, match="not both"):
    exp.main(
      ["extract", "--video", path, "--checkpoint", str(tmp_path), "--out", str(tmp_path / "y"), *common]
    )
  ev = exp.main(
    [
      "eval",
      "--videos",
      str(real_set),
      "--out",
      str(tmp_path / "ev"),
      "--config.eval.methods=pixels,weights",
      *common,
    ]
  )
  assert set(ev) == {"pixels", "weights"}
  for r in ev.values():
    assert 0.0 <= r["coverage"] <= 1.0 and r["shots"] == len(e["shots"]) and r["seconds"] > 0


def test_original_rule_on_the_released_weights(real_set, tmp_path):
  import os
  from pathlib import Path

  d = os.environ.get("AEJAX_ORIGINAL_WEIGHTS")
  if not d or not (Path(d) / "MS_SSIM_L1-epoch-50.pth").is_file():
    pytest.skip("set AEJAX_ORIGINAL_WEIGHTS=DIR holding MS_SSIM_L1-epoch-50.pth")
  from experiments import keyframes as exp

  ((path, _),) = cutset.load_set(real_set).items()
  exp.main(
    [
      "extract",
      "--preset",
      "original",
      "--weights",
      str(Path(d) / "MS_SSIM_L1-epoch-50.pth"),
      "--video",
      path,
      "--out",
      str(tmp_path / "o"),
      "--compilation_cache",
      "",
      "--config.extract.write_clips=False",
    ]
  )
  meta = json.loads((tmp_path / "o" / "keyframes.json").read_text())
  s = meta["settings"]
  assert (s["method"], s["metric"], s["reference"], s["threshold"], s["model_size"]) == (
    "novelty",
    "recon",
    "previous",
    60.0,
    None,
  )
  scores = [c["score"] for c in meta["candidates"][1:]]
  assert all(v > 0 for v in scores)  # the x200 legacy loss between reconstructions at native size
  assert [k["frame"] for k in meta["keyframes"]] == [meta["candidates"][0]["frame"]] + [
    c["frame"] for c in meta["candidates"][1:] if c["score"] > 60
  ]
