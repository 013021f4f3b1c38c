"""Learned-codec files: range coding, the .aejx container, bit-exact decode, honest rates."""

from __future__ import annotations

import struct
import zlib

import jax
import numpy as np
import pytest

from aejax.codec import bitstream, entropy
from aejax.codec.latent import LatentCodec
from aejax.models.oval import OVAL, split_params


def test_range_coder_roundtrip_and_beats_zlib_on_a_peaked_distribution():
  rng = np.random.default_rng(0)
  q = np.clip(np.rint(rng.laplace(0.0, 1.5, (24, 32, 6)) + np.arange(6) * 3), -128, 127).astype(np.int64)
  for family in entropy.FAMILIES:
    payload = entropy.encode_symbols(q, -128, 127, family)
    np.testing.assert_array_equal(entropy.decode_symbols(payload, q.shape, -128, 127, family), q)
    z = zlib.compress((q + 128).astype(np.uint8).tobytes(), 9)
    assert len(payload) < 0.8 * len(z), (family, len(payload), len(z))
  with pytest.raises(ValueError, match="outside"):
    entropy.encode_symbols(q, -2, 2)


@pytest.mark.parametrize(
  "codec",
  [
    LatentCodec("int8", entropy="laplace"),
    LatentCodec("int4", channels=3, entropy="gaussian"),
    LatentCodec("int16", step=0.05, entropy="laplace"),
    LatentCodec("int16", step=0.05, entropy="laplace", temporal=True),
  ],
)
def test_entropy_coded_latents_decode_to_the_same_grid_as_plain(codec):
  rng = np.random.default_rng(1)
  steps = rng.normal(0, 0.05, (5, 12, 16, 5))
  steps[0] = rng.normal(0, 1.0, steps[0].shape)
  z = np.cumsum(steps, 0).astype(np.float32)  # a slowly varying video
  plain = LatentCodec(codec.precision, codec.channels, codec.step, "none")
  got, nb = codec.roundtrip(z)
  want, nb_plain = plain.roundtrip(z)
  np.testing.assert_array_equal(got, want)  # the coder is lossless: same reconstruction
  if codec.temporal:
    intra = LatentCodec(codec.precision, codec.channels, codec.step, codec.entropy).roundtrip(z)[1]
    assert nb[0] == intra[0] and nb[1:].sum() < 0.7 * intra[1:].sum()  # prediction pays
  with pytest.raises(ValueError, match="temporal"):
    LatentCodec("int8", temporal=True)
  with pytest.raises(ValueError, match="integer"):
    LatentCodec("float16", entropy="laplace")


def _model_and_frames():
  model = OVAL()
  frames = (np.random.default_rng(2).uniform(0, 255, (7, 36, 48, 3))).astype(np.uint8)
  params = model.init(jax.random.key(0), np.zeros((1, 36, 48, 3), np.float32))["params"]
  return model, params, frames


@pytest.mark.parametrize(
  "latent", [LatentCodec("float16"), LatentCodec("int16", step=0.1, entropy="laplace", temporal=True)]
)
def test_encode_file_decodes_bit_exactly_and_its_size_is_the_rate(tmp_path, latent):
  from aejax.codec.files import decode_file, encode_video
  from aejax.data.video import count_frames

  model, params, frames = _model_and_frames()
  out = tmp_path / "v.aejx"
  s = encode_video(
    model,
    params,
    iter(frames),
    out,
    color_space="rgb",
    batch_size=3,
    latent=latent,
    fps=12.0,
    model_config={"features": list(model.features)},
    source={"weights": "x"},
    recon_video=tmp_path / "rec.mp4",
  )
  size = out.stat().st_size
  assert s["bytes"] == size and s["frames"] == 7
  assert s["bpp"] == pytest.approx(8 * size / (7 * 36 * 48))
  header, n = bitstream.read_header(out)
  assert n == 7 and header["size"] == [36, 48] and header["fps"] == 12.0 and header["batch"] == 3
  assert header["latent_shape"] == [1, 2, 10] and LatentCodec(**header["codec"]) == latent
  assert header["decoder_sha256"] == bitstream.params_sha256(split_params(params)[1])
  records = list(bitstream.iter_records(out))
  assert [k for k, _ in records] == [bitstream.FRAME] * 7
  assert size == s["header_bytes"] + sum(5 + len(p) for _, p in records)  # nothing uncounted
  d = decode_file(out, model, params, out_video=tmp_path / "dec.mp4")
  assert d["recon_sha256"] == s["recon_sha256"] and d["frames"] == 7 and d["bytes"] == size
  assert count_frames(tmp_path / "dec.mp4") == 7 == count_frames(tmp_path / "rec.mp4")
  other = jax.tree.map(lambda a: a + 1e-3, params)
  with pytest.raises(ValueError, match="decoder's weights differ"):
    decode_file(out, model, other)


def test_container_header_errors(tmp_path):
  bad = tmp_path / "bad.aejx"
  bad.write_bytes(b"NOPE" + bytes(20))
  with pytest.raises(ValueError, match="not an .aejx"):
    bitstream.read_header(bad)
  bad.write_bytes(struct.pack("<4sHHII", b"AEJX", 99, 0, 0, 2) + b"{}")
  with pytest.raises(ValueError, match="version 99"):
    bitstream.read_header(bad)
  w = bitstream.BitstreamWriter(tmp_path / "ok.aejx", {"a": 1})
  w.write_frame(b"xyz")
  w.write_update(b"")
  w.close()
  assert bitstream.read_header(tmp_path / "ok.aejx") == ({"a": 1}, 1)
  assert list(bitstream.iter_records(tmp_path / "ok.aejx")) == [(0, b"xyz"), (1, b"")]
  data = (tmp_path / "ok.aejx").read_bytes()
  (tmp_path / "cut.aejx").write_bytes(data[:-4])
  with pytest.raises(ValueError, match="truncated"):
    list(bitstream.iter_records(tmp_path / "cut.aejx"))


def test_tree_bytes_roundtrip():
  tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": {"c": np.ones(4, np.float32) / 3}}
  back = bitstream.tree_from_bytes(tree, bitstream.tree_to_bytes(tree, "float16"), "float16")
  np.testing.assert_allclose(back["b"]["c"], np.float16(1 / 3))
  np.testing.assert_array_equal(back["a"], tree["a"])


def test_bd_rate_and_quality_of_known_curves():
  from aejax.codec.report import bd_quality, bd_rate, pareto

  anchor = [{"bpp": b, "psnr": 30 + 10 * np.log2(b)} for b in (0.25, 0.5, 1.0, 2.0)]
  half = [{"bpp": r["bpp"] / 2, "psnr": r["psnr"]} for r in anchor]  # same quality at half the bits
  assert bd_rate(anchor, half) == pytest.approx(-50.0)
  assert bd_quality(anchor, half) == pytest.approx(10.0)  # 10 dB per doubling
  assert bd_rate(anchor, anchor) == pytest.approx(0.0)
  far = [{"bpp": r["bpp"], "psnr": r["psnr"] + 100} for r in anchor]
  assert np.isnan(bd_rate(anchor, far))
  assert [r["bpp"] for r in pareto(anchor + [{"bpp": 3.0, "psnr": 0.0}])] == [0.25, 0.5, 1.0, 2.0]


def test_quality_at_rate_and_rows_round_trip(tmp_path):
  from aejax.codec.report import quality_at_rate, read_rows, write_rows

  curve = enumerate((0.25, 1.0))
  rows = [{"method": "jpeg", "setting": f"q{i}", "bpp": b, "psnr": 30 + 10 * np.log2(b)} for i, b in curve]
  rows.append({"method": "jpeg", "setting": "worse", "bpp": 2.0, "psnr": 1.0})  # off the Pareto front
  assert quality_at_rate(rows, 0.5) == pytest.approx(20.0)  # halfway in log bpp
  assert quality_at_rate(rows, 2.0) == pytest.approx(30.0)  # within 2 bpp the best is q1's 30 dB
  assert np.isnan(quality_at_rate(rows, 0.1)) and np.isnan(quality_at_rate(rows, 2.5))  # not measured
  write_rows(rows, tmp_path / "r.csv")
  back = read_rows(tmp_path / "r.csv")
  assert [r["setting"] for r in back] == ["q0", "q1", "worse"]
  assert back[1]["psnr"] == pytest.approx(30.0) and isinstance(back[0]["bpp"], float)


def test_convert_frames_keeps_temporal_prediction_across_batches():
  from aejax.codec.convert import convert_frames

  model, params, frames = _model_and_frames()
  big = np.tile(frames[:1], (1, 3, 3, 1))  # 108x144: a latent of 7x10x10 symbols
  still = np.repeat(big, 7, axis=0)  # a still video: every later frame predicts perfectly
  latent = LatentCodec("int16", step=0.001, entropy="laplace", temporal=True)
  rows = convert_frames(
    model, params, still, batch_size=3, color_space="rgb", latent=latent, with_ms_ssim=False
  )["rows"]
  sizes = [r["bytes"] for r in rows]
  assert all(b < sizes[0] for b in sizes[1:]), sizes  # frames 3 and 6 start batches, not streams


def test_online_stream_file_carries_decoder_updates_and_decodes_bit_exactly(tmp_path):
  from aejax.codec.files import decode_file
  from aejax.codec.online import OnlineConfig, run_online
  from aejax.data import synthetic

  model = OVAL()
  params = model.init(jax.random.key(0), np.zeros((1, 36, 48, 3), np.float32))["params"]
  frames = synthetic.shapes_video(24, (36, 48), seed=3)["video"]
  cfg = OnlineConfig(
    buffer_size=4, holdout=1, train_every=4, threshold=-1.0, update_dtype="float16", ms_ssim=False
  )
  latent = LatentCodec("int16", step=0.05, entropy="laplace", temporal=True)
  s = run_online(iter(frames), model, params, cfg, latent, fps=10.0, out_file=tmp_path / "o.aejx")
  assert s["updates"] >= 3 and s["file_bytes"] == (tmp_path / "o.aejx").stat().st_size
  kinds = [k for k, _ in bitstream.iter_records(tmp_path / "o.aejx")]
  assert kinds.count(bitstream.FRAME) == 24 and kinds.count(bitstream.UPDATE) == s["updates"]
  d = decode_file(tmp_path / "o.aejx", model, params)
  assert d["updates"] == s["updates"] and d["recon_sha256"] == s["recon_sha256"]
  assert s["bytes_total"] == sum(len(p) for _, p in bitstream.iter_records(tmp_path / "o.aejx"))


def test_encode_memory_is_flat_in_the_video_length(tmp_path):
  from aejax.codec.files import encode_video

  model, params, frames = _model_and_frames()
  rss = []

  def stream():
    for i in range(400):
      if i in (100, 399):
        with open("/proc/self/statm") as f:
          rss.append(int(f.read().split()[1]) * 4096)
      yield frames[i % len(frames)]

  s = encode_video(
    model,
    params,
    stream(),
    tmp_path / "long.aejx",
    color_space="rgb",
    batch_size=8,
    latent=LatentCodec("int8", entropy="laplace"),
    fps=25.0,
    model_config={},
  )
  assert s["frames"] == 400
  assert rss[1] - rss[0] < 40 * 2**20, rss  # payloads go to the file, only per-frame scalars stay
