"""SiamMAE loss equality: our Flax model and `bench/torch_ref/siammae.py` on the same weights and inputs.

SiamMAE (Gupta et al., NeurIPS 2023, arXiv 2305.14344). Issue 9 asks that both sides of a benchmark
compute the same loss on the same inputs before anything is timed. `check_loss` builds
`aejax.models.siammae.SiamMAE` from an experiment config, draws random parameters of its shapes
(`random_params`: non-zero biases, non-unit LayerNorm scales, so every weight counts), copies them
into the PyTorch reference (`to_state_dict`: Dense kernels transposed, the patch conv's kernel
[p, p, C, D] to [D, C, p, p], LayerNorm scale -> weight, the same qkv / kv column layouts), runs
our model on uint8 frame pairs (/ 255, as `experiments.siammae.pairs_of`), reads the mask it drew
from the `mask` stream, hands the same visible patches to the PyTorch model and compares the two
losses: float32 (full-precision matmuls on both sides) within 1e-4, bf16 (JAX `dtype=bfloat16`,
PyTorch autocast) within 2e-2.

  python bench/siammae_check.py                          # paper (ViT-S/16 224), batch 2, float32
  python bench/siammae_check.py --preset smoke --dtype bfloat16 --batch 4

Prints one JSON line: jax_loss, torch_loss, rel_diff, ok (and the config).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from aejax.models.siammae import SiamMAE  # noqa: E402
from bench.common import autocast, exact, jnp_dtype, loss_check, torch_device  # noqa: E402

RTOL = {"float32": 1e-4, "bfloat16": 2e-2}
_BLOCKS = re.compile(r"^(blocks|decoder_blocks)_(\d+)$")


def build_model(config, dtype: str = "float32") -> SiamMAE:
  """Our model of an experiment config (`experiments.siammae` preset) in compute `dtype`."""
  from experiments import siammae as exp

  return exp.build_model(config).clone(dtype=jnp_dtype(dtype))


def torch_model(model: SiamMAE):
  """The PyTorch reference with `model`'s architecture (randomly initialised, float32)."""
  from aejax.models.vit import vit_variant
  from bench.torch_ref import siammae as ref

  cfg = vit_variant(model.encoder)
  return ref.SiamMAE(
    img=model.img_size,
    p=cfg["patch_size"],
    d=model.encoder_width or cfg["width"],
    depth=model.encoder_depth or cfg["depth"],
    heads=model.encoder_heads or cfg["num_heads"],
    dd=model.decoder_width,
    ddepth=model.decoder_depth,
    dheads=model.decoder_heads,
    ratio=model.mask_ratio,
    decoder=model.decoder,
    mlp_ratio=model.mlp_ratio,
    norm_pix_loss=model.norm_pix_loss,
    past_pos_embed=model.past_pos_embed,
  )


def _flatten(tree: Mapping) -> dict:
  """{("vit", "blocks_0", ...): leaf} of a params tree."""
  from flax.traverse_util import flatten_dict

  return flatten_dict(dict(tree))


def to_state_dict(params: Mapping) -> dict[str, np.ndarray]:
  """Our SiamMAE params tree -> the PyTorch reference's state dict (float32 NumPy arrays).

  `vit/blocks_3/attn/qkv/kernel` [D, 3D] -> `blocks.3.attn.qkv.weight` [3D, D] (transposed;
  qkv / kv columns are (3 | 2, heads, head width) on both sides), `decoder_blocks_0/...` ->
  `decoder_blocks.0....`, LayerNorm `scale` -> `weight`, `vit/patch_embed/kernel` [p, p, C, D] ->
  `patch_embed.weight` [D, C, p, p]; `vit/cls_token`, `mask_token` keep their [1, 1, D] shape.
  """
  out = {}
  for path, value in _flatten(params).items():
    arr = np.asarray(value, np.float32)
    parts = list(path[1:] if path[0] == "vit" else path)
    leaf = parts.pop()
    names = []
    for part in parts:
      m = _BLOCKS.match(part)
      names += [m.group(1), m.group(2)] if m else [part]
    if leaf in ("cls_token", "mask_token"):
      out[".".join(names + [leaf])] = np.array(arr, copy=True)
      continue
    if leaf == "kernel":
      arr = arr.transpose(3, 2, 0, 1) if arr.ndim == 4 else arr.T
      leaf = "weight"
    elif leaf == "scale":
      leaf = "weight"
    elif leaf != "bias":
      raise ValueError(f"SiamMAE parameter {'/'.join(path)} has no PyTorch counterpart")
    out[".".join(names + [leaf])] = np.array(arr, np.float32, copy=True)  # writable, contiguous
  return out


def load_into(tmodel, params: Mapping):
  """Copies our params into the PyTorch model (strict: every weight on both sides)."""
  import torch

  tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in to_state_dict(params).items()}, strict=True)
  return tmodel


def random_params(model: SiamMAE, seed: int = 0) -> dict:
  """Random float32 parameters of `model`'s shapes (`jax.eval_shape`, nothing compiled).

  Unlike the initialiser's zero biases and unit LayerNorm scales, every parameter is random
  (kernels N(0, 1/fan_in), biases N(0, 0.1²), scales 1 + N(0, 0.2²), tokens N(0, 0.02²)), so a
  converter that dropped or mis-placed any of them would change the loss.
  """
  s = model.img_size
  shapes = jax.eval_shape(
    lambda k: model.init({"params": k, "mask": k}, jnp.zeros((1, 2, s, s, 3)))["params"], jax.random.key(0)
  )
  rng = np.random.default_rng(seed)
  flat = {}
  for path, leaf in _flatten(shapes).items():
    shape, name = tuple(leaf.shape), path[-1]
    z = rng.standard_normal(shape).astype(np.float32)
    if name == "kernel":
      flat[path] = z / np.sqrt(np.prod(shape[:-1]))
    elif name == "scale":
      flat[path] = 1.0 + 0.2 * z
    elif name == "bias":
      flat[path] = 0.1 * z
    else:  # cls_token, mask_token
      flat[path] = 0.02 * z
  from flax.traverse_util import unflatten_dict

  return unflatten_dict({path: jnp.asarray(v) for path, v in flat.items()})


@functools.lru_cache(maxsize=8)
def _loss_fn(model: SiamMAE):
  """Jitted (params, frames [B, 2, H, W, 3] float, mask key) -> (loss, mask), one per model."""

  def fn(params, x, key):
    _, aux = model.apply({"params": params}, x, rngs={"mask": key})
    return aux["loss"], aux["mask"]

  return jax.jit(fn)


def random_pairs(batch: int, size: int, seed: int = 0) -> np.ndarray:
  """uint8 frame pairs [B, 2, H, W, 3]."""
  return np.random.default_rng(seed).integers(0, 256, (batch, 2, size, size, 3), dtype=np.uint8)


def jax_loss_and_keep(model: SiamMAE, params, frames: np.ndarray, seed: int = 0):
  """Our loss (float32) on uint8 pairs and the visible patches [B, n] of the mask the model drew."""
  x = np.asarray(frames, np.float32) / 255.0  # as experiments.siammae.pairs_of
  loss, mask = _loss_fn(model)(params, x, jax.random.key(seed))
  mask = np.asarray(mask)  # [B, L], 1 = hidden
  n_keep = int(round(mask.shape[1] - mask[0].sum()))
  keep = np.argsort(mask, axis=1, kind="stable")[:, :n_keep]  # visible patches, ascending
  if not np.all(mask[np.arange(len(mask))[:, None], keep] == 0):
    raise ValueError("the mask does not keep the same number of patches in every sample")
  return float(loss), keep


def torch_loss(tmodel, frames: np.ndarray, keep: np.ndarray, dtype: str = "float32") -> float:
  """The reference's loss on the same uint8 pairs and visible patches (autocast when bf16)."""
  import torch

  dev = torch_device(torch)
  tmodel = tmodel.to(dev).eval()
  x = torch.from_numpy(frames.transpose(0, 1, 4, 2, 3).astype(np.float32) / 255.0).to(dev)
  ids = torch.from_numpy(keep.astype(np.int64)).to(dev)
  with torch.no_grad(), autocast(torch, dev, dtype):
    loss = tmodel(x[:, 0], x[:, 1], ids)
  return float(loss.float())


def losses(
  model: SiamMAE, params, tmodel, frames: np.ndarray, dtype: str = "float32", seed: int = 0
) -> tuple[float, float]:
  """(our loss, the reference's loss) with compute `dtype` on both sides; float32 runs `exact`."""
  import torch

  m = model.clone(dtype=jnp_dtype(dtype))
  with exact(torch) if dtype == "float32" else contextlib.nullcontext():
    jl, keep = jax_loss_and_keep(m, params, frames, seed)
    return jl, torch_loss(tmodel, frames, keep, dtype)


def compare(jax_loss: float, torch_loss_: float, dtype: str, rtol: float | None = None) -> dict:
  c = loss_check(jax_loss, torch_loss_, dtype, RTOL[dtype] if rtol is None else rtol)
  return {
    "jax_loss": c["jax"],
    "torch_loss": c["torch"],
    "rel_diff": c["rel"],
    "dtype": dtype,
    "rtol": c["rtol"],
    "ok": c["ok"],
  }


def check_loss(config, batch=2, dtype: str = "float32", seed: int = 0, rtol: float | None = None) -> dict:
  """Both sides' loss on the same weights, uint8 pairs and mask.

  Args:
    config: an `experiments.siammae` config or preset name ("paper", "demo", "smoke").
    batch: number of pairs (random uint8 frames) or uint8 pairs [B, 2, H, W, 3].
    dtype: "float32" or "bfloat16" (compute dtype of both sides; parameters float32).
    seed: parameter init, frames and mask stream.
    rtol: tolerance of the relative difference (default 1e-4 float32, 2e-2 bf16).

  Returns:
    {"jax_loss", "torch_loss", "rel_diff", "dtype", "rtol", "ok"}.
  """
  if isinstance(config, str):
    from experiments import siammae as exp

    config = getattr(exp, config)()
  model = build_model(config)
  frames = random_pairs(batch, model.img_size, seed) if isinstance(batch, int) else np.asarray(batch)
  if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[1] != 2:
    raise ValueError(f"check_loss: frames must be uint8 [B, 2, H, W, 3], got {frames.dtype} {frames.shape}")
  params = random_params(model, seed)
  tmodel = load_into(torch_model(model), params)
  return compare(*losses(model, params, tmodel, frames, dtype, seed), dtype, rtol)


def check_losses_agree(config, dtype: str = "float32", batch: int = 2, seed: int = 0) -> tuple[float, float]:
  """`(jax_loss, torch_loss)` for `bench.common.check_losses` (the harness's check column)."""
  r = check_loss(config, batch, dtype, seed)
  return r["jax_loss"], r["torch_loss"]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--preset", default="paper", choices=["paper", "demo", "smoke"])
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--dtype", default="float32", choices=sorted(RTOL))
  p.add_argument("--decoder", default="", help="cross_self / cross / joint (default: the preset's)")
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  from experiments import siammae as exp

  config = getattr(exp, a.preset)()
  if a.decoder:
    config.model.decoder = a.decoder
  r = check_loss(config, a.batch, a.dtype, a.seed)
  print(json.dumps({"preset": a.preset, "decoder": config.model.decoder, "batch": a.batch, **r}))
  return 0 if r["ok"] else 1


if __name__ == "__main__":
  raise SystemExit(main())
