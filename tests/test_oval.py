"""OVAL: model sizes and counts, ConvLSTM scan, rate accounting, baselines, online loop, convert,
sweep."""

from __future__ import annotations

import csv
import math
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.codec import baselines, latent, report
from aejax.codec.latent import LatentCodec
from aejax.models.convlstm import ConvLSTM, ConvLSTMCell
from aejax.models.oval import OVAL, V2, latent_shape, split_params

count = lambda tree: sum(int(np.size(a)) for a in jax.tree.leaves(tree))


def _init(model, shape):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))["params"]


# ------------------------------------------------------------------------------------- model


def test_faithful_parameter_counts():
  params = _init(OVAL(), (1, 360, 480, 3))
  enc, dec = split_params(params)
  assert (count(params), count(enc), count(dec)) == (6991, 3499, 3492)
  assert count(_init(OVAL(use_lstm=True), (1, 2, 60, 80, 3))) == 21471  # + 2 x 7,240
  assert latent_shape((360, 480)) == (28, 38, 10)  # the original's 10x38x28 (W, H transposed)
  assert count(_init(OVAL(**V2), (1, 64, 80, 3))) > 10 * 6991


@pytest.mark.parametrize("size", [(360, 480), (48, 64), (61, 77), (240, 320)])
def test_decoder_returns_exactly_the_input_size(size):
  m = OVAL()
  x = jnp.zeros((2, *size, 3))
  out = jax.eval_shape(lambda: m.init_with_output(jax.random.key(0), x)[0][0])
  assert out.shape == x.shape


def test_original_size_loss_without_exact_output():
  m = OVAL(exact_output=False)
  out = jax.eval_shape(lambda: m.init_with_output(jax.random.key(0), jnp.zeros((1, 360, 480, 3)))[0])
  assert out[0].shape == (1, 351, 471, 3) and out[1]["z"].shape == (1, 28, 38, 10)


def test_encode_decode_split_matches_call_and_sizes():
  m = OVAL()
  x = jax.random.uniform(jax.random.key(1), (2, 48, 64, 3))
  v = m.init(jax.random.key(0), x)
  enc, dec = split_params(v["params"])
  z, _ = m.apply({"params": enc}, x, method=OVAL.encode)  # each end holds only its half
  y, _ = m.apply({"params": dec}, z, (48, 64), method=OVAL.decode)
  y_full, aux = m.apply(v, x)
  np.testing.assert_allclose(y, y_full, atol=1e-6)
  np.testing.assert_allclose(jax.nn.sigmoid(aux["logits"]), y_full, atol=1e-6)
  with pytest.raises(ValueError, match="does not belong"):
    m.apply({"params": dec}, z, (60, 80), method=OVAL.decode)


def test_convlstm_scan_equals_python_loop():
  b, t, h, w, c = 2, 5, 6, 7, 3
  x = jax.random.normal(jax.random.key(0), (b, t, h, w, c))
  lstm = ConvLSTM(features=4)
  v = lstm.init(jax.random.key(1), x)
  hs, (hT, cT) = lstm.apply(v, x)
  cell = ConvLSTMCell(features=4)
  cp = {"params": v["params"]["scan"]["cell"]}
  carry = (jnp.zeros((b, h, w, 4)), jnp.zeros((b, h, w, 4)))
  outs = []
  for k in range(t):
    carry, o = cell.apply(cp, carry, x[:, k])
    outs.append(o)
  np.testing.assert_allclose(hs, jnp.stack(outs, 1), atol=1e-5)
  np.testing.assert_allclose(hT, carry[0], atol=1e-5)
  np.testing.assert_allclose(cT, carry[1], atol=1e-5)
  # Gates by hand at step 0 (zero carry): i, f, o, g from one conv over [x, h].
  k, bias = cp["params"]["gates"]["kernel"], cp["params"]["gates"]["bias"]
  gates = jax.lax.conv_general_dilated(
    jnp.concatenate([x[:, 0], jnp.zeros((b, h, w, 4))], -1),
    k,
    (1, 1),
    "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  i, f, o, g = jnp.split(gates + bias, 4, -1)
  c1 = jax.nn.sigmoid(i) * jnp.tanh(g)
  np.testing.assert_allclose(hs[:, 0], jax.nn.sigmoid(o) * jnp.tanh(c1), atol=1e-5)


def test_truncated_bptt_cuts_gradient_through_carry():
  x = jax.random.normal(jax.random.key(0), (1, 4, 5, 5, 2))
  carry0 = (jnp.ones((1, 5, 5, 3)), jnp.ones((1, 5, 5, 3)))

  def grad_wrt_carry(tbptt):
    lstm = ConvLSTM(features=3, tbptt=tbptt)
    v = lstm.init(jax.random.key(1), x)
    f = lambda c: jnp.sum(lstm.apply(v, x, c)[0][:, -1])
    return jax.grad(f)(carry0)

  assert float(jnp.abs(grad_wrt_carry(0)[1]).sum()) > 0
  assert float(jnp.abs(grad_wrt_carry(2)[1]).sum()) == 0.0  # cut at t = 0 (and t = 2)


def test_lstm_model_carry_continues_a_stream():
  m = OVAL(use_lstm=True)
  x = jax.random.uniform(jax.random.key(0), (1, 4, 48, 64, 3))
  v = m.init(jax.random.key(1), x)
  y_all, _ = m.apply(v, x)
  y1, a1 = m.apply(v, x[:, :2])
  y2, _ = m.apply(v, x[:, 2:], carry=a1["carry"])
  np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), y_all, atol=1e-5)
  assert y_all.shape == x.shape


# --------------------------------------------------------------------------- rate accounting


def test_rate_accounting_by_hand():
  z = np.random.default_rng(0).normal(size=(28, 38, 10)).astype(np.float32)
  n = 28 * 38 * 10
  assert len(LatentCodec("float16").encode(z)) == 2 * n == 21280
  assert len(LatentCodec("float32").encode(z)) == 4 * n
  assert len(LatentCodec("int8").encode(z)) == n + 4 * 10  # + lo, scale (fp16) per channel
  assert len(LatentCodec("int4").encode(z)) == n // 2 + 4 * 10
  assert len(LatentCodec("int4", step=0.25).encode(z)) == n // 2  # fixed step: no side info
  assert len(LatentCodec("int8", channels=4).encode(z)) == 28 * 38 * 4 + 4 * 4 + 2 * 6
  # The full 360x480 frame, not the original's cropped 351x471 (which gave "23.3x").
  assert latent.compression_ratio(21280, 360, 480) == pytest.approx(518400 / 21280)
  assert 3 * 351 * 471 / 21280 == pytest.approx(23.31, abs=0.01)
  assert latent.bits_per_pixel(21280, 360, 480) == pytest.approx(8 * 21280 / 172800)
  dec = split_params(_init(OVAL(), (1, 360, 480, 3)))[1]
  assert latent.tree_bytes(dec) == 13968 and latent.tree_bytes(dec, "float16") == 6984


def test_latent_codec_roundtrip_errors():
  rng = np.random.default_rng(1)
  z = rng.normal(size=(3, 5, 7, 6)).astype(np.float32)
  zh, nb = LatentCodec("float16").roundtrip(z)
  np.testing.assert_array_equal(zh, z.astype(np.float16).astype(np.float32))
  for prec, levels in (("int8", 256), ("int4", 16)):
    zh, _ = LatentCodec(prec).roundtrip(z)
    step = (z.max((1, 2)) - z.min((1, 2))) / (levels - 1)  # [N, C]
    assert np.all(np.abs(zh - z) <= step[:, None, None] * 0.5 * 1.01 + 2e-3)
  zh, nb = LatentCodec("int4", step=0.5).roundtrip(np.clip(z, -3.9, 3.4))
  assert np.all(np.abs(zh - np.clip(z, -3.9, 3.4)) <= 0.25 + 1e-6) and set(nb) == {5 * 7 * 6 // 2}
  zh, _ = LatentCodec("int8", channels=2).roundtrip(z)
  np.testing.assert_allclose(
    zh[..., 2:],
    np.broadcast_to(z[..., 2:].mean((1, 2), keepdims=True).astype(np.float16), zh[..., 2:].shape),
    atol=1e-6,
  )
  plain, _ = LatentCodec("int4").roundtrip(z)
  zipped, nbz = LatentCodec("int4", entropy="zlib").roundtrip(z)
  np.testing.assert_array_equal(plain, zipped)  # zlib is lossless
  zc = np.zeros((1, 5, 7, 6), np.float32)
  assert LatentCodec("int8", entropy="zlib").roundtrip(zc)[1][0] < 5 * 7 * 6 / 4


def test_baselines_closed_forms():
  rng = np.random.default_rng(0)
  f = rng.integers(0, 256, (2, 40, 60, 3), dtype=np.uint8)
  rec, nb = baselines.bit_cut(f, 3)
  assert set(nb) == {math.ceil(3 * 40 * 60 * 3 / 8)}
  np.testing.assert_array_equal(rec, (f & 0b11100000) + 16)  # bin centres
  rec, nb = baselines.resize_codec(f, 4)
  assert rec.shape == f.shape and set(nb) == {3 * 10 * 15}
  rec, nb = baselines.resize_codec(f, 3)
  assert set(nb) == {3 * 13 * 20}  # rounded small size, true pixel count
  target = 3000
  rec, nb, q = baselines.jpeg_at_bytes(f[:1], target)
  sizes = {qq: baselines.jpeg_codec(f[:1], qq)[1][0] for qq in range(1, 101)}
  best = min(abs(s - target) for s in sizes.values())
  assert abs(nb[0] - target) == best and sizes[q[0]] == nb[0]
  rows = baselines.baseline_rows(
    f, bits=(4,), factors=(2,), jpeg_qualities=(50,), jpeg_targets=(target,), with_ms_ssim=False
  )
  assert [r["method"] for r in rows] == ["bit_cut", "resize", "jpeg", "jpeg@bytes"]
  assert rows[0]["ratio"] == pytest.approx(2.0) and rows[0]["bpp"] == pytest.approx(12.0)


def test_rd_study_reads_a_video_once_per_pass(tmp_path, monkeypatch):
  # `rd` on a video file re-reads it for every codec instead of holding it: same table and picture
  import cv2

  from aejax.codec import convert

  m = OVAL()
  p = jax.device_get(m.init(jax.random.key(0), jnp.zeros((1, 36, 48, 3)))["params"])
  rng = np.random.default_rng(2)
  frames = rng.integers(0, 256, (7, 36, 48, 3), dtype=np.uint8)
  monkeypatch.setattr(convert, "RD_CHUNK", 3)  # baselines in batches of 3, 3, 1; middle frame 3
  opened = []

  def reread():
    opened.append(1)
    return iter(list(frames))

  kw = dict(color_space="rgb", batch_size=4, bits=(2,), factors=(2,), jpeg_qualities=(50,))
  convert.rd_study(m, p, frames, tmp_path / "a", **kw)
  convert.rd_study(m, p, reread, tmp_path / "b", **kw)
  assert len(opened) == len(convert.RD_CODECS) + 1
  assert (tmp_path / "a" / "rd.md").read_text() == (tmp_path / "b" / "rd.md").read_text()
  a, b = (cv2.imread(str(tmp_path / d / "compare_int8_vs_jpeg.png")) for d in "ab")
  assert a.shape == (72, 96, 3)
  np.testing.assert_array_equal(a, b)


def test_baseline_rows_of_a_video_in_batches_equal_the_whole():
  # A long video goes through the baselines batch by batch (memory flat in its length): the same
  # rows, the JPEG-at-bytes quality range taken over all batches.
  rng = np.random.default_rng(1)
  f = rng.integers(0, 256, (5, 24, 32, 3), dtype=np.uint8)
  f[3:] //= 4  # darker frames compress to fewer bytes at the same quality
  kw = dict(bits=(2, 5), factors=(2, 3), jpeg_qualities=(20, 80), jpeg_targets=(900.0,))
  whole = baselines.baseline_rows(f, **kw)
  parts = baselines.baseline_rows(iter([f[:2], f[2:4], f[4:]]), **kw)
  assert [(r["method"], r["setting"]) for r in parts] == [(r["method"], r["setting"]) for r in whole]
  for a, b in zip(parts, whole):
    assert a.keys() == b.keys()
    for k in ("bytes_per_frame", "ratio", "bpp", "psnr", "mae", "ms_ssim"):
      assert a[k] == pytest.approx(b[k], rel=1e-9), (a["setting"], k)
  assert len({r["setting"] for r in whole if r["method"] == "jpeg@bytes"}) == 1


def test_host_quality_matches_metrics():
  from aejax import metrics

  rng = np.random.default_rng(0)
  a = rng.uniform(size=(2, 40, 52, 3)).astype(np.float32)
  b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
  q = report.quality(a, b)
  np.testing.assert_allclose(q["ms_ssim"], metrics.ms_ssim(a, b), atol=2e-5)
  np.testing.assert_allclose(q["psnr"], metrics.psnr(a, b), atol=1e-3)
  np.testing.assert_allclose(q["mae"], np.abs(a - b).mean((1, 2, 3)), atol=1e-6)


def test_host_quality_of_uint8_frames_is_exact():
  # uint8 frames take an integer path (exact sums, one frame at a time): the float metrics agree,
  # identical frames are infinitely good, and MS-SSIM still works
  from aejax import metrics

  rng = np.random.default_rng(1)
  a = rng.integers(0, 256, (3, 30, 41, 3), dtype=np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
  b[1] = a[1]
  q = report.quality(a, b)
  fa, fb = a / 255.0, b / 255.0
  mse = ((fa - fb) ** 2).mean((1, 2, 3))
  np.testing.assert_allclose(q["psnr"][[0, 2]], 10 * np.log10(1 / mse[[0, 2]]), rtol=1e-12)
  assert q["psnr"][1] == np.inf and q["mae"][1] == 0 and q["ms_ssim"][1] == pytest.approx(1.0)
  np.testing.assert_allclose(q["mae"], np.abs(fa - fb).mean((1, 2, 3)), rtol=1e-12)
  np.testing.assert_allclose(q["psnr"][[0, 2]], np.asarray(metrics.psnr(fa, fb))[[0, 2]], atol=1e-4)


def test_frame_progress_line(capsys):
  from aejax.codec.frames import FrameProgress

  p = FrameProgress("encode x.aejx", (10, 20), total=40, every=0.0)
  p.update(10, 10 * 25, 10 * 30.0)  # 25 bytes per 200-pixel frame: 1 bpp
  line = capsys.readouterr().err
  assert line.startswith("encode x.aejx: frame 10/40 (25%)")
  assert "1.000 bpp, PSNR 30.00 dB, ETA 0:00:0" in line
  from aejax.io import clock  # the ETA's format, shared with `prepare videos`

  assert (clock(3725.9), clock(59), clock(36000)) == ("1:02:05", "0:00:59", "10:00:00")
  FrameProgress("convert", (10, 20), every=3600.0).update(10, 250, 300.0)  # not due yet: silent
  assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------- online


def _online(frames, threshold, tmp_path=None, train_every=5, on_frame=None, lr=5e-3):
  from aejax.codec.online import OnlineConfig, run_online

  m = OVAL()
  p = jax.device_get(m.init(jax.random.key(0), jnp.zeros((1, 36, 48, 3)))["params"])
  cfg = OnlineConfig(
    buffer_size=4, holdout=1, lr=lr, threshold=threshold, train_every=train_every, ms_ssim=False
  )
  kw = dict(out_video=tmp_path / "out.mp4", csv_path=tmp_path / "f.csv") if tmp_path else {}
  return run_online(frames, m, p, cfg, LatentCodec("int8"), fps=15, on_frame=on_frame, **kw), p


@pytest.fixture(scope="module")
def tiny_video():
  from aejax.data import synthetic

  return synthetic.shapes_video(40, (36, 48), seed=3)["video"]


def test_online_loop_updates_and_accounting(tmp_path, tiny_video):
  from aejax.data.video import count_frames

  frames = np.concatenate([tiny_video] * 5)  # 200 frames
  s, params = _online(iter(frames), threshold=-1.0, tmp_path=tmp_path)  # every step is sent
  rows = list(csv.DictReader(open(tmp_path / "f.csv")))
  assert len(rows) == s["frames"] == 200 == count_frames(tmp_path / "out.mp4")  # none dropped
  dec_bytes = latent.tree_bytes(split_params(params)[1])
  ups = [int(r["frame"]) for r in rows if int(r["update_bytes"])]
  assert ups == list(s["update_frames"]) and s["updates"] == 200 // 5 - 1  # last one unsent
  for r in rows:
    lat = 1 * 2 * 10 + 4 * 10  # int8 latent (1x2x10 for a 36x48 frame) + lo, scale per channel
    assert int(r["bytes"]) == lat + (dec_bytes if int(r["frame"]) in ups else 0)
    assert float(r["ratio"]) == pytest.approx(3 * 36 * 48 / int(r["bytes"]))
  total = sum(int(r["bytes"]) for r in rows)  # latents + decoder updates
  assert s["bytes_total"] == total and s["update_bytes_total"] == dec_bytes * len(ups)
  assert s["ratio"] == pytest.approx(3 * 36 * 48 * 200 / total)  # totals, not a mean of ratios
  assert s["ratio"] < np.mean([float(r["ratio"]) for r in rows])
  assert s["frozen_ratio"] == pytest.approx(3 * 36 * 48 / 60)
  assert s["per_frame_mae"][-40:].mean() < s["per_frame_frozen_mae"][-40:].mean()
  frozen, _ = _online(iter(frames[:60]), threshold=1e9)  # never beats: online == frozen
  np.testing.assert_array_equal(frozen["per_frame_mae"], frozen["per_frame_frozen_mae"])
  assert frozen["updates"] == 0


def test_online_memory_is_flat_over_thousands_of_frames(tiny_video):
  rss = {}

  def on_frame(i, rec):
    if i in (300, 1499):
      with open("/proc/self/statm") as f:
        rss[i] = int(f.read().split()[1]) * 4096

  def stream():
    for i in range(1500):
      yield tiny_video[i % len(tiny_video)]

  s, _ = _online(stream(), threshold=0.0, train_every=100, on_frame=on_frame)
  assert s["frames"] == 1500
  assert rss[1499] - rss[300] < 40 * 2**20, rss  # bounded buffer, streamed records


def test_send_rule_is_judged_on_held_out_frames(tiny_video):
  from aejax.codec.online import OnlineConfig, Trainer

  m = OVAL()
  p = jax.device_get(m.init(jax.random.key(0), jnp.zeros((1, 36, 48, 3)))["params"])
  mae = lambda params, f: float(jnp.mean(jnp.abs(m.apply({"params": params}, f / 255.0)[0] - f / 255.0)))
  frames = tiny_video[:6].astype(np.float32)
  frames[-2:] = 255.0 - frames[-2:]  # the held-out frames differ from the trained ones
  for holdout, judged in ((2, frames[-2:]), (0, frames)):
    t = Trainer(m, p, OnlineConfig(buffer_size=6, holdout=holdout, lr=1e-2, threshold=-1.0))
    for f in frames.astype(np.uint8):
      t.observe(f)
    res = t.maybe_step(0)
    assert res["live_err"] == pytest.approx(mae(p, judged), rel=1e-4)
    assert res["train_err"] == pytest.approx(mae(t.params, judged), rel=1e-4)
  with pytest.raises(ValueError, match="holdout"):
    OnlineConfig(buffer_size=4, holdout=4)


# ---------------------------------------------------------------------------------- convert


def test_convert_real_videos(realdata, tmp_path):
  from aejax.codec import app
  from aejax.data.video import VIDEO_EXTENSIONS, VideoReader, read_frames
  from experiments import oval

  config = oval.smoke()
  model = oval.build_model(config)
  params = jax.jit(model.init)(jax.random.key(0), oval.example_input(config))["params"]
  videos = sorted(p for p in (realdata / "videos").glob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
  assert videos
  for path in videos:
    frames, fps = read_frames(path, 4)
    h, w = frames.shape[1:3]
    out = tmp_path / f"{path.stem}.mp4"
    res = app.convert(
      model,
      params,
      config,
      frames,
      fps=fps,
      out_video=out,
      side_by_side=True,
      report_dir=tmp_path,
      name=path.stem,
    )
    s = res["summary"]
    with VideoReader(out) as r:
      assert r.size == (h, 3 * w) and r.fps == pytest.approx(fps, rel=1e-3)
      back = r.read_all()
    assert len(back) == len(frames) == s["frames"]
    assert np.abs(back[..., :w, :].astype(int) - frames).mean() < 8  # original on the left (mp4v)
    assert s["bytes_per_frame"] == 2 * math.prod(latent_shape((h, w)))
    assert s["ratio"] == pytest.approx(3 * h * w / s["bytes_per_frame"])
    assert len(list(csv.DictReader(open(tmp_path / f"{path.stem}_frames.csv")))) == len(frames)
    assert 0 < s["ms_ssim"] <= 1 and np.isfinite(s["psnr"])


def test_frame_codec_pads_conv_batches_and_runs_lstm_batches_at_their_length():
  from aejax.codec.frames import FrameCodec

  frames = np.random.default_rng(0).integers(0, 256, (7, 36, 48, 3), dtype=np.uint8)
  for use_lstm in (False, True):
    m = OVAL(use_lstm=use_lstm)
    x = jnp.zeros((1, 2, 36, 48, 3) if use_lstm else (1, 36, 48, 3))
    params = m.init(jax.random.key(0), x)["params"]
    whole, parts = FrameCodec(m, params, "rgb", (36, 48), 7), FrameCodec(m, params, "rgb", (36, 48), 4)
    z = whole.encode(frames)
    assert z.shape == (7, *latent_shape((36, 48)))
    zp = np.concatenate([parts.encode(frames[:4]), parts.encode(frames[4:])])  # 4 + 3 (padded)
    np.testing.assert_allclose(zp, z, atol=1e-5)  # the LSTM carry continues, padding unseen
  y = whole.decode(z)  # the last (LSTM) codec
  assert y.shape == frames.shape and y.dtype == np.uint8


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  from experiments import oval

  root = tmp_path_factory.mktemp("oval_smoke")
  oval.main(["train", "--preset", "smoke", "--workdir", str(root / "run"), "--compilation_cache", ""])
  return oval, root


def test_smoke_train_eval_convert_and_restore_errors(smoke_run, realdata):
  from aejax.train.checkpoint import CheckpointError

  oval, root = smoke_run
  run = str(root / "run")
  ev = oval.main(["eval", "--preset", "smoke", "--workdir", run, "--compilation_cache", ""])
  assert ev["frames"] == 6 and np.isfinite(ev["psnr"])
  assert (root / "run" / "eval" / "valid_decoded.mp4").is_file()
  video = realdata / "videos" / "opencv_tree.avi"
  out = root / "tree.mp4"
  res = oval.main(
    [
      "convert",
      "--preset",
      "smoke",
      "--checkpoint",
      run,
      "--video",
      str(video),
      "--out",
      str(out),
      "--config.convert.max_frames=3",
      "--config.model.features=(32,48,64,64,10)",
      "--compilation_cache",
      "",
    ]
  )  # the run's config.json gives the trained model back
  assert res["frames"] == 3 and out.is_file() and res["size"] == [240, 320]
  with pytest.raises(CheckpointError, match="does not exist"):
    oval.main(
      [
        "convert",
        "--preset",
        "smoke",
        "--checkpoint",
        str(root / "nothing"),
        "--video",
        str(video),
        "--compilation_cache",
        "",
      ]
    )
  with pytest.raises(ValueError, match="needs --video"):
    oval.main(["rd", "--preset", "smoke", "--checkpoint", run, "--compilation_cache", ""])


def test_smoke_encode_decode_cli_roundtrip_and_report(smoke_run, realdata):
  from pathlib import Path

  from aejax.codec import app
  from aejax.data.synthetic import shapes_video
  from aejax.data.video import count_frames

  oval, root = smoke_run
  run, aejx, mp4 = str(root / "run"), root / "tree.aejx", root / "tree_dec.mp4"
  video = realdata / "videos" / "opencv_tree.avi"
  enc = oval.main(
    [
      "encode",
      "--preset",
      "smoke",
      "--checkpoint",
      run,
      "--video",
      str(video),
      "--out",
      str(aejx),
      "--config.convert.max_frames=5",
      "--config.codec.precision=int16",
      "--config.codec.step=0.05",
      "--config.codec.entropy=laplace",
      "--config.codec.temporal=1",
      "--compilation_cache",
      "",
    ]
  )
  assert enc["frames"] == 5 and enc["bytes"] == aejx.stat().st_size
  dec = oval.main(["decode", str(aejx), "--out", str(mp4), "--compilation_cache", ""])  # weights: the file's
  assert dec["recon_sha256"] == enc["recon_sha256"] and count_frames(mp4) == 5
  config = oval.smoke()
  model, params, config = oval.restore(run, config)
  frames = shapes_video(6, tuple(config.data.size), seed=1)["video"]
  rep = app.report(model, params, config, frames, root / "report")
  assert Path(rep["side_by_side"]).is_file() and Path(rep["rd_plot"]).is_file()
  assert count_frames(rep["side_by_side"]) == 6


def test_photo_clips_are_rgb_crops_of_the_training_size(tmp_path):
  import cv2

  from aejax.codec.oval_train import photo_clips

  red = np.zeros((50, 70, 3), np.uint8)
  red[..., 2] = 255  # BGR on disk
  ramp = np.tile(np.arange(90, dtype=np.uint8)[None, :, None], (40, 1, 3))
  cv2.imwrite(str(tmp_path / "a.png"), red)
  cv2.imwrite(str(tmp_path / "b.png"), ramp)
  v = photo_clips(tmp_path, (16, 24), per_image=4).arrays["video"]
  assert v.shape == (8, 1, 16, 24, 3) and v.dtype == np.uint8
  reds = [c for c in v[:, 0] if c[..., 1].max() == 0]
  assert len(reds) == 4 and all((c[..., 0] == 255).all() and (c[..., 2] == 0).all() for c in reds)  # RGB
  ramps = [c[0, :, 0].astype(int) for c in v[:, 0] if c[..., 1].max() > 0]
  assert sum(np.all(np.diff(r) >= 0) for r in ramps) == 2 and sum(np.all(np.diff(r) <= 0) for r in ramps) == 2


def test_loss_noise_only_in_training():
  from aejax.codec.oval_train import make_loss_fn
  from aejax.data.transforms import convert_color
  from aejax.models.oval import reconstruction_loss

  m = OVAL()
  video = np.random.default_rng(0).integers(0, 256, (1, 2, 36, 48, 3), dtype=np.uint8)
  v = m.init(jax.random.key(0), jnp.zeros((1, 36, 48, 3)))
  rngs = {"noise": jax.random.key(5)}
  for space in ("rgb", "hsv", "lab"):
    noisy = make_loss_fn("mse", space, 0.2, False)
    x = convert_color(jnp.asarray(video[0], jnp.float32) / 255.0, space)  # the target, in `space`
    inp = x + 0.2 * jax.random.normal(rngs["noise"], x.shape)
    by_hand = lambda a: float(reconstruction_loss("mse", m.apply(v, a)[1]["logits"], x))
    l_eval, met, _ = noisy(m, v, {"video": video}, rngs, False)
    l_train = noisy(m, v, {"video": video}, rngs, True)[0]
    assert float(l_eval) == pytest.approx(by_hand(x), rel=1e-6)  # no noise when evaluating
    assert float(l_train) == pytest.approx(by_hand(inp), rel=1e-6)  # noisy input, clean target
    assert np.isfinite(float(met["psnr_rgb"]))


# ------------------------------------------------------------------------------------ sweep


def test_sweep_runs_every_combination_and_ranks(tmp_path, monkeypatch):
  from aejax import sweep

  (tmp_path / "fake_exp.py").write_text(
    textwrap.dedent("""
      import json, pathlib
      import ml_collections
      from aejax import cli

      def get_config():
        c = ml_collections.ConfigDict()
        c.optim = dict(lr=1e-3)
        c.data = dict(batch_size=16, size=(2, 3))
        return c

      def train(config, workdir, args):
        if config.optim.lr > 0.5:
          raise ValueError("diverged")
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "cfg.json").write_text(json.dumps(config.to_dict()))

      def sweep_score(config, workdir):
        saved = json.loads((pathlib.Path(workdir) / "cfg.json").read_text())
        assert saved["optim"]["lr"] == config.optim.lr
        return {"score": config.optim.lr * config.data.batch_size}

      def main(argv=None):
        return cli.run(get_config, modes={"train": train}, argv=argv)
  """)
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  sys.modules.pop("fake_exp", None)
  rows = sweep.main(
    [
      "fake_exp",
      "--grid",
      "optim.lr=1e-3,3e-3,0.9",
      "data.batch_size=8,16",
      "--workdir",
      str(tmp_path / "sw"),
      "--config.data.size=(4,5)",
    ]
  )
  assert len(rows) == 6
  ok = [r for r in rows if r["status"] == "ok"]
  assert [r["score"] for r in ok] == sorted([a * b for a in (1e-3, 3e-3) for b in (8, 16)], reverse=True)
  assert [r["rank"] for r in ok] == [1, 2, 3, 4]
  assert sum(r["status"].startswith("failed: ValueError") for r in rows) == 2
  assert (tmp_path / "sw" / "optim.lr=3e-3,data.batch_size=16" / "cfg.json").is_file()
  saved = (tmp_path / "sw" / "optim.lr=3e-3,data.batch_size=16" / "cfg.json").read_text()
  assert '"size": [4, 5]' in saved
  for name in ("summary.csv", "summary.md", "summary.png"):
    assert (tmp_path / "sw" / name).is_file()
  assert sweep.split_values("(1,2),(3,4)") == ["(1,2)", "(3,4)"]
