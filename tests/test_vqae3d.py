"""The 3D compression autoencoder: exact parameter counts, padding, nesting, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.models.layers import ResidualBlock
from aejax.models.vqae3d import VQAE3D, Conv3D, ResidualStack

TINY = dict(features=(4, 8), latent_features=4, num_stages=1, blocks_per_stage=1, num_codes=8)


def _count(tree):
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


@pytest.mark.parametrize("share, expected", [(False, 31_023_971), (True, 16_855_907)])
def test_faithful_parameter_counts(share, expected):
  model = VQAE3D(num_codes=128, share_residual_stack=share)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 20, 64, 64, 1))))
  assert _count(shapes["params"]) == expected + 128
  # PyTorch's 17,288 buffer elements (two stacks) include 70 BatchNorm step counters.
  if not share:
    assert _count(shapes["batch_stats"]) == 17_288 - 70
  out, aux = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 20, 64, 64, 1))), shapes)
  assert out.shape == (2, 20, 64, 64, 1)
  assert aux["z"].shape == (2, 20, 8, 8, 32) and aux["indices"].shape == (2, 20, 8, 8, 32)


def _np_conv_same(x, k, stride):  # x [T,H,W,Cin], k [kt,kh,kw,Cin,Cout]; TF 'SAME' padding
  pads = []
  for n, kk, s in zip(x.shape[:3], k.shape[:3], stride):
    out = -(-n // s)
    total = max((out - 1) * s + kk - n, 0)
    pads.append((total // 2, total - total // 2))
  xp = np.pad(x, pads + [(0, 0)])
  outs = [-(-n // s) for n, s in zip(x.shape[:3], stride)]
  y = np.zeros(outs + [k.shape[-1]])
  for t in range(outs[0]):
    for i in range(outs[1]):
      for j in range(outs[2]):
        patch = xp[
          t * stride[0] : t * stride[0] + k.shape[0],
          i * stride[1] : i * stride[1] + k.shape[1],
          j * stride[2] : j * stride[2] + k.shape[2],
        ]
        y[t, i, j] = np.einsum("abcd,abcde->e", patch, k)
  return y, pads


def _np_torch_conv_transpose(x, w, stride, pad, out_pad):  # w: torch layout [Cin,Cout,kt,kh,kw]
  k = w.shape[2:]
  outs = [(n - 1) * s - 2 * p + kk + op for n, s, p, kk, op in zip(x.shape[:3], stride, pad, k, out_pad)]
  full = np.zeros(
    [(n - 1) * s + kk + op for n, s, kk, op in zip(x.shape[:3], stride, k, out_pad)] + [w.shape[1]]
  )
  for t in range(x.shape[0]):
    for i in range(x.shape[1]):
      for j in range(x.shape[2]):
        contrib = np.einsum("c,cokhw->khwo", x[t, i, j], w)
        full[
          t * stride[0] : t * stride[0] + k[0],
          i * stride[1] : i * stride[1] + k[1],
          j * stride[2] : j * stride[2] + k[2],
        ] += contrib
  return full[pad[0] : pad[0] + outs[0], pad[1] : pad[1] + outs[1], pad[2] : pad[2] + outs[2]]


@pytest.mark.parametrize("unrolled", [False, True])
def test_encoder_conv_is_tf_same_and_decoder_matches_torch_conv_transpose(unrolled):
  x = jax.random.normal(jax.random.key(0), (1, 3, 8, 8, 1))
  conv = Conv3D(4, 5, (1, 2, 2), "SAME", unrolled=unrolled)
  p = conv.init(jax.random.key(1), x)
  y = jax.jit(conv.apply)(p, x)
  kernel = np.asarray(p["params"]["kernel"], np.float64)
  assert np.abs(kernel).max() <= 1 / np.sqrt(125)  # PyTorch's U(+-1/sqrt(fan_in))
  ref, pads = _np_conv_same(np.asarray(x[0], np.float64), kernel, (1, 2, 2))
  assert pads == [(2, 2), (1, 2), (1, 2)]  # the original's same_pad() for k5 stride (1,2,2)
  np.testing.assert_allclose(np.asarray(y[0]), ref + np.asarray(p["params"]["bias"]), atol=1e-5)
  for kk, cin in ((3, 4), (5, 8)):  # D1 and D3/D4 of the model, built as the model builds them
    z = jax.random.normal(jax.random.key(2), (1, 3, 4, 4, cin))
    name = "dec_conv1" if kk == 3 else "dec_conv2"
    padding = VQAE3D(**TINY).bind({}).__getattr__(name).padding
    assert padding == {3: ((1, 1), (1, 2), (1, 2)), 5: ((2, 2), (2, 3), (2, 3))}[kk]
    convt = Conv3D(4, kk, (1, 2, 2), padding, transpose=True, unrolled=unrolled)
    p = convt.init(jax.random.key(3), z)
    y = jax.jit(convt.apply)(p, z)
    kernel = np.asarray(p["params"]["kernel"], np.float64)  # [k,k,k,Cin,Cout], not flipped
    w = np.flip(kernel, (0, 1, 2)).transpose(3, 4, 0, 1, 2)  # torch [Cin,Cout,k,k,k]
    ref = _np_torch_conv_transpose(
      np.asarray(z[0], np.float64), w, (1, 2, 2), ((kk - 1) // 2,) * 3, (0, 1, 1)
    )
    assert y.shape[1:4] == (3, 8, 8) == ref.shape[:3]
    np.testing.assert_allclose(np.asarray(y[0]), ref + np.asarray(p["params"]["bias"]), atol=1e-5)


def test_residual_stack_nesting_closed_form():
  # With zero convs every block is the identity, so each stage doubles its input:
  # x + 2^S x after S stages (the last block and the skips are identities too).
  stack = ResidualStack(num_stages=5, blocks_per_stage=3)
  x = jax.random.normal(jax.random.key(0), (1, 2, 3, 3, 4))
  variables = stack.init(jax.random.key(1), x)
  zeroed = jax.tree_util.tree_map_with_path(
    lambda path, v: jnp.zeros_like(v) if "conv" in jax.tree_util.keystr(path) else v, variables["params"]
  )
  y = stack.apply({"params": zeroed, "batch_stats": variables["batch_stats"]}, x)
  np.testing.assert_allclose(np.asarray(y), 33.0 * np.asarray(x), rtol=1e-5)
  n_blocks = len([k for k in variables["params"] if "block" in k])
  assert n_blocks == 16


@pytest.mark.parametrize("shape", [(2, 5, 3), (2, 4, 5, 3), (2, 3, 4, 5, 3)])
def test_residual_block_any_rank_matches_numpy(shape):
  block = ResidualBlock(kernel_size=1, use_norm=False, features=6)
  x = jax.random.normal(jax.random.key(0), shape)
  variables = block.init(jax.random.key(1), x)
  p = jax.tree.map(np.asarray, variables["params"])
  y = block.apply(variables, x)
  xn = np.asarray(x)
  h = np.maximum(xn @ p["conv1"]["kernel"].reshape(3, 6) + p["conv1"]["bias"], 0)
  ref = (
    h @ p["conv2"]["kernel"].reshape(6, 6)
    + p["conv2"]["bias"]
    + xn @ p["skip"]["kernel"].reshape(3, 6)
    + p["skip"]["bias"]
  )
  np.testing.assert_allclose(np.asarray(y), ref, atol=1e-5)


@pytest.mark.parametrize("quantizer", ["scalar", "vq"])
def test_tiny_model_shapes_and_batch_stats(quantizer):
  model = VQAE3D(**TINY, quantizer=quantizer, num_codebooks=2)
  x = jax.random.uniform(jax.random.key(0), (2, 3, 16, 16, 1))
  variables = model.init(jax.random.key(1), x)
  (recon, aux), state = model.apply(
    variables, x, train=True, mutable=["batch_stats"], rngs={"sample": jax.random.key(2)}
  )
  assert recon.shape == x.shape and aux["z"].shape == (2, 3, 2, 2, 4)
  assert np.isfinite(np.asarray(recon)).all()
  expect_idx = (2, 3, 2, 2, 4) if quantizer == "scalar" else (2, 3, 2, 2, 2)
  assert aux["indices"].shape == expect_idx
  assert 0 < float(aux["usage"]) <= 1 and float(aux["perplexity"]) >= 1
  # Training mode moved the BatchNorm running means away from their zero init.
  assert float(jnp.abs(state["batch_stats"]["enc_bn1"]["mean"]).max()) > 0
  recon_eval, _ = model.apply(variables, x, train=False)
  assert recon_eval.shape == x.shape


def _encoder_decoder_grad_norms(mode):
  model = VQAE3D(**TINY, quantizer_mode=mode)
  x = jax.random.uniform(jax.random.key(0), (2, 2, 16, 16, 1))
  variables = model.init(jax.random.key(1), x)

  def loss(params):
    (recon, aux), _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True, mutable=["batch_stats"]
    )
    return jnp.mean((recon - x) ** 2) + aux["loss"]

  g = jax.jit(jax.grad(loss))(variables["params"])
  norm = lambda t: float(jnp.sqrt(sum(jnp.sum(v**2) for v in jax.tree.leaves(t))))
  return norm(g["enc_conv1"]["kernel"]), norm(g["dec_conv1"]["kernel"]), norm(g["quant"])


def test_legacy_quantizer_starves_the_encoder_and_fixed_modes_do_not():
  enc, dec, cb = _encoder_decoder_grad_norms("legacy")
  assert dec > 1e-3 and enc < 1e-5 * dec and cb < 1e-5 * dec
  enc, dec, cb = _encoder_decoder_grad_norms("ste")  # `hard` is checked in test_quantizers
  assert enc > 1e-3 * dec and cb > 0


def test_bad_input_is_a_clear_error():
  model = VQAE3D(**TINY)
  with pytest.raises(ValueError, match="clips"):
    model.init(jax.random.key(0), jnp.zeros((2, 16, 16, 1)))
  with pytest.raises(ValueError, match="quantizer"):
    VQAE3D(**TINY, quantizer="bogus").init(jax.random.key(0), jnp.zeros((1, 2, 16, 16, 1)))


def test_smoke_preset_end_to_end_with_real_mnist(realdata, tmp_path):
  from PIL import Image

  from experiments import compressed_vision as cv

  npz = realdata / "mnist" / "mnist.npz"
  if not npz.is_file():
    pytest.skip(f"{npz} not found")
  common = [
    "--preset",
    "smoke",
    f"--config.data.digits={npz}",
    "--config.data.num_clips=12",
    "--config.data.num_frames=2",
    "--config.probe.num_train=8",
    "--config.probe.num_test=4",
    "--compilation_cache=",
  ]
  work = tmp_path / "run"
  res = cv.main(["train", "--workdir", str(work)] + common)
  # latent (T, 8, 8, 8) per (T, 64, 64) clip, 4 bits per code: 8 / 64 * 4 = 0.5 bpp.
  assert res["bpp"] == pytest.approx(0.5) and 0 <= res["bpp_entropy"] <= 0.5 + 1e-9
  assert res["psnr_of_mse"] == pytest.approx(-10 * np.log10(res["mse"]))
  lines = (work / "metrics.jsonl").read_text().splitlines()
  assert len([ln for ln in lines if '"loss"' in ln]) == 2
  gif = Image.open(work / "artefacts" / "recon_000002_0.gif")
  assert gif.n_frames == 2 and gif.size == (2 * (2 * 64 + 1), 128)
  assert (work / "artefacts" / "recon_000002_0.mp4").stat().st_size > 0
  # Checkpoint round trip: evaluating the restored checkpoint gives the same numbers.
  again = cv.main(["eval", "--workdir", str(work)] + common)
  assert again["mse"] == pytest.approx(res["mse"], rel=1e-5)
  assert (work / "eval" / "artefacts" / "recon_eval_0.gif").is_file()
  # The run's config.json decides the model: the demo preset's widths (8/16) are not used.
  other = cv.main(
    [
      "eval",
      "--preset",
      "demo",
      "--checkpoint",
      str(work / "checkpoints" / "2"),
      "--workdir",
      str(tmp_path / "demo_eval"),
    ]
    + common[2:]
  )
  assert other["mse"] == pytest.approx(res["mse"], rel=1e-5)
  probe = cv.main(["probe", "--workdir", str(work)] + common)
  assert probe["codes"]["input_shape"] == [2, 8, 8, 8]
  assert probe["pixels"]["input_shape"] == [2, 64, 64, 1]
  for kind in ("codes", "pixels"):
    assert 0.0 <= probe[kind]["label_accuracy"] <= 1.0 and probe[kind]["seconds_per_clip"] > 0


def test_smoke_training_resumes_the_grain_iterator_exactly(tmp_path):
  from aejax.train.restore import restore_variables
  from experiments import compressed_vision as cv

  common = [
    "--preset",
    "smoke",
    "--config.data.num_frames=2",
    "--config.eval.num_animations=0",
    "--config.train.checkpoint_every=2",
    f"--compilation_cache={tmp_path / 'cache'}",
  ]
  cv.main(["train", "--workdir", str(tmp_path / "ref"), "--config.train.num_steps=4"] + common)
  cv.main(["train", "--workdir", str(tmp_path / "cut"), "--config.train.num_steps=2"] + common)
  # fit() saved the loader's Grain iterator state beside the model state.
  assert (tmp_path / "cut" / "checkpoints" / "2" / "data").exists()
  cv.main(["train", "--workdir", str(tmp_path / "cut"), "--config.train.num_steps=4"] + common)
  ref, cut = (restore_variables(tmp_path / name) for name in ("ref", "cut"))
  # Steps 3-4 of the resumed run saw batches 3-4, not the first two again.
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(cut)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  fresh = restore_variables(tmp_path / "cut" / "checkpoints" / "2")
  assert (
    max(
      float(np.abs(np.asarray(a) - np.asarray(b)).max())
      for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(fresh))
    )
    > 1e-6
  )


@pytest.mark.parametrize("kw", [dict(quantizer="scalar"), dict(quantizer="vq", num_codebooks=2)])
def test_dequantize_gives_the_forward_latent_and_the_honest_rate(kw):
  from aejax.models.vqae3d import bits_per_position, dequantize, sends_floats, symbols_per_position

  model = VQAE3D(**TINY, **kw)
  x = jax.random.uniform(jax.random.key(1), (2, 3, 16, 16, 1))
  v = model.init(jax.random.key(0), x)
  _, aux = model.apply(v, x)
  np.testing.assert_allclose(dequantize(model, v, aux["indices"]), aux["zq"], rtol=1e-6, atol=1e-6)
  assert not sends_floats(model) and aux["indices"].shape[-1] == symbols_per_position(model)
  assert bits_per_position(model) == symbols_per_position(model) * 3  # K = 8
  for floats in (dict(quantizer="none"), dict(quantizer="scalar", quantizer_mode="legacy")):
    assert sends_floats(VQAE3D(**TINY, **floats)) and bits_per_position(VQAE3D(**TINY, **floats)) == 32 * 4
