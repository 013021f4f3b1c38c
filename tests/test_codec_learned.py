"""The v2 codec's learned latent density: its CDF table through the range coder, the rate term in
training, and bit-exact .aejx files coded under it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.codec import bitstream, entropy
from aejax.codec.latent import LatentCodec
from aejax.models.oval import OVAL, V2, split_params
from aejax.models.rd_layers import FactorizedDensity

TINY = {**V2, "features": (48,), "kernels": (4,), "strides": (4,)}  # v2 with 4x4 blocks: 16x20x48 latents
# the deep variant of the same options: GDN / IGDN stacks, edge-padded exact output, 5x7x4 latents
DEEP = dict(
  features=(6, 6, 4),
  kernels=(5, 5, 5),
  strides=(2, 2, 2),
  activation="gdn",
  pad_mode="edge",
  density_filters=(3,),
)


def _density(channels=3, seed=0):
  d = FactorizedDensity(channels)
  params = d.init(jax.random.key(seed), jnp.zeros((4, channels)))
  # a trained-looking density: perturb every parameter so the channels differ
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  params = jax.tree.unflatten(tree, [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])
  return d, params


def test_learned_cdf_table_round_trips_bit_exactly_and_costs_its_cross_entropy():
  d, params = _density()
  pmf, below, above = (np.asarray(a) for a in d.apply(params, 1.0, method=FactorizedDensity.pmf_grid))
  assert np.allclose(pmf.sum(1) + below + above, 1.0, atol=1e-4)  # a distribution per channel
  los, freqs = entropy.cdf_table(pmf, below, above)
  table = entropy.pack_table(los, freqs)
  los2, freqs2 = entropy.unpack_table(table)
  np.testing.assert_array_equal(los2, los)
  assert all(np.array_equal(a, b) for a, b in zip(freqs, freqs2))
  # symbols drawn from the table's own distribution: lossless and close to its cross-entropy
  rng = np.random.default_rng(0)
  q = np.stack([lo + rng.choice(len(f), size=(20, 30), p=f / f.sum()) for lo, f in zip(los, freqs)], -1)
  payload = entropy.encode_with_table(q, table)
  np.testing.assert_array_equal(entropy.decode_with_table(payload, q.shape, table), q)
  bits = -sum(np.log2(f[q[..., c] - lo] / f.sum()).sum() for c, (lo, f) in enumerate(zip(los, freqs)))
  assert bits / 8 <= len(payload) <= 1.02 * bits / 8 + 8
  with pytest.raises(ValueError, match="outside"):
    entropy.encode_with_table(q + 10_000, table)
  # a channel the model never uses (all its mass on one symbol) still gets a codable range
  point = np.zeros((2, 11))
  point[0, 5] = point[1, 10] = 1.0
  los, freqs = entropy.cdf_table(point, np.zeros(2), np.zeros(2))
  assert [len(f) for f in freqs] == [2, 2] and list(los) == [0, 4]
  q = np.stack([np.zeros((3, 4), int), np.full((3, 4), 5)], -1)
  t = entropy.pack_table(los, freqs)
  np.testing.assert_array_equal(entropy.decode_with_table(entropy.encode_with_table(q, t), q.shape, t), q)


def test_rate_term_is_lambda_times_the_noisy_latents_bits_per_pixel():
  from aejax.codec.oval_train import make_loss_fn
  from aejax.models.rd_layers import rate_bits

  video = np.random.default_rng(0).integers(0, 256, (2, 1, 64, 80, 3), dtype=np.uint8)
  rngs = {"noise": jax.random.key(3)}
  m0, m1 = OVAL(**{**DEEP, "rate_lambda": 0.0}), OVAL(**{**DEEP, "rate_lambda": 0.5})
  v = m1.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, jnp.zeros((1, 64, 80, 3)))
  fn = make_loss_fn("mse", "rgb", 0.0, False)
  l0, met0, _ = fn(m0, v, {"video": video}, rngs, True)
  l1, met1, _ = fn(m1, v, {"video": video}, rngs, True)
  x = jnp.asarray(video[:, 0], jnp.float32) / 255.0
  _, aux = m1.apply(v, x, train=True, rngs=rngs)
  bpp = float(rate_bits(aux["likelihoods"])) / (2 * 64 * 80)
  assert float(met1["bpp"]) == pytest.approx(bpp, rel=1e-5) and bpp > 0
  assert float(l1) - float(l0) == pytest.approx(0.5 * bpp, rel=1e-4)
  # training adds noise (the latent is not rounded); evaluating rounds it
  assert not np.allclose(aux["z"] + 0.0, jnp.round(aux["z"]))
  _, aux_eval = m1.apply(v, x)
  _, aux_round = m1.apply(v, x, train=True, rngs=rngs)
  assert not np.array_equal(np.asarray(aux_eval["likelihoods"]), np.asarray(aux_round["likelihoods"]))
  # the rate term's gradient reaches the encoder and the density
  g = jax.grad(lambda p: fn(m1, {"params": p}, {"video": video}, rngs, True)[0])(v["params"])
  assert float(jnp.abs(g["density"]["bias0"]).sum()) > 0 and float(jnp.abs(g["enc0"]["kernel"]).sum()) > 0
  assert float(jnp.abs(g["enc_gdn0"]["gamma"]).sum()) > 0 and float(jnp.abs(g["dec_igdn1"]["beta"]).sum()) > 0


def test_v2_block_transform_starts_as_an_exact_orthonormal_inverse():
  from aejax.models.rd_layers import block_transform

  b = block_transform(4).reshape(48, 48)
  np.testing.assert_allclose(b.T @ b, np.eye(48), atol=1e-6)
  m = OVAL(**TINY)
  x = jnp.asarray(np.random.default_rng(0).random((2, 64, 80, 3)), jnp.float32)
  v = m.init(jax.random.key(0), x[:1])
  z, _ = m.apply(v, x, method=OVAL.encode)
  y, _ = m.apply(v, z, (64, 80), method=OVAL.decode)
  np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-5)  # linear output, no sigmoid
  grey = m.apply(v, jnp.full((1, 64, 80, 3), 0.5), method=OVAL.encode)[0]
  assert float(jnp.abs(grey).max()) < 1e-4  # centred: a grey-1/2 frame has an all-zero latent
  assert float(jnp.abs(z[..., 0]).mean()) > 0.1  # the gain puts the luma DC on the integer grid


def test_v2_file_under_the_learned_density_decodes_bit_exactly_and_its_size_is_the_rate(tmp_path):
  from aejax.codec.files import decode_file, encode_video, learned_codec

  model = OVAL(**TINY)
  params = model.init(jax.random.key(0), jnp.zeros((1, 64, 80, 3)))["params"]
  rng = np.random.default_rng(2)
  frames = rng.integers(0, 256, (5, 64, 80, 3), dtype=np.uint8)
  latent = LatentCodec("int16", step=1.0, entropy="learned")
  with pytest.raises(ValueError, match="table"):
    latent.encode(np.zeros((1, 2, 4), np.float32))
  out = tmp_path / "v.aejx"
  kw = dict(color_space="rgb", batch_size=2, fps=10.0, model_config=dict(TINY))
  s = encode_video(model, params, iter(frames), out, latent=latent, **kw)
  size = out.stat().st_size
  assert s["bytes"] == size and s["frames"] == 5 and s["latent"] == "int16-step1-learned"
  header, _ = bitstream.read_header(out)
  filled = learned_codec(latent, model, params)
  assert header["codec"]["table"] == filled.table and LatentCodec(**header["codec"]) == filled
  records = list(bitstream.iter_records(out))
  assert size == s["header_bytes"] + sum(5 + len(p) for _, p in records)
  d = decode_file(out, model, params)
  assert d["recon_sha256"] == s["recon_sha256"] and d["bytes"] == size
  # the latent the receiver gets is the encoder's rounded (and range-clipped) latent
  z = np.asarray(model.apply({"params": params}, jnp.asarray(frames[:1], jnp.float32) / 255.0)[1]["z"])[0]
  los, his, _ = entropy.table_models(filled.table)
  np.testing.assert_array_equal(filled.decode(filled.encode(z), z.shape), np.clip(np.rint(z), los, his))
  # a coarser step: fewer bytes
  coarse = LatentCodec("int16", step=4.0, entropy="learned")
  s2 = encode_video(model, params, iter(frames), tmp_path / "w.aejx", latent=coarse, **kw)
  assert sum(len(p) for _, p in bitstream.iter_records(tmp_path / "w.aejx")) < sum(len(p) for _, p in records)
  assert s2["recon_sha256"] == decode_file(tmp_path / "w.aejx", model, params)["recon_sha256"]
  enc, _ = split_params(params)
  assert not any(k.startswith("density") for k in enc)


def test_learned_entropy_needs_an_int_precision_and_a_fixed_step():
  bads = (dict(precision="float16"), dict(precision="int16"), dict(precision="int16", step=1.0, temporal=1))
  for bad in bads:
    with pytest.raises(ValueError):
      LatentCodec(entropy="learned", **bad)


def test_v2_returns_any_frame_size_with_replicated_edges():
  m = OVAL(**TINY)
  x = jnp.asarray(np.random.default_rng(1).random((1, 61, 77, 3)), jnp.float32)
  v = m.init(jax.random.key(0), x)
  y = np.asarray(m.apply(v, x)[0])
  assert y.shape == x.shape
  # 4x4 blocks cover 60 x 76: the last row and column repeat the ones before (pad_mode "edge")
  np.testing.assert_array_equal(y[:, -1], y[:, -2])
  np.testing.assert_array_equal(y[:, :, -1], y[:, :, -2])


def test_the_v2_preset_apps_code_the_latent_under_the_models_density():
  from aejax.codec import app
  from experiments import oval as ex

  config = ex.v2()
  config.model.update(features=TINY["features"], kernels=TINY["kernels"], strides=TINY["strides"])
  model = ex.build_model(config)
  params = model.init(jax.random.key(0), jnp.zeros((1, 64, 80, 3)))["params"]
  frames = np.random.default_rng(4).integers(0, 256, (3, 64, 80, 3), dtype=np.uint8)
  learned = app.convert(model, params, config, frames, batch_size=2)["summary"]
  assert learned["latent"] == "int16-step2-learned"
  with config.unlocked():
    config.codec.entropy = "none"
  plain = app.convert(model, params, config, frames, batch_size=2)["summary"]
  assert learned["psnr"] == pytest.approx(plain["psnr"], abs=1e-6)  # same quantised latent
  assert learned["bpp"] < 0.5 * plain["bpp"]  # range coded under the density, not raw int16


def test_a_linear_output_models_losses_are_taken_on_its_frames():
  from aejax.codec.oval_train import make_loss_fn

  model = OVAL(**{**TINY, "rate_lambda": 0.0})  # output "linear": the frames are the logits
  v = model.init(jax.random.key(0), jnp.zeros((1, 64, 80, 3)))
  video = np.random.default_rng(5).integers(0, 256, (2, 1, 64, 80, 3), dtype=np.uint8)
  x = jnp.asarray(video[:, 0], jnp.float32) / 255.0
  y, _ = model.apply(v, x)
  want = {"mse": jnp.mean((y - x) ** 2), "mae": jnp.mean(jnp.abs(y - x))}
  batch, rngs = {"video": video}, {"noise": jax.random.key(1)}
  for name, loss in want.items():
    got = make_loss_fn(name, "rgb", 0.0, False)(model, v, batch, rngs, False)[0]
    assert float(got) == pytest.approx(float(loss), rel=1e-6)  # not on sigmoid(frames)
