"""SiamMAE (Gupta et al., NeurIPS 2023): our Flax model vs the PyTorch bench reference.

`bench/siammae_check.py` copies our parameters into `bench/torch_ref/siammae.py` and feeds both
the same uint8 frame pairs and the mask our model drew; issue 9 asks for the same loss before any
timing. Here, on a tiny 32x32 / patch-8 model: float32 losses agree within 1e-4 for every decoder
variant, bf16 within 2e-2, and the check catches a perturbed weight, an un-transposed kernel and a
different mask. Skipped without torch (CI does not install it).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sc = pytest.importorskip("bench.siammae_check")

from aejax.models.siammae import DECODERS  # noqa: E402

SIZE, BATCH = 32, 3


def _config(decoder: str):
  """The smoke preset (32x32, patch 8, width 32, 2 heads, 75 % masking) with 2 + 2 blocks."""
  from experiments import siammae as exp

  c = exp.smoke()
  c.model.update(decoder=decoder, encoder_depth=2, decoder_depth=2)
  return c


@pytest.fixture(scope="module")
def setups():
  frames = sc.random_pairs(BATCH, SIZE, seed=3)
  out = {}
  for i, decoder in enumerate(DECODERS):
    model = sc.build_model(_config(decoder))
    assert (model.img_size, model.encoder, model.encoder_width) == (SIZE, "mini/8", 32)
    out[decoder] = (model, sc.random_params(model, seed=i), frames)
  return out


def _loaded(model, state_dict):
  tm = sc.torch_model(model)
  tm.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
  return tm


@pytest.mark.parametrize("decoder", DECODERS)
def test_state_dict_matches_reference_exactly(setups, decoder):
  model, params, _ = setups[decoder]
  sd = sc.to_state_dict(params)
  ref = sc.torch_model(model).state_dict()
  assert sorted(sd) == sorted(ref)
  assert all(tuple(sd[k].shape) == tuple(ref[k].shape) for k in sd)
  n_flax = sum(int(np.prod(np.shape(v))) for v in sc._flatten(params).values())
  assert sum(v.size for v in sd.values()) == n_flax
  # the layouts that a transpose bug would get wrong, element for element
  k = np.asarray(params["vit"]["patch_embed"]["kernel"])  # [p, p, C, D]
  np.testing.assert_array_equal(sd["patch_embed.weight"][5, 2, 1, 7], k[1, 7, 2, 5])
  q = np.asarray(params["vit"]["blocks_1"]["attn"]["qkv"]["kernel"])  # [D, 3D]
  np.testing.assert_array_equal(sd["blocks.1.attn.qkv.weight"], q.T)


@pytest.mark.parametrize("decoder", DECODERS)
def test_float32_losses_agree(setups, decoder):
  model, params, frames = setups[decoder]
  tm = sc.load_into(sc.torch_model(model), params)
  jl, tl = sc.losses(model, params, tm, frames, "float32", seed=1)
  r = sc.compare(jl, tl, "float32")
  assert r["ok"] and r["rel_diff"] < 1e-4, r
  assert 0.5 < jl < 1e3  # normalised targets: a loss of order 1 + |pred|², not a degenerate 0


@pytest.mark.slow  # one more compile (bf16)
def test_bfloat16_losses_agree(setups):
  model, params, frames = setups["cross_self"]
  tm = sc.load_into(sc.torch_model(model), params)
  r = sc.compare(*sc.losses(model, params, tm, frames, "bfloat16", seed=1), "bfloat16")
  assert r["ok"] and r["rel_diff"] < 2e-2, r


@pytest.mark.parametrize(
  "name", ["decoder_blocks.1.cross_attn.kv.weight", "blocks.0.norm1.weight", "mask_token"]
)
def test_a_perturbed_weight_fails(setups, name):
  model, params, frames = setups["cross_self"]
  sd = sc.to_state_dict(params)
  sd[name] = sd[name] + 0.2 * np.random.default_rng(0).normal(size=sd[name].shape).astype(np.float32)
  r = sc.compare(*sc.losses(model, params, _loaded(model, sd), frames, "float32", seed=1), "float32")
  assert not r["ok"], r


def test_untransposed_square_kernels_fail(setups):
  model, params, frames = setups["cross_self"]
  sd = sc.to_state_dict(params)
  for k in [k for k in sd if k.endswith("proj.weight")]:
    sd[k] = np.ascontiguousarray(sd[k].T)  # forgot the Dense transpose: same shape, wrong layer
  r = sc.compare(*sc.losses(model, params, _loaded(model, sd), frames, "float32", seed=1), "float32")
  assert not r["ok"], r


def test_another_mask_fails_and_the_drawn_mask_is_the_models(setups):
  model, params, frames = setups["cross_self"]
  tm = sc.load_into(sc.torch_model(model), params)
  with sc.exact(torch):  # the float32 tests' compiled step (the jit cache keys on precision)
    jl, keep = sc.jax_loss_and_keep(model, params, frames, seed=1)
  assert keep.shape == (BATCH, 4)  # int(16 * 0.25) of the 4x4 grid
  assert all(len(set(row)) == 4 for row in keep.tolist())
  other = np.sort((keep + 1) % 16, axis=1)
  assert not sc.compare(jl, sc.torch_loss(tm, frames, other), "float32")["ok"]
  torch.manual_seed(0)
  ids = tm.random_keep(BATCH, "cpu")  # the reference's own masking draws the same count
  assert tuple(ids.shape) == (BATCH, 4)


def test_check_loss_api_and_bad_frames(setups):
  model, _, frames = setups["cross_self"]
  r = sc.check_loss(_config("cross_self"), frames, "float32", seed=0)
  assert set(r) >= {"jax_loss", "torch_loss", "rel_diff", "ok"}
  assert r["ok"] and r["rel_diff"] < 1e-4 and r["dtype"] == "float32", r
  with pytest.raises(ValueError, match="uint8"):
    sc.check_loss(_config("cross_self"), frames.astype(np.float32))
