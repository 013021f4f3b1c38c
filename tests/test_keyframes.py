"""Key-frame autoencoder (exact parameter count, BatchNorm behaviour), the selection algorithm's
edge cases (hand-worked), and the experiment's smoke preset end to end."""

from __future__ import annotations

import json

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import keyframes as kf
from aejax.models.keyframe_ae import KeyframeAE, flax_momentum, param_count

# ---------------------------------------------------------------------------------- the model


def _init(model, shape=(4, 16, 32, 3)):  # one shape for every test: eager ops compile once
  return model.init(jax.random.key(0), jnp.zeros(shape), train=False)


def _shapes(model, shape):
  return jax.eval_shape(lambda: _init(model, shape))


def test_parameter_count_of_the_original():
  v = _shapes(KeyframeAE(share_norms=True), (1, 96, 192, 3))
  assert param_count(v["params"]) == 580_449
  assert sorted(v["batch_stats"]) == ["bn0", "bn1", "bn2", "bn3", "bn4", "bn5"]
  sep = _shapes(KeyframeAE(), (1, 96, 192, 3))
  assert param_count(sep["params"]) == 580_449 + 2 * (64 + 128 + 64 + 32)


def test_shapes_and_range():
  model = KeyframeAE(features=(4, 8, 8, 4), latent_channels=2)
  x = jax.random.uniform(jax.random.key(1), (4, 16, 32, 3), minval=-1, maxval=1)
  v = _init(model, x.shape)
  (y, aux), state = model.apply(v, x, train=True, mutable=["batch_stats"])
  assert y.shape == x.shape and aux["z"].shape == (4, 2, 4, 2)
  assert float(jnp.abs(y).max()) <= 1.0
  z = model.apply(v, x, train=False, method=KeyframeAE.encode)
  np.testing.assert_allclose(
    model.apply(v, z, method=KeyframeAE.decode), model.apply(v, x, train=False)[0], atol=1e-6
  )
  with pytest.raises(ValueError, match="divisible by 8"):
    model.apply(v, jnp.zeros((4, 20, 32, 3)), train=False)


def test_batchnorm_momentum_and_shared_double_update():
  assert flax_momentum(0.1) == pytest.approx(0.9) and flax_momentum(0.5) == 0.5
  x = jax.random.uniform(jax.random.key(4), (4, 16, 32, 3), minval=-1, maxval=1)
  for share in (True, False):
    model = KeyframeAE(features=(4, 8, 8, 4), latent_channels=2, share_norms=share)
    v = _init(model)
    _, full = model.apply(v, x, train=True, mutable=["batch_stats"])
    _, enc = model.apply(v, x, train=True, mutable=["batch_stats"], method=KeyframeAE.encode)
    # PyTorch momentum 0.5: running = 0.5 * 0 + 0.5 * batch mean
    np.testing.assert_allclose(
      full["batch_stats"]["bn0"]["mean"], 0.5 * np.asarray(x).mean((0, 1, 2)), atol=1e-6
    )
    np.testing.assert_allclose(full["batch_stats"]["bn5"]["mean"], enc["batch_stats"]["bn5"]["mean"])
    same = np.allclose(full["batch_stats"]["bn1"]["mean"], enc["batch_stats"]["bn1"]["mean"])
    assert same != share  # shared norms are updated a second time by the decoder
  # inference mode: an image's output does not depend on the rest of the batch
  y_all = model.apply(full | {"params": v["params"]}, x, train=False)[0]
  y_one = model.apply(full | {"params": v["params"]}, x[:1], train=False)[0]
  np.testing.assert_allclose(y_all[:1], y_one, atol=1e-5)


# ------------------------------------------------------------------------- the algorithm


def test_sampling_fixes_low_fps_and_fractional_fps():
  assert [i for i in range(31) if kf.is_sampled(i, 30, 5)] == [0, 6, 12, 18, 24, 30]
  assert [i for i in range(6) if kf.is_sampled(i, 3, 5)] == [0, 1, 2, 3, 4, 5]  # fps < rate
  got = [i for i in range(61) if kf.is_sampled(i, 29.97, 5)]
  assert len(got) == 11 and set(np.diff(got)) <= {5, 6}


def _frame(sharp: bool, seed: int, shape=(24, 32)):
  if not sharp:
    return np.full((*shape, 3), 128, np.uint8)
  return np.random.default_rng(seed).integers(0, 255, (*shape, 3), dtype=np.uint8)


def test_sharpest_per_second_resets_and_keeps_partial_second():
  # fps 4: seconds {0..3}, {4..7}, {8, 9}; sharp frames at 2 and 9; second 1 is flat
  frames = [_frame(i in (2, 9), i) for i in range(10)]
  cands = list(kf.sharpest_per_second(enumerate(frames), fps=4))
  assert [c.index for c in cands] == [2, 4, 9]  # second 1 gives its own (first) frame, not frame 2
  assert cands[1].sharpness == 0.0 and cands[2].time == pytest.approx(2.25)
  with pytest.raises(ValueError, match="fps"):
    list(kf.sharpest_per_second(enumerate(frames), fps=0))


def _dist(values):
  v = np.asarray(values, np.float64)[:, None]
  return kf.make_dist_pairs(v, "latent")


def test_selection_last_key_catches_drift_previous_does_not():
  d = _dist([0, 0.1, 0.2, 0.3, 5, 5.1])
  keys, scores, thr = kf.select_keyframes(6, d, reference="last", threshold_mode="absolute", threshold=0.25)
  assert keys == [0, 3, 4] and thr == 0.25
  np.testing.assert_allclose(scores[1:], [0.1, 0.2, 0.3, 4.7, 0.1], rtol=1e-6)
  keys, scores, _ = kf.select_keyframes(6, d, reference="previous", threshold_mode="absolute", threshold=0.25)
  assert keys == [0, 4]
  np.testing.assert_allclose(scores[1:], [0.1, 0.1, 0.1, 4.7, 0.1], rtol=1e-6)


def test_selection_top_n_and_percentile():
  d = _dist([0, 1, 1.5, 4, 4.2, 9])
  keys, _, thr = kf.select_keyframes(6, d, reference="previous", threshold_mode="top", threshold=3)
  assert keys == [0, 3, 5] and thr == pytest.approx(2.5)
  for n in (1, 2, 3, 4, 6):
    keys, _, _ = kf.select_keyframes(6, d, reference="last", threshold_mode="top", threshold=n)
    assert len(keys) == n and keys[0] == 0
  keys, _, thr = kf.select_keyframes(6, d, reference="previous", threshold_mode="percentile", threshold=50)
  assert thr == pytest.approx(1.0) and keys == [0, 3, 5]  # consecutive: 1, .5, 2.5, .2, 4.8
  with pytest.raises(ValueError, match="reference"):
    kf.select_keyframes(6, d, reference="first")
  with pytest.raises(ValueError, match="whole number"):
    kf.select_keyframes(6, d, threshold_mode="top", threshold=0)


def test_selection_mad_outlier_rule_hand_worked():
  # consecutive distances 1.0, 0.9, 0.9, 3.0: median 0.95, MAD 0.05 -> 0.95 + 3 * 1.4826 * 0.05
  d = _dist([0, 1.0, 0.1, 1.0, 4.0])
  keys, scores, thr = kf.select_keyframes(5, d, reference="last", threshold_mode="mad", threshold=3)
  assert thr == pytest.approx(0.95 + 3 * 1.4826 * 0.05) and keys == [0, 4]
  np.testing.assert_allclose(scores[1:], [1.0, 0.1, 1.0, 4.0], rtol=1e-6)
  # steady swaying with no event: the outlier rule emits nothing, a percentile always emits ~20 %
  sway = _dist([0, 1, 0, 1.05, 0, 1.1, 0, 1.02, 0, 1.08, 0])
  keys, _, _ = kf.select_keyframes(11, sway, reference="previous", threshold_mode="mad", threshold=3)
  assert keys == [0]
  keys, _, _ = kf.select_keyframes(11, sway, reference="previous", threshold_mode="percentile", threshold=80)
  assert len(keys) == 3
  assert kf.robust_threshold(np.array([np.nan]), 3.0) == float("inf")  # one candidate: no key
  with pytest.raises(ValueError, match="mad"):
    kf.select_keyframes(5, d, threshold_mode="mad", threshold=-1)


def test_segment_clips_hand_worked():
  clips = kf.segment_clips([0, 30, 35, 100], 150, fps=10, min_len=1.0, max_len=6.0)
  assert [(c["start"], c["end"]) for c in clips] == [(0, 35), (35, 68), (68, 100), (100, 150)]
  assert clips[0]["key_frames"] == [0, 30] and clips[2]["key_frames"] == []
  short_first = kf.segment_clips([0, 3, 40], 60, fps=10, min_len=1.0, max_len=None)
  assert [(c["start"], c["end"]) for c in short_first] == [(0, 40), (40, 60)]
  late_first = kf.segment_clips([15, 30], 79, fps=25, min_len=0.5, max_len=10)
  assert [(c["start"], c["end"], c["key_frames"]) for c in late_first] == [(0, 30, [15]), (30, 79, [30])]


def test_shot_recall_hand_worked():
  shots = np.repeat([0, 1, 2, 3], 5)
  r = kf.shot_recall([0, 2, 11], shots)
  assert r == {"recall": 0.5, "keyframes_per_shot": 0.75, "num_keyframes": 3.0}


def test_recon_distance_is_the_loss():
  from aejax.losses import ms_ssim_l1_loss

  feats = np.random.default_rng(0).uniform(-1, 1, (3, 16, 24, 3)).astype(np.float32)
  d = kf.make_dist_pairs(feats, "recon")
  want = ms_ssim_l1_loss(feats[[0, 1]], feats[[2, 2]], reduction="per_example")
  np.testing.assert_allclose(d(np.array([0, 1]), np.array([2, 2])), want, rtol=1e-5)


# -------------------------------------------------------------------------- the experiment


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  from aejax.data.synthetic import scene_cut_video
  from aejax.data.video import write_video
  from experiments import keyframes as exp

  root = tmp_path_factory.mktemp("kf")
  exp.main(["train", "--preset", "smoke", "--workdir", str(root / "run"), "--compilation_cache", ""])
  clip = scene_cut_video(36, (40, 56), num_shots=3, seed=3)
  video = write_video(root / "in.mp4", clip["video"], fps=6.0)
  return exp, root, video


def test_smoke_train_extract_eval(smoke_run):
  exp, root, video = smoke_run
  assert (root / "run" / "checkpoints" / "2").is_dir()
  out = root / "out"
  res = exp.main(
    [
      "extract",
      "--preset",
      "smoke",
      "--checkpoint",
      str(root / "run"),
      "--video",
      str(video),
      "--out",
      str(out),
      "--compilation_cache",
      "",
      "--config.extract.write_clips=True",
    ]
  )
  meta = json.loads((out / "keyframes.json").read_text())
  assert meta["num_frames"] == 36 and meta["fps"] == pytest.approx(6.0)
  assert len(meta["candidates"]) == 30  # every sampled frame (5 of every 6)
  assert meta["shot_starts"][0] == 0 and len(meta["shot_starts"]) == res["shots"]
  assert res["keyframes"] == len(meta["keyframes"]) >= 1 and meta["keyframes"][0]["frame"] < 12
  for k in meta["keyframes"]:
    assert (out / k["png"]).is_file()
  total = 0
  for c in meta["clips"]:
    cap = cv2.VideoCapture(str(out / "clips" / c["file"]))
    n = 0
    while cap.grab():
      n += 1
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(6.0) and n == c["end"] - c["start"]
    total += n
  assert total == 36
  for png in ("timeline.png", "contact_sheet.png"):
    assert cv2.imread(str(out / png)) is not None
  # the original's method: the sharpest frame of each second, cut at the key frames
  res = exp.main(
    [
      "extract",
      "--preset",
      "smoke",
      "--checkpoint",
      str(root / "run"),
      "--video",
      str(video),
      "--out",
      str(root / "nov"),
      "--compilation_cache",
      "",
      "--config.extract.method=novelty",
      "--config.extract.write_clips=False",
    ]
  )
  meta = json.loads((root / "nov" / "keyframes.json").read_text())
  assert len(meta["candidates"]) == 6 and "shot_starts" not in meta and meta["clips"] == []
  ev = exp.main(
    [
      "eval",
      "--preset",
      "smoke",
      "--checkpoint",
      str(root / "run"),
      "--out",
      str(out),
      "--compilation_cache",
      "",
    ]
  )
  assert set(ev) >= {"ae_latent_last_top2", "pixels_latent_previous_top2", "ae_recon_last_top4"}
  assert all(0.0 <= m["recall"] <= 1.0 for m in ev.values())
  assert ev["pixels_latent_last_top4"]["keyframes_per_shot"] == pytest.approx(2.0)


def test_extract_bad_input_is_one_line(smoke_run, tmp_path):
  exp, root, _ = smoke_run
  with pytest.raises(FileNotFoundError, match="missing.mp4"):
    exp.main(
      [
        "extract",
        "--preset",
        "smoke",
        "--video",
        str(tmp_path / "missing.mp4"),
        "--out",
        str(tmp_path),
        "--compilation_cache",
        "",
      ]
    )
