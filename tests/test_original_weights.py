"""The originals' released PyTorch weights in our Flax models, exactly.

- Torch-free: the `.pth` reader refuses foreign pickles; a state dict in the originals' layout
  (built here from random Flax variables) round-trips through .npz / .safetensors files back to the
  same variables; missing, unexpected, mis-shaped and disagreeing keys are one-line errors.
- With torch (bench/requirements.txt) and ../shared/realdata: random weights of the released
  shapes in `bench/torch_ref` (the originals' module names) and our models agree in eval mode to
  1e-5 on real frames, fed as the originals fed them (OVAL: BGR, [N, C, W, H]); the torch-free
  reader equals `torch.load`.
- With `AEJAX_ORIGINAL_WEIGHTS=DIR` holding `MS_SSIM_L1-epoch-50.pth` (Best-Frame-Retrieval) and
  `offline8.pt` (OVAL): the real files' key sets, parameter counts and equality on a real frame.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.models import keyframe_ae as kae
from aejax.models import oval as ov
from aejax.models.torch_weights import load_state_dict, read_pth

TOL = 1e-5
KF_FILE, OVAL_FILE = "MS_SSIM_L1-epoch-50.pth", "offline8.pt"


def _count(tree) -> int:
  return int(sum(np.size(a) for a in jax.tree.leaves(tree)))


def _torch():
  torch = pytest.importorskip("torch")
  pytest.importorskip("bench.torch_ref.keyframe_ae")
  return torch


def _weights_dir() -> Path:
  env = os.environ.get("AEJAX_ORIGINAL_WEIGHTS")
  if not env:
    pytest.skip("set AEJAX_ORIGINAL_WEIGHTS=DIR (holding MS_SSIM_L1-epoch-50.pth and offline8.pt)")
  d = Path(env)
  for name in (KF_FILE, OVAL_FILE):
    if not (d / name).is_file():
      pytest.skip(f"{d / name} not found")
  return d


def _tree_frames(realdata, n=2) -> np.ndarray:
  """Real frames of the tree video at their native 240x320 (as the key-frame original): RGB uint8."""
  from aejax.data.video import VideoReader

  return VideoReader(realdata / "videos" / "opencv_tree.avi").read([0, 60][:n])


def _oval_frames(realdata, n=2) -> np.ndarray:
  """Real frames resized to 480x360 with INTER_AREA, as OVAL's loader did: RGB uint8 [n, 360, 480, 3]."""
  import cv2

  from aejax.data.video import VideoReader

  frames = VideoReader(realdata / "videos" / "visp_cube.mpeg").read([0, 50][:n])
  return np.stack([cv2.resize(f, (480, 360), interpolation=cv2.INTER_AREA) for f in frames])


# ---- the originals' layouts, built from our variables (the inverse of the loaders) -------------------


def _random_variables(model, x, seed=0) -> dict:
  shapes = jax.eval_shape(
    lambda: model.init(
      jax.random.key(0), x, **({"train": False} if isinstance(model, kae.KeyframeAE) else {})
    )
  )
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32), shapes)


def _keyframe_torch_layout(variables) -> dict[str, np.ndarray]:
  """The 120-key state dict of Best-Frame-Retrieval (attribute names plus Sequential aliases)."""
  p, s = variables["params"], variables["batch_stats"]
  sd = {}
  for j in range(1, 6):
    sd[f"conv{j}.weight"] = np.transpose(p[f"conv{j}"]["kernel"], (3, 2, 0, 1))
    sd[f"conv{j}.bias"] = p[f"conv{j}"]["bias"]
    sd[f"t_conv{j}.weight"] = np.transpose(p[f"t_conv{j}"]["kernel"][::-1, ::-1], (2, 3, 0, 1))
    sd[f"t_conv{j}.bias"] = p[f"t_conv{j}"]["bias"]
  for j in range(6):
    n = f"bn{j}"
    sd.update(
      {
        f"{n}.weight": p[n]["scale"],
        f"{n}.bias": p[n]["bias"],
        f"{n}.running_mean": s[n]["mean"],
        f"{n}.running_var": s[n]["var"],
        f"{n}.num_batches_tracked": np.array(7),
      }
    )
  for alias, name in kae._SEQUENTIAL_ALIASES.items():
    for key in [k for k in list(sd) if k.rpartition(".")[0] == name]:
      sd[f"{alias}.{key.rpartition('.')[2]}"] = sd[key]
  return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def _oval_torch_layout(params) -> dict[str, np.ndarray]:
  """OVAL's state dict ([N, C, W, H] kernels, BGR first/last channels) from our RGB params."""
  sd = {}
  for i in range(5):
    k = np.asarray(params[f"enc{i}"]["kernel"])
    k = k[:, :, ::-1] if i == 0 else k
    sd[f"encoder.conv_net.{2 * i}.weight"] = np.transpose(k, (3, 2, 1, 0))
    sd[f"encoder.conv_net.{2 * i}.bias"] = np.asarray(params[f"enc{i}"]["bias"])
    k, b = np.asarray(params[f"dec{i}"]["kernel"])[::-1, ::-1], np.asarray(params[f"dec{i}"]["bias"])
    k, b = (k[..., ::-1], b[::-1]) if i == 4 else (k, b)
    sd[f"decoder.conv_net.{2 * i}.weight"] = np.transpose(k, (2, 3, 1, 0))
    sd[f"decoder.conv_net.{2 * i}.bias"] = b
  return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def _assert_trees_equal(a, b):
  ta, tb = jax.tree.structure(a), jax.tree.structure(b)
  assert ta == tb, (ta, tb)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---- torch-free -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_weight_files_round_trip_without_torch(tmp_path, suffix):
  kf = kae.KeyframeAE(share_norms=True)
  kv = _random_variables(kf, jnp.zeros((1, 8, 8, 3)))
  om = ov.OVAL()
  opar = _random_variables(om, jnp.zeros((1, 72, 72, 3)))
  for name, sd, load, want in [
    ("kf", _keyframe_torch_layout(kv), kae.load_original_weights, kv),
    ("oval", _oval_torch_layout(opar["params"]), ov.load_original_weights, opar),
  ]:
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".npz":
      np.savez(path, **sd)
    else:
      from safetensors.numpy import save_file

      save_file(sd, str(path))
    assert set(load_state_dict(path)) == set(sd)
    _assert_trees_equal(load(path), want)
  assert _count(kv["params"]) == 580_449 and _count(opar["params"]) == 6_991


def test_keyframe_weight_errors_name_the_key():
  kv = _random_variables(kae.KeyframeAE(share_norms=True), jnp.zeros((1, 8, 8, 3)))
  sd = _keyframe_torch_layout(kv)
  _assert_trees_equal(kae.load_torch_state_dict(kv, sd), kv)
  narrow = sd["conv2.weight"][:, :16]
  cases = [
    (
      {
        k: v
        for k, v in sd.items()
        if not k.startswith(("bn3.running_var", "encoder.8.running_var", "decoder.4.running_var"))
      },
      "lacks 'bn3.running_var'",
    ),
    ({**sd, "bn6.weight": np.ones(3, np.float32)}, "unexpected key 'bn6.weight'"),
    ({**sd, "conv2.weight": narrow, "encoder.4.weight": narrow}, "'conv2.weight' has shape (64, 16, 3, 3)"),
    ({**sd, "decoder.1.running_mean": sd["bn4.running_mean"] + 1}, "'decoder.1.running_mean'"),
  ]
  for bad, msg in cases:
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
      kae.load_torch_state_dict(kv, bad)
    assert "\n" not in str(e.value)
  # The decoder's own norms (share_norms=False) get copies of the shared ones.
  kv2 = _random_variables(kae.KeyframeAE(share_norms=False), jnp.zeros((1, 8, 8, 3)))
  got = kae.load_torch_state_dict(kv2, sd)
  np.testing.assert_array_equal(got["batch_stats"]["dec_bn1"]["var"], kv["batch_stats"]["bn4"]["var"])


def test_oval_weight_errors_name_the_key():
  v = _random_variables(ov.OVAL(), jnp.zeros((1, 72, 72, 3)))
  sd = _oval_torch_layout(v["params"])
  with pytest.raises(ValueError, match="lacks 'decoder.conv_net.8.bias'"):
    ov.load_torch_state_dict(v, {k: a for k, a in sd.items() if k != "decoder.conv_net.8.bias"})
  with pytest.raises(ValueError, match="unexpected key 'encoder.conv_net.10.weight'"):
    ov.load_torch_state_dict(v, {**sd, "encoder.conv_net.10.weight": np.zeros((10, 10, 4, 4))})
  with pytest.raises(ValueError, match="'encoder.conv_net.4.weight' has shape"):
    ov.load_torch_state_dict(v, {**sd, "encoder.conv_net.4.weight": np.zeros((9, 8, 3, 3))})
  lstm = _random_variables(ov.OVAL(use_lstm=True), jnp.zeros((1, 1, 72, 72, 3)))
  with pytest.raises(ValueError, match="no state-dict entry fills params/(enc|dec)_lstm"):
    ov.load_torch_state_dict(lstm, sd)


def test_pth_reader_refuses_foreign_pickles(tmp_path):
  import collections

  bad = tmp_path / "bad.pth"
  with zipfile.ZipFile(bad, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({"w": collections.Counter()}, protocol=2))
  with pytest.raises(ValueError, match=r"bad\.pth: holds collections\.Counter"):
    read_pth(bad)
  (tmp_path / "legacy.pth").write_bytes(pickle.dumps({"w": 1}))
  with pytest.raises(ValueError, match="not a torch zip archive"):
    load_state_dict(tmp_path / "legacy.pth")
  with pytest.raises(ValueError, match="unknown weights format"):
    load_state_dict(bad.rename(tmp_path / "bad.bin2"))


# ---- with torch: the reader and equality against the PyTorch references -----------------------------


def test_pth_weight_reader_equals_torch_load(tmp_path):
  torch = _torch()
  g = torch.Generator().manual_seed(0)
  base = torch.randn(6, 8, generator=g)
  sd = {
    "a": base,
    "view": base[1:, ::3],
    "t": base.t(),
    "bf16": torch.randn(3, 5, generator=g).bfloat16(),
    "half": torch.randn(4, generator=g).half(),
    "count": torch.tensor(38300),
    "mask": base > 0,
    "param": torch.nn.Parameter(torch.ones(2, 2)),
  }
  wrapped = {"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": {}}
  for obj, path in [(sd, tmp_path / "bare.pth"), (wrapped, tmp_path / "wrapped.pt")]:
    torch.save(obj, path)
    ours = load_state_dict(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    ref = ref.get("model_state_dict", ref)
    assert list(ours) == list(ref)
    for k, v in ref.items():
      want = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
      assert ours[k].shape == want.shape, k
      assert ours[k].dtype.name == ("bfloat16" if v.dtype == torch.bfloat16 else want.dtype.name), k
      np.testing.assert_array_equal(np.asarray(ours[k], want.dtype), want)
  torch.save(torch.nn.Linear(2, 3), tmp_path / "module.pt")
  with pytest.raises(ValueError, match="module.pt: holds torch.nn.modules.linear.Linear"):
    load_state_dict(tmp_path / "module.pt")


def _randomise_norms(torch, model, seed=0):
  """Non-trivial BatchNorm affine and running statistics (a fresh module has 1, 0, 0, 1)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        c = m.num_features
        m.weight.copy_(0.5 + torch.rand(c, generator=g))
        m.bias.copy_(0.2 * torch.randn(c, generator=g))
        m.running_mean.copy_(0.3 * torch.randn(c, generator=g))
        m.running_var.copy_(0.5 + torch.rand(c, generator=g))
  return model


def _kae_shapes():
  model = kae.KeyframeAE(share_norms=True)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))


def _keyframe_compare(torch, tm, variables, frames, original_inference=False) -> dict[str, float]:
  """Max |ours - torch| of the output (in [-1, 1]) and of the latent relative to max |latent| (the
  released model's latent reaches ~22, where float32 spacing is 2e-6), on `frames` (uint8 RGB), eval mode.

  Torch gets the original's input ([0, 1] with `original_inference`, else [-1, 1]); ours [-1, 1].
  """
  x01 = frames.astype(np.float32) / 255.0
  xt = torch.from_numpy((x01 if original_inference else 2 * x01 - 1).transpose(0, 3, 1, 2).copy())
  tm.eval()
  with torch.no_grad():
    zt, yt = tm.encode(xt).numpy(), tm(xt).numpy()
  model = kae.KeyframeAE(share_norms=True)
  y, aux = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, 2 * x01 - 1)
  dz = float(np.abs(np.asarray(aux["z"]) - zt.transpose(0, 2, 3, 1)).max())
  return {
    "latent_rel": dz / max(1.0, float(np.abs(zt).max())),
    "output": float(np.abs(np.asarray(y) - yt.transpose(0, 2, 3, 1)).max()),
  }


def _oval_compare(torch, tm, variables, frames) -> float:
  """Max |ours - torch| of the sigmoid output: torch fed as the original (BGR / 255, [N, C, W, H])."""
  x = frames.astype(np.float32) / 255.0
  xt = torch.from_numpy(x[..., ::-1].transpose(0, 3, 2, 1).copy())
  tm.eval()
  with torch.no_grad():
    yt = torch.sigmoid(tm(xt)).numpy().transpose(0, 3, 2, 1)[..., ::-1]  # back to [N, H, W, RGB]
  model = ov.OVAL(exact_output=False)
  y, _ = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
  assert y.shape == yt.shape == (len(frames), 351, 471, 3)
  return float(np.abs(np.asarray(y) - yt).max())


def test_keyframe_random_weights_equal_torch_reference(realdata):
  torch = _torch()
  from bench.torch_ref import keyframe_ae as ref

  torch.manual_seed(0)
  tm = _randomise_norms(torch, ref.Autoencoder(share_norms=True))
  sd = tm.state_dict()
  assert len(sd) == 120
  frames = _tree_frames(realdata)  # [2, 240, 320, 3], native size
  variables = kae.load_torch_state_dict(_kae_shapes(), sd)  # torch tensors in
  assert _count(variables["params"]) == 580_449
  d = _keyframe_compare(torch, tm, variables, frames)
  assert max(d.values()) < TOL, d
  folded = kae.load_torch_state_dict(
    _kae_shapes(), {k: v.numpy() for k, v in sd.items()}, original_inference=True
  )
  d = _keyframe_compare(torch, tm, folded, frames, original_inference=True)
  assert max(d.values()) < TOL, d


def test_oval_random_weights_equal_torch_reference(realdata):
  torch = _torch()
  from bench.torch_ref import oval as ref

  torch.manual_seed(0)
  tm = ref.OVAL((480, 360), exact_output=False)  # the original's [N, C, W, H] at img_size (480, 360)
  frames = _oval_frames(realdata)
  shapes = jax.eval_shape(lambda: ov.OVAL().init(jax.random.key(0), jnp.zeros((1, 72, 72, 3))))
  variables = ov.load_torch_state_dict(shapes, tm.state_dict())  # torch tensors in
  assert _count(variables["params"]) == 6_991
  assert _oval_compare(torch, tm, variables, frames) < TOL
  # Natural [N, C, H, W] RGB weights (swap_hw=False, channels="bgr" keeps the order) and the exact-size
  # decoder: the benchmark's reference with output_padding.
  tn = ref.OVAL((360, 480), exact_output=True)
  v2 = ov.load_torch_state_dict(variables, tn.state_dict(), channels="bgr", swap_hw=False)
  x = frames.astype(np.float32) / 255.0
  with torch.no_grad():
    yt = torch.sigmoid(tn(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))).numpy().transpose(0, 2, 3, 1)
  y, _ = jax.jit(lambda v, x: ov.OVAL().apply(v, x))(v2, x)
  assert y.shape == yt.shape == (2, 360, 480, 3)
  assert float(np.abs(np.asarray(y) - yt).max()) < TOL


# ---- the real released files --------------------------------------------------------------------------


def test_released_weight_files_keys_and_param_counts():
  d = _weights_dir()
  kf_sd, oval_sd = load_state_dict(d / KF_FILE), load_state_dict(d / OVAL_FILE)
  assert len(kf_sd) == 120 and len(oval_sd) == 20
  assert {k.rpartition(".")[0] for k in oval_sd} == {
    f"{s}.conv_net.{i}" for s in ("encoder", "decoder") for i in (0, 2, 4, 6, 8)
  }
  assert int(kf_sd["bn1.num_batches_tracked"]) == 2 * int(kf_sd["bn5.num_batches_tracked"]) == 76_600
  kv, ovv = kae.load_original_weights(d / KF_FILE), ov.load_original_weights(d / OVAL_FILE)
  assert _count(kv["params"]) == 580_449 and _count(ovv["params"]) == 6_991
  assert set(kv["batch_stats"]) == {f"bn{j}" for j in range(6)}
  np.testing.assert_array_equal(kv["batch_stats"]["bn0"]["var"], kf_sd["bn0.running_var"])


def test_released_weights_equal_torch_reference(realdata):
  torch = _torch()
  from bench.torch_ref import keyframe_ae as kref
  from bench.torch_ref import oval as oref

  d = _weights_dir()
  tk = kref.Autoencoder(share_norms=True)
  tk.load_state_dict(torch.load(d / KF_FILE, map_location="cpu", weights_only=True), strict=True)
  assert set(tk.state_dict()) == set(load_state_dict(d / KF_FILE))
  frames = _tree_frames(realdata)
  dk = _keyframe_compare(torch, tk, kae.load_original_weights(d / KF_FILE), frames)
  dk_orig = _keyframe_compare(
    torch,
    tk,
    kae.load_original_weights(d / KF_FILE, original_inference=True),
    frames,
    original_inference=True,
  )
  to = oref.OVAL((480, 360), exact_output=False)
  to.load_state_dict(torch.load(d / OVAL_FILE, map_location="cpu", weights_only=True), strict=True)
  assert set(to.state_dict()) == set(load_state_dict(d / OVAL_FILE))
  do = _oval_compare(
    torch, to, ov.load_original_weights(d / OVAL_FILE, ov.OVAL(exact_output=False)), _oval_frames(realdata)
  )
  print(f"max abs diff: keyframe [-1,1] {dk}, keyframe original inference {dk_orig}, OVAL {do:.2e}")
  assert max(dk.values()) < TOL and max(dk_orig.values()) < TOL and do < TOL
