"""Tests of the conv VAE (aejax/models/vae.py), its ELBO terms (aejax/vae/elbo.py) and experiments/vae.py."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.models.vae import ConvVAE, check_image_size, decoded_size, encoded_size, valid_sizes
from aejax.vae import elbo

TINY = dict(image_size=(30, 30), latent_dim=8, features=(4, 8, 8))
RNGS = lambda seed=0: {"params": jax.random.key(seed), "sample": jax.random.key(seed + 1)}


def _variables(model, x, seed: int = 0) -> dict:
  """Random variables of the right shapes without compiling the init (threefry is slow to
  compile on CPU): kernels and biases U(-0.3, 0.3), BatchNorm mean 0 and variance 1."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: model.init(RNGS(), x))

  def fill(path, s):
    name = str(path[-1])
    if "var" in name or "scale" in name:
      return jnp.ones(s.shape, s.dtype)
    if "mean" in name:
      return jnp.zeros(s.shape, s.dtype)
    return jnp.asarray(rng.uniform(-0.3, 0.3, s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _count(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def test_param_count_of_the_original():
  model = ConvVAE()
  shapes = jax.eval_shape(lambda: model.init(RNGS(), jnp.zeros((1, 254, 254, 3))))
  assert _count(shapes["params"]) == 3_297_571
  assert _count(shapes["params"]["encoder"]) == 1_688_704
  assert _count(shapes["params"]["decoder"]) == 1_608_867
  assert _count(shapes["batch_stats"]) == 384  # PyTorch's 386 include two num_batches_tracked
  assert shapes["params"]["encoder"]["mu"]["kernel"].shape == (1024, 512)
  assert shapes["params"]["decoder"]["t_conv6"]["kernel"].shape == (4, 4, 32, 3)


def test_original_shapes_through_eval_shape():
  model = ConvVAE()
  x = jnp.zeros((2, 254, 254, 3))
  (x_hat, aux), _ = jax.eval_shape(lambda: model.init_with_output(RNGS(), x, train=False))
  assert x_hat.shape == (2, 254, 254, 3)
  assert aux["mu"].shape == aux["logvar"].shape == aux["z"].shape == (2, 512)


def test_size_arithmetic():
  assert [encoded_size(n, 6) for n in (253, 254, 190)] == [2, 2, 1]
  assert decoded_size(2, 6) == 254
  assert valid_sizes(6, 400) == [190, 254, 318, 382]
  assert valid_sizes(3, 40) == [22, 30, 38]
  assert check_image_size((254, 318), 6) == (2, 3)


@pytest.mark.parametrize("size", [(253, 254), (256, 256), (100, 254), (30, 30)])
def test_bad_sizes_raise_one_clear_error(size):
  model = ConvVAE(image_size=size)
  with pytest.raises(ValueError, match=r"ConvVAE: input side \d+ is not reproduced"):
    model.init(RNGS(), jnp.zeros((1, *size, 3)))


def test_wrong_input_shape_is_an_error():
  model = ConvVAE(**TINY)
  with pytest.raises(ValueError, match=r"expected images \[B, 30, 30, 3\]"):
    model.init(RNGS(), jnp.zeros((1, 38, 38, 3)))


def test_tiny_model_shapes_sampling_and_batchnorm():
  model = ConvVAE(**TINY)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 30, 30, 3)), jnp.float32)
  variables = _variables(model, x)
  assert set(variables) == {"params", "batch_stats"}

  @jax.jit
  def run(variables, x):
    key = lambda i: {"sample": jax.random.key(i)}
    out = {}
    out["train"], out["new_state"] = model.apply(
      variables, x, train=True, rngs=key(3), mutable=["batch_stats"]
    )
    out["same"] = model.apply(variables, x, rngs=key(3))[1]
    out["again"] = model.apply(variables, x, rngs=key(3))[1]
    out["other"] = model.apply(variables, x, rngs=key(4))[1]
    out["det"] = model.apply(variables, x, sample=False)[1]
    out["encode"] = model.apply(variables, x, method=ConvVAE.encode)
    out["features"] = model.apply(variables, x, method=ConvVAE.features_of)
    out["generate"] = model.apply(variables, 5, method=ConvVAE.generate, rngs=key(7))
    out["generate_again"] = model.apply(variables, 5, method=ConvVAE.generate, rngs=key(7))
    out["generate_other"] = model.apply(variables, 5, method=ConvVAE.generate, rngs=key(8))
    return out

  out = jax.device_get(run(variables, x))
  x_hat, aux = out["train"]
  assert x_hat.shape == (3, 30, 30, 3) and aux["logits"].shape == (3, 30, 30, 3)
  assert aux["z"].shape == (3, 8)
  assert np.all((x_hat > 0) & (x_hat < 1))
  np.testing.assert_allclose(x_hat, jax.nn.sigmoid(aux["logits"]), rtol=1e-6)
  # Training updates the running statistics (momentum 0.9 from mean 0).
  old = variables["batch_stats"]["encoder"]["bn1"]["mean"]
  new = out["new_state"]["batch_stats"]["encoder"]["bn1"]["mean"]
  assert not np.allclose(old, new)
  # z = mu + eps * exp(logvar / 2) with eps from the `sample` stream.
  eps = (aux["z"] - aux["mu"]) / np.exp(0.5 * aux["logvar"])
  assert abs(float(eps.std()) - 1.0) < 0.5
  np.testing.assert_array_equal(out["same"]["z"], out["again"]["z"])
  assert not np.allclose(out["same"]["z"], out["other"]["z"])
  np.testing.assert_array_equal(out["det"]["z"], out["det"]["mu"])
  mu, logvar = out["encode"]
  np.testing.assert_allclose(mu, out["det"]["mu"], rtol=1e-6)
  np.testing.assert_allclose(out["features"], mu, rtol=1e-6)
  assert logvar.shape == (3, 8)
  # generate(n): n images from z ~ N(0, I), deterministic per key, one z per image.
  imgs = out["generate"]
  assert imgs.shape == (5, 30, 30, 3)
  np.testing.assert_array_equal(imgs, out["generate_again"])
  assert not np.allclose(imgs, out["generate_other"])
  assert float(np.abs(imgs[0] - imgs[1]).max()) > 0


def test_gaussian_kl_matches_numpy_closed_form():
  rng = np.random.default_rng(1)
  mu = rng.normal(size=(4, 6)).astype(np.float32)
  logvar = rng.normal(size=(4, 6)).astype(np.float32)
  var = np.exp(logvar.astype(np.float64))
  # KL(N(mu, diag var) || N(0, I)) = 0.5 * (tr(var) + |mu|^2 - k - log det var), per example.
  ref = 0.5 * (var.sum(1) + (mu.astype(np.float64) ** 2).sum(1) - mu.shape[1] - logvar.sum(1))
  np.testing.assert_allclose(elbo.gaussian_kl(mu, logvar), ref, rtol=1e-5)
  np.testing.assert_allclose(elbo.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3))), 0.0, atol=1e-7)


def test_bce_matches_pytorch_formula_and_loss_terms():
  rng = np.random.default_rng(2)
  x = rng.uniform(size=(2, 4, 4, 3)).astype(np.float32)
  logits = rng.normal(scale=2.0, size=x.shape).astype(np.float32)
  p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  ref_bce = -(x * np.maximum(np.log(p), -100) + (1 - x) * np.maximum(np.log(1 - p), -100))
  ref_bce = ref_bce.reshape(2, -1).sum(1)
  np.testing.assert_allclose(elbo.bernoulli_nll(logits, x), ref_bce, rtol=1e-5)
  mu = rng.normal(size=(2, 5)).astype(np.float32)
  logvar = rng.normal(size=(2, 5)).astype(np.float32)
  kl = np.asarray(elbo.gaussian_kl(mu, logvar))
  loss, m = elbo.vae_loss(x, p.astype(np.float32), logits, mu, logvar)
  np.testing.assert_allclose(loss, (ref_bce + kl).sum(), rtol=1e-5)  # summed over the batch
  np.testing.assert_allclose(m["neg_elbo"], (ref_bce + kl).mean(), rtol=1e-5)
  np.testing.assert_allclose(m["bits_per_dim"], (ref_bce + kl).mean() / (48 * math.log(2)), rtol=1e-5)
  loss_b, mb = elbo.vae_loss(x, p, logits, mu, logvar, reconstruction="mse", beta=0.5, reduction="mean")
  sse = ((p - x) ** 2).reshape(2, -1).sum(1)
  np.testing.assert_allclose(loss_b, (sse + 0.5 * kl).mean(), rtol=1e-5)
  np.testing.assert_allclose(mb["neg_elbo"], m["neg_elbo"], rtol=1e-6)  # metric ignores beta/mse
  with pytest.raises(ValueError, match="reconstruction"):
    elbo.vae_loss(x, p, logits, mu, logvar, reconstruction="l1")


# ---------------------------------------------------------------------- the similarity study


def test_auroc_and_cosine_match_brute_force():
  from aejax.vae import similarity as sim

  rng = np.random.default_rng(3)
  pos = np.round(rng.normal(0.5, 0.3, 40), 1)  # rounding makes ties
  neg = np.round(rng.normal(0.1, 0.3, 30), 1)
  brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
  assert sim.auroc(pos, neg) == pytest.approx(brute, abs=1e-12)
  assert sim.auroc([1.0, 2.0], [0.0]) == 1.0 and sim.auroc([0.0], [0.0]) == 0.5
  a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
  ref = [x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)]
  np.testing.assert_allclose(sim.cosine(a, b), ref, rtol=1e-12)
  assert sim.cosine(np.zeros((1, 3)), np.ones((1, 3)))[0] == 0.0


def test_negative_pairs_never_share_a_folder():
  from aejax.vae import similarity as sim

  images = [np.full((40, 50, 3), 20 * i, np.uint8) for i in range(6)]
  groups = np.array([0, 0, 0, 1, 1, 2])
  pairs = sim.make_pairs(images, groups, size=16, pairs_per_image=3, seed=0)
  assert pairs["pos"].shape == pairs["neg"].shape == (18, 2, 16, 16, 3)
  i, j = pairs["neg_src"].T
  assert np.all(groups[i] != groups[j])
  # Crops of the flat-colour images keep their colour: the pairs hold what neg_src says.
  np.testing.assert_array_equal(pairs["neg"][:, 1, 0, 0, 0], 20 * j)
  with pytest.raises(ValueError, match="two different folders"):
    sim.make_pairs(images, np.zeros(6), size=16, pairs_per_image=1)


# ---------------------------------------------------------------------- the experiment


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  from experiments import vae

  workdir = tmp_path_factory.mktemp("vae_smoke")
  result = vae.main(["train", "--preset", "smoke", "--workdir", str(workdir)])
  return workdir, result


def test_smoke_training_validates_every_epoch_and_keeps_the_best(smoke_run):
  import json

  workdir, result = smoke_run
  assert result["step"] == 4
  lines = [json.loads(s) for s in (workdir / "metrics.jsonl").read_text().splitlines()]
  evals = {r["step"]: r for r in lines if "eval/neg_elbo" in r}
  assert sorted(evals) == [2, 4]  # 10 training images / batch 4 = 2 steps per epoch
  best = json.loads((workdir / "best.json").read_text())
  assert best["neg_elbo"] == pytest.approx(min(r["eval/neg_elbo"] for r in evals.values()), rel=1e-6)
  assert best["step"] == min(evals, key=lambda s: evals[s]["eval/neg_elbo"])
  assert (workdir / "best" / str(best["step"])).is_dir()
  dims = 30 * 30 * 3
  assert best["nats_per_dim"] == pytest.approx(best["neg_elbo"] / dims, rel=1e-6)
  assert best["bits_per_dim"] == pytest.approx(best["neg_elbo"] / dims / math.log(2), rel=1e-6)
  assert best["neg_elbo"] == pytest.approx(best["kl"] + best["bce"], rel=1e-5)
  train_losses = [r["loss"] for r in lines if "loss" in r]
  assert all(np.isfinite(train_losses))
  for name, shape in (
    ("samples", (66, 66, 3)),
    ("reconstructions", (66, 66, 3)),
    ("interpolation", (34, 194, 3)),
  ):
    from PIL import Image

    im = np.asarray(Image.open(workdir / "artefacts" / f"{name}_000004.png"))
    assert im.shape == shape, name


def test_similarity_study_on_real_photos(smoke_run, realdata, tmp_path):
  from aejax.vae import similarity as sim
  from experiments import vae

  workdir, _ = smoke_run
  out = tmp_path / "study"
  # The demo preset is given on purpose: the model sizes come from the run's config.json.
  summary = vae.main(
    [
      "similarity",
      "--checkpoint",
      str(workdir / "best"),
      "--images",
      str(realdata / "photos"),
      "--workdir",
      str(out),
      "--config.similarity.pairs_per_image=2",
    ]
  )
  n = len(list((realdata / "photos").iterdir()))
  assert summary["num_images"] == summary["num_groups"] == n
  assert summary["pairs_same"] == summary["pairs_different"] == 2 * n
  saved = np.load(out / "similarity" / "similarities.npz")
  assert summary["auroc"] == pytest.approx(sim.auroc(saved["same"], saved["different"]))
  assert summary["mean_same"] == pytest.approx(saved["same"].mean())
  assert np.all(np.abs(saved["same"]) <= 1 + 1e-9)
  for name in ("histogram", "retrieval", "samples", "reconstructions", "interpolation"):
    assert (out / "similarity" / f"{name}.png").stat().st_size > 0
  with pytest.raises(FileNotFoundError, match="nowhere"):
    vae.main(
      [
        "similarity",
        "--preset",
        "smoke",
        "--images",
        str(tmp_path / "nowhere"),
        "--workdir",
        str(tmp_path / "w"),
      ]
    )


def test_image_folder_data_for_training(realdata):
  from aejax.data.pipeline import make_loader
  from aejax.data.transforms import RandomResizedCrop
  from aejax.vae.evaluation import preview_images
  from experiments import vae

  config = vae.smoke()
  config.data.root = str(realdata / "photos")  # mixed sizes, an RGBA png and a grey image
  train_src, valid_src = vae.image_sources(config.data)
  n = len(list((realdata / "photos").iterdir()))
  assert len(train_src) + len(valid_src) == n and len(valid_src) == round(0.2 * n)
  assert not {p for p, _ in train_src.files} & {p for p, _ in valid_src.files}
  again = vae.image_sources(config.data)[1]  # the split is seeded
  assert [p for p, _ in again.files] == [p for p, _ in valid_src.files]
  batch = next(make_loader(train_src, batch_size=4, transforms=[RandomResizedCrop(30, scale=(0.2, 1))]))
  assert batch["image"].shape == (4, 30, 30, 3) and batch["image"].dtype == np.uint8
  previews = preview_images(valid_src, 30, n=3)
  assert previews.shape == (3, 30, 30, 3)


def test_eval_of_the_best_checkpoint_reproduces_its_validation(smoke_run, tmp_path):
  import json

  from experiments import vae

  workdir, _ = smoke_run
  best = json.loads((workdir / "best.json").read_text())
  got = vae.main(
    ["eval", "--preset", "smoke", "--checkpoint", str(workdir / "best"), "--workdir", str(tmp_path / "ev")]
  )
  for k in ("neg_elbo", "kl", "bce", "nats_per_dim", "bits_per_dim"):
    assert got[k] == pytest.approx(best[k], rel=1e-5), k
  assert json.loads((tmp_path / "ev" / "eval_results.json").read_text()) == got
  with pytest.raises(ValueError, match="--checkpoint"):
    vae.main(["eval", "--preset", "smoke", "--workdir", str(tmp_path / "ev")])


def test_restore_keys_take_the_model_from_the_runs_config_json(tmp_path):
  import json

  from aejax.train.restore import run_config
  from experiments import vae as exp

  config = exp.get_config()
  step = tmp_path / "run" / "checkpoints" / "12"
  step.mkdir(parents=True)
  assert run_config(step, config, exp.RESTORE_KEYS) is config  # no config.json anywhere above
  saved = config.to_dict()
  saved["model"].update(latent_dim=7, features=[4, 8, 8])
  saved["data"].update(image_size=30, batch_size=999)
  saved["optim"]["lr"] = 0.125
  (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
  got = run_config(step, config, exp.RESTORE_KEYS)  # found two folders up
  assert got.model.latent_dim == 7 and got.data.image_size == 30
  assert got.model.features == (4, 8, 8)  # JSON lists back to tuples
  assert got.data.batch_size == config.data.batch_size != 999  # only the listed keys are taken
  assert got.optim.lr == config.optim.lr != 0.125  # restoring variables needs no optimiser
  assert config.model.latent_dim != 7  # the caller's config is untouched
