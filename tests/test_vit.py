"""ViT: an independent NumPy forward on timm-layout weights, parameter counts, weight import."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from aejax.masking import random_masking
from aejax.models.layers import sincos_2d
from aejax.models.vit import VARIANTS, ViT, load_pretrained, load_torch_state_dict

P, D, DEPTH, HEADS = 8, 32, 2, 4
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def timm_state_dict(grid, seed=0, learned=True):
  """Random weights with timm's names and PyTorch layouts (plus a head that must be ignored)."""
  r = np.random.RandomState(seed)
  f = lambda *s: (0.2 * r.randn(*s)).astype(np.float32)  # noqa: E731
  sd = {
    "cls_token": f(1, 1, D),
    "patch_embed.proj.weight": f(D, 3, P, P),
    "patch_embed.proj.bias": f(D),
    "norm.weight": 1 + f(D),
    "norm.bias": f(D),
    "head.weight": f(10, D),
    "head.bias": f(10),
  }
  if learned:
    sd["pos_embed"] = f(1, 1 + grid[0] * grid[1], D)
  for i in range(DEPTH):
    b = f"blocks.{i}."
    sd.update(
      {
        b + "norm1.weight": 1 + f(D),
        b + "norm1.bias": f(D),
        b + "attn.qkv.weight": f(3 * D, D),
        b + "attn.qkv.bias": f(3 * D),
        b + "attn.proj.weight": f(D, D),
        b + "attn.proj.bias": f(D),
        b + "norm2.weight": 1 + f(D),
        b + "norm2.bias": f(D),
        b + "mlp.fc1.weight": f(4 * D, D),
        b + "mlp.fc1.bias": f(4 * D),
        b + "mlp.fc2.weight": f(D, 4 * D),
        b + "mlp.fc2.bias": f(D),
      }
    )
  return sd


def mae_sincos(dim, gh, gw):
  """MAE's pos_embed.py, written out as in the original (meshgrid(w, h), emb_h from grid[0])."""

  def one_d(d, pos):
    omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)

  grid = np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32))
  grid = np.stack(grid, axis=0)  # [2, gh, gw]
  return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)


def ln(x, w, b):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + 1e-6) * w + b


def numpy_vit(img, sd, pos):
  """timm VisionTransformer.forward_features on one image [H, W, 3] in [0, 1]; pos [1+N, D]."""
  x = (img - MEAN) / STD
  h, w = img.shape[0] // P, img.shape[1] // P
  wpe = sd["patch_embed.proj.weight"].reshape(D, -1)
  toks = [
    wpe @ x[i * P : (i + 1) * P, j * P : (j + 1) * P].transpose(2, 0, 1).reshape(-1)
    + sd["patch_embed.proj.bias"]
    for i in range(h)
    for j in range(w)
  ]
  t = np.concatenate([sd["cls_token"][0], np.stack(toks)], 0) + pos  # [1+N, D]
  hd = D // HEADS
  for i in range(DEPTH):
    g = lambda k: sd[f"blocks.{i}.{k}"]  # noqa: B023, E731
    y = ln(t, g("norm1.weight"), g("norm1.bias"))
    qkv = (y @ g("attn.qkv.weight").T + g("attn.qkv.bias")).reshape(len(t), 3, HEADS, hd)
    q, k, v = qkv[:, 0].transpose(1, 0, 2), qkv[:, 1].transpose(1, 0, 2), qkv[:, 2].transpose(1, 0, 2)
    a = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
    a = np.exp(a - a.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    o = (a @ v).transpose(1, 0, 2).reshape(len(t), D)
    t = t + o @ g("attn.proj.weight").T + g("attn.proj.bias")
    y = ln(t, g("norm2.weight"), g("norm2.bias"))
    y = y @ g("mlp.fc1.weight").T + g("mlp.fc1.bias")
    y = 0.5 * y * (1 + erf(y / np.sqrt(2)))
    t = t + y @ g("mlp.fc2.weight").T + g("mlp.fc2.bias")
  return ln(t, sd["norm.weight"], sd["norm.bias"])


def tiny(**kw):
  return ViT(patch_size=P, width=D, depth=DEPTH, num_heads=HEADS, **kw)


@pytest.fixture(scope="module")
def image():
  return np.random.RandomState(1).rand(2, 32, 48, 3).astype(np.float32)  # grid 4 x 6


@pytest.mark.parametrize("learned", [True, False])
def test_forward_matches_numpy(image, learned):
  grid = (4, 6)
  model = tiny(pos_embed="learned" if learned else "sincos", img_size=(32, 48))
  params = model.init(jax.random.key(0), image[:1])["params"]
  sd = timm_state_dict(grid, learned=learned)
  params = load_torch_state_dict(params, sd)
  tokens, aux = model.apply({"params": params}, image)
  assert tokens.shape == (2, 25, D) and tuple(np.asarray(aux["grid"])) == grid
  pos = sd["pos_embed"][0] if learned else np.concatenate([np.zeros((1, D)), mae_sincos(D, *grid)])
  for b in range(2):
    np.testing.assert_allclose(
      np.asarray(tokens[b]), numpy_vit(image[b].astype(np.float64), sd, pos), rtol=2e-4, atol=2e-4
    )
  feats = model.apply({"params": params}, image, method=ViT.features)
  assert feats.shape == (2, 4, 6, D)
  np.testing.assert_allclose(
    np.asarray(feats).reshape(2, 24, D), np.asarray(tokens[:, 1:]), rtol=1e-5, atol=1e-5
  )


def test_sincos_table_matches_mae():
  np.testing.assert_allclose(sincos_2d(16, (3, 5), cls_token=True)[1:], mae_sincos(16, 3, 5), atol=1e-6)
  assert np.all(sincos_2d(16, (3, 5), cls_token=True)[0] == 0)


def test_padding_and_masked_tokens_do_not_change_results(image):
  """token_multiple pads 25 -> 32 with masked keys: same numbers as no padding; ids_keep gathers."""
  a, b = tiny(token_multiple=1), tiny(token_multiple=16)
  params = a.init(jax.random.key(0), image[:1])["params"]
  ta, _ = a.apply({"params": params}, image)
  tb, _ = b.apply({"params": params}, image)
  np.testing.assert_allclose(np.asarray(ta), np.asarray(tb), rtol=1e-5, atol=1e-5)
  ids_keep, _, _ = random_masking(jax.random.key(3), 2, 24, 0.75)  # 6 of 24 kept
  tk, _ = b.apply({"params": params}, image, ids_keep=ids_keep)
  assert tk.shape == (2, 7, D)
  # Attention has no order: permuting the kept set permutes the outputs.
  perm = ids_keep[:, ::-1]
  tp, _ = b.apply({"params": params}, image, ids_keep=perm)
  np.testing.assert_allclose(np.asarray(tp[:, 1:]), np.asarray(tk[:, 1:][:, ::-1]), rtol=1e-4, atol=1e-5)


def test_bf16_close_to_float32(image):
  params = tiny().init(jax.random.key(0), image[:1])["params"]
  t32, _ = tiny().apply({"params": params}, image)
  t16, _ = tiny(dtype=jnp.bfloat16).apply({"params": params}, image)
  assert t16.dtype == jnp.bfloat16
  err = np.abs(np.asarray(t16, np.float32) - np.asarray(t32))
  assert err.mean() < 0.05 and np.isfinite(err).all()


def count_vit(width, depth, patch, learned=False, tokens=196):
  """Closed-form parameter count of a timm ViT without head (MLP ratio 4)."""
  block = (
    2 * 2 * width
    + (width * 3 * width + 3 * width)
    + (width * width + width)
    + (width * 4 * width + 4 * width)
    + (4 * width * width + width)
  )
  embed = patch * patch * 3 * width + width
  return embed + width + depth * block + 2 * width + (learned * (tokens + 1) * width)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_parameter_counts(name):
  cfg = VARIANTS[name]
  model = ViT.from_name(name)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
  n = sum(x.size for x in jax.tree.leaves(shapes))
  assert n == count_vit(cfg["width"], cfg["depth"], cfg["patch_size"])
  if name == "S/16":  # ViT-S/16: 21.59M + the 75,648 of timm's learned table = timm's 21,665,664
    assert n == 21_590_016
    learned = ViT.from_name(name, pos_embed="learned")
    shapes = jax.eval_shape(lambda: learned.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
    assert sum(x.size for x in jax.tree.leaves(shapes)) == 21_665_664


def test_weight_files_round_trip(tmp_path, image):
  from safetensors.numpy import save_file

  grid = (4, 6)
  model = tiny(pos_embed="learned", img_size=(32, 48))
  params = model.init(jax.random.key(0), image[:1])["params"]
  sd = timm_state_dict(grid)
  ref = load_torch_state_dict(params, sd)
  np.savez(tmp_path / "w.npz", **{"module." + k: v for k, v in sd.items()})  # DDP prefix
  save_file(sd, str(tmp_path / "w.safetensors"))
  for name in ("w.npz", "w.safetensors"):
    got = load_pretrained(params, tmp_path / name)
    jax.tree.map(np.testing.assert_array_equal, got, ref)
  torch = pytest.importorskip("torch")
  torch.save({"model": {k: torch.from_numpy(v) for k, v in sd.items()}}, tmp_path / "w.pth")
  jax.tree.map(np.testing.assert_array_equal, load_pretrained(params, tmp_path / "w.pth"), ref)


def test_weight_errors(image, tmp_path):
  model = tiny(pos_embed="learned", img_size=(32, 48))
  params = model.init(jax.random.key(0), image[:1])["params"]
  sd = timm_state_dict((4, 6))
  del sd["blocks.1.mlp.fc2.bias"]
  with pytest.raises(ValueError, match="lacks 1 ViT weights"):
    load_torch_state_dict(params, sd)
  sd = timm_state_dict((4, 6))
  sd["blocks.0.attn.proj.weight"] = sd["blocks.0.attn.proj.weight"][:, :8]
  with pytest.raises(ValueError, match="shape"):
    load_torch_state_dict(params, sd)
  with pytest.raises(FileNotFoundError):
    load_pretrained(params, tmp_path / "missing.npz")
  with pytest.raises(ValueError, match="multiple of the patch"):
    model.apply({"params": params}, np.zeros((1, 30, 48, 3), np.float32))


def test_sincos_interpolated_positions():
  """A 4x6 grid mapped onto a 2x3 base grid samples MAE's table at half-pixel-centre positions."""
  got = sincos_2d(16, (4, 6), base_grid=(2, 3))
  ys, xs = (np.arange(4) + 0.5) / 2 - 0.5, (np.arange(6) + 0.5) / 2 - 0.5
  omega = 1.0 / 10000 ** (np.arange(4) / 4.0)
  ref = [
    np.concatenate([np.sin(x * omega), np.cos(x * omega), np.sin(y * omega), np.cos(y * omega)])
    for y in ys
    for x in xs
  ]
  np.testing.assert_allclose(got, np.stack(ref), atol=1e-6)
  np.testing.assert_allclose(sincos_2d(16, (2, 3), base_grid=(2, 3)), sincos_2d(16, (2, 3)))
