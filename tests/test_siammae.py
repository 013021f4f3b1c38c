"""SiamMAE: masking, patchify, loss, decoder variants, exact parameter counts, information flow."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.masking import num_kept, random_masking
from aejax.models.siammae import SiamMAE, masked_patch_loss, patchify, unpatchify

TINY = dict(
  encoder="S/8",
  encoder_width=32,
  encoder_depth=2,
  encoder_heads=4,
  decoder_width=32,
  decoder_depth=2,
  decoder_heads=4,
  mask_ratio=0.75,
)


def frames(seed=0, b=2, size=32):
  return jax.random.uniform(jax.random.key(seed), (b, 2, size, size, 3))


_JIT: dict = {}


def _fns(model):
  """Jitted (init, apply) per model configuration, compiled once per test session."""
  key = repr(model)
  if key not in _JIT:
    _JIT[key] = (
      jax.jit(lambda x: model.init({"params": jax.random.key(0), "mask": jax.random.key(9)}, x)["params"]),
      jax.jit(lambda p, x, k: model.apply({"params": p}, x, rngs={"mask": k})),
    )
  return _JIT[key]


def run(model, x, mask_seed=1, params=None):
  init, apply = _fns(model)
  if params is None:
    params = init(x)
  return params, apply(params, x, jax.random.key(mask_seed))


def test_random_masking_per_sample():
  ids_keep, mask, ids_restore = random_masking(jax.random.key(0), 4, 196, 0.95)
  assert num_kept(196, 0.95) == 9 and ids_keep.shape == (4, 9)  # MAE's int(L(1-r)); not 10
  mask, ids_keep, ids_restore = map(np.asarray, (mask, ids_keep, ids_restore))
  assert np.all(mask.sum(1) == 187)
  for b in range(4):
    assert np.all(mask[b, ids_keep[b]] == 0)
    assert len(set(ids_keep[b])) == 9
    shuffle = np.argsort(ids_restore[b])
    assert np.array_equal(shuffle[:9], ids_keep[b])  # ids_restore inverts the shuffle
  assert len({tuple(sorted(k)) for k in ids_keep}) == 4  # a different mask per sample
  with pytest.raises(ValueError):
    num_kept(16, 0.95)


def test_patchify_matches_mae_and_inverts():
  x = np.random.RandomState(0).rand(2, 32, 48, 3).astype(np.float32)
  p = 8
  # MAE: imgs [N, 3, H, W] -> reshape(N, 3, h, p, w, p) -> einsum('nchpwq->nhwpqc').
  nchw = x.transpose(0, 3, 1, 2).reshape(2, 3, 4, p, 6, p)
  ref = np.einsum("nchpwq->nhwpqc", nchw).reshape(2, 24, p * p * 3)
  got = np.asarray(patchify(jnp.asarray(x), p))
  np.testing.assert_array_equal(got, ref)
  np.testing.assert_array_equal(np.asarray(unpatchify(jnp.asarray(got), p, (4, 6))), x)


def test_loss_matches_numpy():
  r = np.random.RandomState(0)
  pred, target = r.randn(2, 5, 12), r.randn(2, 5, 12)
  mask = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 1, 1]], np.float32)
  ref = sum(((pred[b, i] - target[b, i]) ** 2).mean() for b in range(2) for i in range(5) if mask[b, i]) / 4
  np.testing.assert_allclose(float(masked_patch_loss(pred, target, mask)), ref, rtol=1e-5)


@pytest.mark.parametrize("decoder", ["cross_self", "joint"])  # "cross": see the count test
def test_decoders_shapes_and_targets(decoder):
  model = SiamMAE(**TINY, decoder=decoder)
  x = frames()
  params, (pred, aux) = run(model, x)
  assert pred.shape == (2, 16, 8 * 8 * 3) and aux["mask"].shape == (2, 16)
  assert np.all(np.asarray(aux["mask"]).sum(1) == 12)  # 16 - int(16 * 0.25)
  assert np.isfinite(float(aux["loss"]))
  assert set(params) == {"vit", "decoder_embed", "mask_token", "decoder_norm", "decoder_pred"} | {
    f"decoder_blocks_{i}" for i in range(2)
  }  # one encoder: shared by both frames
  t = np.asarray(aux["target"])  # per-patch normalised
  np.testing.assert_allclose(t.mean(-1), 0, atol=1e-4)
  np.testing.assert_allclose(t.std(-1), 1, atol=2e-2)
  blk = params["decoder_blocks_0"]
  assert ("cross_attn" in blk) == (decoder != "joint") and ("attn" in blk) == (decoder != "cross")


def test_information_flow():
  """Hidden future patches never reach the prediction; visible ones and the past frame do."""
  model = SiamMAE(**TINY)
  x = frames()
  params, (pred, aux) = run(model, x)
  mask = np.asarray(aux["mask"])[0].reshape(4, 4)
  hidden = np.kron(mask, np.ones((8, 8)))[..., None]  # [32, 32, 1]
  noise = jax.random.uniform(jax.random.key(5), x.shape[2:])
  x_hidden = x.at[0, 1].set(x[0, 1] * (1 - hidden) + noise * hidden)
  _, (pred_h, _) = run(model, x_hidden, params=params)
  np.testing.assert_allclose(np.asarray(pred_h), np.asarray(pred), atol=1e-5)
  x_vis = x.at[0, 1].set(x[0, 1] * hidden + noise * (1 - hidden))
  _, (pred_v, _) = run(model, x_vis, params=params)
  assert np.abs(np.asarray(pred_v[0] - pred[0])).max() > 1e-3
  np.testing.assert_allclose(np.asarray(pred_v[1]), np.asarray(pred[1]), atol=1e-5)
  x_past = x.at[0, 0].set(noise)
  _, (pred_p, _) = run(model, x_past, params=params)
  assert np.abs(np.asarray(pred_p[0] - pred[0])).max() > 1e-3


def test_padding_invariance():
  """Padding tokens to a multiple of 8 (for fused attention) changes nothing."""
  x = frames()
  for decoder in ("cross_self", "joint"):
    params, (a, _) = run(SiamMAE(**TINY, decoder=decoder, token_multiple=8), x)
    _, (b, _) = run(SiamMAE(**TINY, decoder=decoder, token_multiple=1), x, params=params)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def decoder_count(d_enc, d, depth, patch, cross=True, self_attn=True):
  """Closed form: MAE decoder (MLP ratio 4) with cross / self attention per block."""
  ln = 2 * d
  attn = (d * 3 * d + 3 * d) + (d * d + d)
  cross_attn = (d * d + d) + (d * 2 * d + 2 * d) + (d * d + d)
  mlp = (d * 4 * d + 4 * d) + (4 * d * d + d)
  block = ln + mlp + (ln + attn if self_attn else 0) + (2 * ln + cross_attn if cross else 0)
  return (d_enc * d + d) + d + depth * block + ln + (d * patch * patch * 3 + patch * patch * 3)


@pytest.mark.parametrize("decoder", ["cross_self", "cross", "joint"])
def test_faithful_parameter_counts(decoder):
  model = SiamMAE(decoder=decoder)  # ViT-S/16, decoder 512 x 8 x 16
  shapes = jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.key(0), "mask": jax.random.key(1)}, jnp.zeros((1, 2, 224, 224, 3))
    )
  )["params"]
  enc = sum(x.size for x in jax.tree.leaves(shapes["vit"]))
  dec = sum(x.size for x in jax.tree.leaves(shapes)) - enc
  assert enc == 21_590_016  # ViT-S/16 with fixed sin-cos positions ("21.7M" with timm's table)
  assert dec == decoder_count(384, 512, 8, 16, cross=decoder != "joint", self_attn=decoder != "cross")
  if decoder == "cross_self":
    assert dec == 34_233_088


def test_reconstruct_pastes_visible_patches():
  model = SiamMAE(**TINY)
  x = frames()
  params, (pred, aux) = run(model, x)
  imgs = model.apply({"params": params}, x, pred, aux["mask"], method=SiamMAE.reconstruct)
  vis = np.kron(1 - np.asarray(aux["mask"]).reshape(2, 4, 4), np.ones((8, 8)))[..., None]
  np.testing.assert_allclose(np.asarray(imgs["prediction"]) * vis, np.asarray(x[:, 1]) * vis, atol=1e-5)
  assert set(imgs) == {"past", "masked_future", "prediction", "target"}


def test_experiment_smoke_train_then_eval_davis_folder(tmp_path):
  """The smoke preset trains and checkpoints; `eval` restores it (the model from the run's
  config.json, whatever the command line's preset) and scores a DAVIS-layout folder."""
  from aejax.data.sequences import read_indexed_png
  from aejax.data.synthetic import write_davis_like
  from experiments import siammae as exp

  # A wider encoder than the smoke preset's: `eval --preset smoke` must take it from config.json.
  res = exp.main(
    ["train", "--preset", "smoke", "--workdir", str(tmp_path / "run"), "--config.model.encoder_width=48"]
  )
  for k in ("pretrained/J&F-Mean", "random/J&F-Mean"):
    assert 0.0 <= res[k] <= 1.0
  assert list((tmp_path / "run" / "artefacts").glob("reconstruction_*.png"))
  root = write_davis_like(tmp_path / "davis", num_sequences=3, num_frames=5, size=(32, 48), num_train=1)
  out = exp.main(
    [
      "eval",
      "--preset",
      "smoke",
      "--workdir",
      str(tmp_path / "ev"),
      "--checkpoint",
      str(tmp_path / "run"),
      "--davis_dir",
      str(root),
      "--config.eval.random_baseline=False",
    ]
  )
  assert 0.0 <= out["pretrained/J&F-Mean"] <= 1.0
  assert (tmp_path / "ev" / "labelprop_eval" / "pretrained" / "synth-002" / "00004.png").is_file()
  # Both protocols (sizes overridden to stay CPU-small: explicit values win over the protocol's).
  big = write_davis_like(tmp_path / "davis64", num_sequences=2, num_frames=5, size=(64, 96), num_train=0)
  for protocol, size in (("dino", "64"), ("siammae", "(32,48)")):
    out = exp.main(
      [
        "eval",
        "--preset",
        "smoke",
        "--workdir",
        str(tmp_path / protocol),
        "--checkpoint",
        str(tmp_path / "run"),
        "--davis_dir",
        str(big),
        "--protocol",
        protocol,
        f"--config.eval.size={size}",
        "--config.eval.random_baseline=False",
      ]
    )
    assert out["protocol"] == protocol and 0.0 <= out["pretrained/J&F-Mean"] <= 1.0
    pred, _ = read_indexed_png(
      tmp_path / protocol / "labelprop_eval" / "pretrained" / "synth-001" / "00004.png"
    )
    assert pred.shape == (64, 96)
  with pytest.raises(FileNotFoundError):
    exp.main(
      [
        "eval",
        "--preset",
        "smoke",
        "--workdir",
        str(tmp_path / "ev2"),
        "--checkpoint",
        str(tmp_path / "run"),
        "--davis_dir",
        str(tmp_path / "nope"),
      ]
    )


def test_unset_config_values_are_none_and_take_typed_overrides():
  from aejax import cli
  from experiments import siammae as exp

  c = exp.paper()
  assert c.optim.lr is None and c.model.encoder_width is None and c.eval.seq_size is None
  _, lr = exp.optimiser(c)
  assert lr == pytest.approx(1.5e-4 * 2048 / 256)  # derived from the batch when unset
  cli.apply_overrides(
    c, {"optim.lr": "1e-3", "model.encoder_width": "64", "eval.seq_size": "(32, 48)", "data.root": "/videos"}
  )
  assert exp.optimiser(c)[1] == 1e-3 and c.optim.total_steps is None
  assert (c.model.encoder_width, c.eval.seq_size, c.data.root) == (64, (32, 48), "/videos")


def test_schedule_from_epochs(capsys):
  from experiments import siammae as exp

  # The paper: ~240k Kinetics-400 videos, batch 2048 pairs, 2000 effective epochs, 40 of warm-up.
  c = exp.schedule(exp.paper(), 240_000)
  assert (c.train.num_steps, c.optim.warmup_steps) == (234_375, 4_688)
  out = capsys.readouterr().out
  assert "num_steps 234375 (derived; 2000 effective epochs = 1000 passes over the videos)" in out
  assert "warm-up 4688 steps (derived; 40 effective epochs)" in out
  # Half the batch: twice the steps, the same epochs; an epoch is N pairs whatever the repeats.
  c = exp.paper()
  c.data.batch_size = 1024
  assert exp.schedule(c, 240_000, log=None).train.num_steps == 468_750
  c = exp.paper()
  c.data.repeats, c.train.epochs, c.train.warmup_epochs = 4, 10, 1
  c = exp.schedule(c, 1000, log=None)
  assert (c.train.num_steps, c.optim.warmup_steps) == (5, 0)  # 10 x 1000 / 2048, 1000 / 2048
  # Explicit values win; the other one is still derived (a warm-up never outlasts the run).
  c = exp.paper()
  c.train.num_steps = 10_000
  c = exp.schedule(c, 240_000)
  assert (c.train.num_steps, c.optim.warmup_steps) == (10_000, 4_688)
  assert "num_steps 10000 (explicit; 85.33 effective epochs" in capsys.readouterr().out
  c = exp.paper()
  c.train.num_steps, c.optim.warmup_steps = 77, 5
  assert exp.schedule(c, 240_000, log=None).optim.warmup_steps == 5
  c.optim.warmup_steps = None
  capsys.readouterr()
  assert exp.schedule(c, 240_000).optim.warmup_steps == 77
  note = "note: the warm-up (40 effective epochs, as in the paper) is 100% of this run"
  assert note in capsys.readouterr().out
  # The optimiser alone (benchmarks) falls back to Kinetics-400's size.
  c = exp.paper()
  lr_at = exp.optimiser(c)[0]
  assert c.train.num_steps is None and lr_at is not None


def test_protocol_presets_and_float32_features(monkeypatch):
  from aejax import labelprop
  from experiments import siammae as exp

  c = exp.with_protocol(exp.paper(), "dino", "paper")
  assert (c.eval.topk, c.eval.context, c.eval.radius, c.eval.temperature, c.eval.size) == (5, 7, 12, 0.1, 480)
  assert c.eval.norm_mask and c.eval.ties and tuple(c.eval.pixel_std) == (0.228, 0.224, 0.225)
  assert exp.with_protocol(exp.paper(), "siammae", "paper").eval == exp.paper().eval  # the default
  s = exp.with_protocol(exp.demo(), "siammae", "demo")  # the demo's CPU-sized settings replaced
  assert (s.eval.topk, s.eval.context, s.eval.radius, s.eval.temperature, tuple(s.eval.size)) == (
    7,
    20,
    20,
    0.7,
    (480, 880),
  )
  assert not s.eval.norm_mask and not s.eval.ties and s.eval.pixel_std is None
  # A value set on the command line (differs from the preset's) wins over the protocol's.
  c = exp.smoke()
  c.eval.size = (32, 48)
  c = exp.with_protocol(c, "dino", "smoke")
  assert tuple(c.eval.size) == (32, 48) and c.eval.topk == 5
  with pytest.raises(ValueError, match="use one of siammae, dino"):
    exp.with_protocol(exp.paper(), "crw")
  # Features in float32 for a bfloat16-trained model; the protocol reaches propagate_davis.
  c = exp.smoke()
  c.model.dtype = "bfloat16"
  c = exp.with_protocol(c, "dino", "smoke")
  model = exp.build_model(c)
  params = jax.jit(model.init)({"params": jax.random.key(0), "mask": jax.random.key(1)}, exp.example_pair(c))[
    "params"
  ]
  seen = {}

  def fake(feature_fn, davis, out, **kw):
    seen.update(kw, dtype=feature_fn(np.zeros((1, 32, 32, 3), np.float32)).dtype)
    return {}

  monkeypatch.setattr(labelprop, "propagate_davis", fake)
  exp.labelprop_scores(model, params, [], "/tmp/unused", c.eval, log=None)
  assert seen["dtype"] == jnp.float32 and model.dtype == jnp.bfloat16
  assert (seen["topk"], seen["ties"], seen["norm_mask"], seen["size"]) == (5, True, True, 480)
  # `--config.eval.size=96` on a preset whose size is (H, W) reads as (96,): DINO's short side.
  from aejax import cli

  p = cli.apply_overrides(exp.paper(), {"eval.size": "96"})
  assert tuple(p.eval.size) == (96,)
  exp.labelprop_scores(model, params, [], "/tmp/unused", p.eval, log=None)
  assert seen["size"] == 96
