"""The 3D autoencoder as a codec: range-coded clip files, bit-exact decode, honest rates, real MovingMNIST."""

from __future__ import annotations

import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.codec import bitstream
from aejax.codec.clip_eval import chance_baseline, evaluate_clips
from aejax.codec.clips import ClipCodec, decode_clips, decode_codes, encode_clips, encode_codes
from aejax.data.digits import find_mnist, moving_digits
from aejax.models.vqae3d import VQAE3D

TINY = dict(
  features=(4, 8), latent_features=4, num_stages=1, blocks_per_stage=1, kernel_size=3, output_init=(0.2, 0.05)
)


def _tiny(**kw):
  model = VQAE3D(**{**TINY, "num_codes": 8, **kw})
  variables = model.init(jax.random.key(0), jnp.zeros((1, 3, 64, 64, 1)))
  return model, variables


def _clips(n=5, t=3):
  return moving_digits(n, t, 64, 2, seed=1)["video"]


@pytest.mark.parametrize("streams", ["temporal", "channel", "clip"])
def test_codes_round_trip_and_a_peaked_distribution_costs_less_than_log2_k(streams):
  rng = np.random.default_rng(0)
  codes = rng.choice(16, size=(10, 8, 8, 5), p=[0.85] + [0.01] * 15).astype(np.int32)
  codes[..., 2] = 3  # a constant channel
  payload = encode_codes(codes, 16, streams)
  np.testing.assert_array_equal(decode_codes(payload, codes.shape, 16, streams), codes)
  assert 8 * len(payload) < 0.5 * codes.size * 4  # well under the fixed-length log2(16) = 4 bits
  uniform = rng.integers(0, 16, size=codes.shape)
  back = decode_codes(encode_codes(uniform, 16, streams), uniform.shape, 16, streams)
  np.testing.assert_array_equal(back, uniform)
  with pytest.raises(ValueError, match="outside"):
    encode_codes(codes + 16, 16, streams)


def test_temporal_model_pays_off_when_codes_repeat_in_time():
  rng = np.random.default_rng(1)
  codes = rng.integers(0, 16, size=(10, 8, 8, 8)).astype(np.int32)
  for t in range(1, 10):  # each code stays with probability 0.7
    codes[t] = np.where(rng.random(codes[t].shape) < 0.7, codes[t - 1], codes[t])
  sizes = {s: len(encode_codes(codes, 16, s)) for s in ("temporal", "channel", "clip")}
  assert sizes["temporal"] < 0.7 * min(sizes["channel"], sizes["clip"])
  np.testing.assert_array_equal(decode_codes(encode_codes(codes, 16), codes.shape, 16), codes)
  with pytest.raises(ValueError, match="K <= 64"):
    encode_codes(codes, 256, "temporal")


@pytest.mark.parametrize("kw", [dict(quantizer="scalar"), dict(quantizer="vq", num_codebooks=2)])
def test_clip_file_decodes_bit_exactly_and_its_size_is_the_rate(tmp_path, kw):
  model, variables = _tiny(**kw)
  x = _clips()
  out = tmp_path / "c.aejx"
  s = encode_clips(model, variables, iter(x), out, batch=2, fps=10.0, model_config={**TINY, **kw})
  size = os.path.getsize(out)
  assert s["bytes"] == size and s["clips"] == 5 and s["frames"] == 15
  assert s["bpp"] == pytest.approx(8 * size / (5 * 3 * 64 * 64))
  header, n = bitstream.read_header(out)
  s_per_pos = 2 if kw["quantizer"] == "vq" else 4
  assert n == 5 and header["clip"] == [3, 64, 64, 1] and header["latent_shape"] == [3, 8, 8, s_per_pos]
  records = list(bitstream.iter_records(out))
  assert [k for k, _ in records] == [bitstream.CLIP] * 5
  assert size == s["header_bytes"] + sum(5 + len(p) for _, p in records)  # nothing uncounted
  d = decode_clips(out, model, variables, out_npy=tmp_path / "d.npy", out_video=tmp_path / "d.mp4")
  assert d["recon_sha256"] == s["recon_sha256"] and d["bytes"] == size and d["clips"] == 5
  recon = np.load(tmp_path / "d.npy")
  assert recon.shape == x.shape and recon.dtype == np.uint8 and recon.std() > 0  # not a constant
  codec = ClipCodec(model, variables, batch=2)
  np.testing.assert_array_equal(recon[:2], codec.decode(codec.codes(x[:2])))
  other = jax.tree.map(lambda a: a + 1e-3, variables)
  with pytest.raises(ValueError, match="weights differ"):
    decode_clips(out, model, other)


@pytest.mark.parametrize("kw", [dict(quantizer="none"), dict(quantizer="scalar", quantizer_mode="legacy")])
def test_float_modes_are_charged_float_bits_and_encode_refuses_them(kw):
  model, variables = _tiny(**kw)
  res = evaluate_clips(model, variables, _clips(2), batch_size=2)
  # 4 latent channels per 8x8 pixels, 32 bits each: the decoder receives float32 values.
  assert res["bpp"] == pytest.approx(4 * 32 / 64) == res["bpp_entropy"]
  with pytest.raises(ValueError, match="sends continuous values") as e:
    ClipCodec(model, variables, batch=2)
  assert "\n" not in str(e.value)
  coded = evaluate_clips(*_tiny(quantizer="scalar"), _clips(2), batch_size=2)
  assert coded["bpp"] == pytest.approx(4 * 3 / 64)  # log2(8) bits per code


def test_version_1_files_still_read_and_clip_records_count(tmp_path):
  v1 = tmp_path / "v1.aejx"
  v1.write_bytes(struct.pack("<4sHHII", b"AEJX", 1, 0, 1, 2) + b"{}" + struct.pack("<BI", 0, 3) + b"abc")
  assert bitstream.read_header(v1) == ({}, 1)
  assert list(bitstream.iter_records(v1)) == [(bitstream.FRAME, b"abc")]
  w = bitstream.BitstreamWriter(tmp_path / "c.aejx", {})
  w.write_clip(b"xy")
  w.write_clip(b"")
  w.close()
  assert bitstream.read_header(tmp_path / "c.aejx") == ({}, 2)


def test_find_mnist_is_configured_by_the_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("AEJAX_MNIST", "")
  assert find_mnist() is None
  monkeypatch.setenv("AEJAX_MNIST", str(tmp_path / "m.npz"))
  assert find_mnist() == str(tmp_path / "m.npz")
  monkeypatch.delenv("AEJAX_MNIST")
  monkeypatch.setenv("AEJAX_REALDATA", str(tmp_path))
  (tmp_path / "mnist").mkdir()
  np.savez(tmp_path / "mnist" / "mnist.npz", x_train=np.zeros((1, 28, 28), np.uint8), y_train=np.zeros(1))
  assert find_mnist() == str(tmp_path / "mnist" / "mnist.npz")


def test_chance_baseline_is_the_best_constant_guess():
  train = np.array([[1, 2], [1, 3], [1, 4]])  # digit 1 in every clip
  test = np.array([[1, 2], [5, 6]])
  res = chance_baseline(train, test)
  # guess {1}: clip 0 misses digit 2 (9/10 right), clip 1 has 1 wrong + 5, 6 missed (7/10).
  assert res["label_accuracy"] == pytest.approx(16 / 20) and res["set_accuracy"] == 0.0


def test_real_moving_mnist_trains_on_train_digits_and_validates_on_test_digits(realdata, monkeypatch):
  from aejax.data.movingmnist import load_clips
  from experiments import compressed_vision as cv

  npz = realdata / "mnist" / "mnist.npz"
  if not npz.is_file():
    pytest.skip(f"{npz} not found")
  monkeypatch.setenv("AEJAX_MNIST", str(npz))
  c = cv.demo()
  assert c.data.digits == str(npz) and cv.paper().data.digits == str(npz)
  c.data.update(num_clips=10, num_frames=20)
  clips = load_clips(c.data)
  assert clips["train"]["video"].shape == (8, 20, 64, 64, 1)
  assert clips["valid"]["video"].shape == (2, 20, 64, 64, 1)
  ref = moving_digits(2, 20, 64, 2, seed=1, digits=str(npz), split="test")
  np.testing.assert_array_equal(clips["valid"]["video"], ref["video"])
  np.testing.assert_array_equal(clips["valid"]["labels"], ref["labels"])
  assert ((clips["train"]["labels"] >= 0) & (clips["train"]["labels"] < 10)).all()
  monkeypatch.setenv("AEJAX_MNIST", "")
  assert cv.demo().data.digits == "procedural" and cv.paper().data.digits is None


def test_cli_encode_decode_round_trip(tmp_path):
  from aejax.data.video import write_video
  from experiments import compressed_vision as cv

  common = ["--preset", "smoke", "--compilation_cache=", "--config.eval.num_animations=0"]
  run = tmp_path / "run"
  cv.main(["train", "--workdir", str(run), "--config.train.num_steps=1"] + common)
  common += ["--workdir", str(tmp_path)]
  enc = lambda *a: cv.main(["encode", "--checkpoint", str(run), *map(str, a)] + common)
  np.save(tmp_path / "c.npy", _clips(3, 4)[..., 0])
  s = enc("--clips", tmp_path / "c.npy", "--out", tmp_path / "c.aejx")
  assert s["bytes"] == os.path.getsize(tmp_path / "c.aejx") and s["clips"] == 3
  assert bitstream.read_header(tmp_path / "c.aejx")[0]["streams"] == "temporal"
  d = cv.main(["decode", str(tmp_path / "c.aejx"), "--out", str(tmp_path / "d.npy")] + common)
  assert d["recon_sha256"] == s["recon_sha256"] and np.load(tmp_path / "d.npy").shape == (3, 4, 64, 64, 1)
  # A video is cut into grey 64x64 clips of data.num_frames (4) frames; the last partial clip is dropped.
  write_video(tmp_path / "in.avi", np.repeat(_clips(1, 9)[0], 3, axis=-1), fps=8.0)
  s = enc("--video", tmp_path / "in.avi", "--out", tmp_path / "w.aejx")
  assert s["clips"] == 2 and s["bytes"] == os.path.getsize(tmp_path / "w.aejx")
  assert bitstream.read_header(tmp_path / "w.aejx")[0]["fps"] == 8.0


def test_cli_legacy_run_reports_float_bits_and_encode_refuses_it(tmp_path):
  from experiments import compressed_vision as cv

  common = ["--preset", "smoke", "--compilation_cache=", "--config.eval.num_animations=0"]
  common += ["--config.model.quantizer_mode=legacy"]
  res = cv.main(["train", "--workdir", str(tmp_path / "run")] + common)
  assert res["bpp"] == pytest.approx(8 * 32 / 64) == res["bpp_entropy"]  # 8 float32 values per 8x8 pixels
  out = tmp_path / "x.aejx"
  with pytest.raises(ValueError, match="sends continuous values"):
    cv.main(["encode", "--checkpoint", str(tmp_path / "run"), "--out", str(out)] + common)
  assert not out.exists() and not list(tmp_path.glob(".x*"))


def test_the_original_moving_mnist_file_still_loads(tmp_path):
  from aejax.data.movingmnist import load_clips
  from experiments import compressed_vision as cv

  seq = np.random.default_rng(0).integers(0, 256, (6, 5, 64, 64), dtype=np.uint8)  # [T, N, H, W]
  np.save(tmp_path / "mnist_test_seq.npy", seq)
  c = cv.smoke().data
  c.update(source=str(tmp_path / "mnist_test_seq.npy"), num_frames=4)
  clips = load_clips(c)
  video = np.concatenate([clips["train"]["video"], clips["valid"]["video"]])
  assert video.shape == (5, 4, 64, 64, 1) and len(clips["valid"]["video"]) == 1
  assert sorted(v[0, 0, 0, 0] for v in video) == sorted(seq[0, :, 0, 0])  # every sequence, once
  assert (clips["train"]["labels"] == -1).all()


def test_encode_writes_the_reconstruction_video_and_leaves_nothing_on_an_error(tmp_path):
  from aejax.data.video import VideoReader

  model, variables = _tiny(quantizer="scalar")
  x = _clips()
  kw = dict(batch=2, fps=10.0, model_config={**TINY, "quantizer": "scalar"})
  encode_clips(model, variables, iter(x), tmp_path / "c.aejx", recon_video=tmp_path / "r.mp4", **kw)
  assert VideoReader(tmp_path / "r.mp4").num_frames == 5 * 3

  def failing():
    yield from x[:3]
    raise OSError("the clip source broke")

  with pytest.raises(OSError, match="broke"):
    encode_clips(model, variables, failing(), tmp_path / "e.aejx", recon_video=tmp_path / "e.mp4", **kw)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["c.aejx", "r.mp4"]  # no partial file left
