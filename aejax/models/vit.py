"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021).

The MAE / timm flavour used by SiamMAE (Gupta et al., NeurIPS 2023) and DINO (Caron et al., ICCV
2021): a linear patch embedding (a conv with kernel = stride = patch), a [CLS] token, pre-norm
blocks with exact (erf) GELU, LayerNorm eps 1e-6 and a final norm. Position embeddings are the
fixed 2D sin-cos table of MAE (`pos_embed="sincos"`, computed for any grid, so any input size
works) or a learned table (`"learned"`, timm/DINO weights) that is bicubically resized when the
grid differs from `img_size` (as DINO's `interpolate_pos_encoding`; `jax.image.resize` uses the
Keys a = -0.5 kernel where PyTorch uses -0.75, a small difference at the edges). The sin-cos
positions of a grid other than `img_size`'s are likewise interpolated onto the training grid
(`interpolate_pos`, default on; off gives MAE's integer positions on any grid).

Inputs are NHWC images in [0, 1]; with `normalize` the ImageNet mean / std are applied inside.

Fused attention: the token count is 1 + N ([CLS] makes it odd: 197 at 224/16, 10 for a 95 %-masked
SiamMAE frame). The sequence is zero-padded to a multiple of `token_multiple` (default 8) and the
padded keys are masked with `key_value_seq_lengths`, which both the XLA and the cuDNN paths of
`jax.nn.dot_product_attention` support, so no shape blocks the fused kernel; the padded rows are
dropped after the last block. All shapes are static.

`load_torch_state_dict(params, state_dict)` maps timm names (`blocks.3.attn.qkv.weight`, ...)
onto ours; `load_pretrained(params, path)` reads a `.pth`, `.safetensors` or `.npz` file into them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util

from aejax.models.layers import Block, layer_norm, sincos_2d
from aejax.models.torch_weights import load_state_dict

__all__ = ["VARIANTS", "ViT", "load_pretrained", "load_torch_state_dict", "vit_variant"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VARIANTS = {
  "Ti/16": dict(patch_size=16, width=192, depth=12, num_heads=3),
  "S/16": dict(patch_size=16, width=384, depth=12, num_heads=6),
  "S/8": dict(patch_size=8, width=384, depth=12, num_heads=6),
  "B/16": dict(patch_size=16, width=768, depth=12, num_heads=12),
  "L/16": dict(patch_size=16, width=1024, depth=24, num_heads=16),
  "mini/8": dict(patch_size=8, width=128, depth=4, num_heads=4),  # the SiamMAE CPU demo's encoder
}


def vit_variant(name: str) -> dict:
  """The `ViT` fields of a named variant (a key of `VARIANTS`: "S/16", "B/16", "mini/8", ...)."""
  if name not in VARIANTS:
    raise ValueError(f"unknown ViT variant {name!r}; choose from {sorted(VARIANTS)}")
  return dict(VARIANTS[name])


class ViT(nn.Module):
  """ViT encoder; `__call__` returns (tokens after the final norm [B, 1 + n, D], aux).

  Attributes:
    patch_size, width, depth, num_heads, mlp_ratio: the architecture (see `VARIANTS`).
    pos_embed: "sincos" (fixed, MAE) or "learned" (timm / DINO).
    img_size: the (H, W) the model is trained at: the learned table's size; other input sizes
      get a resized table (learned) or interpolated positions (sin-cos, `interpolate_pos`).
    interpolate_pos: map the sin-cos positions of another grid onto the `img_size` grid (as DINO
      resizes a learned table), so a model trained at 224 sees in-range positions at 480x880.
    normalize: apply ImageNet mean / std to [0, 1] inputs.
    token_multiple: pad the sequence to a multiple of this (1: no padding).
    attention: `implementation` of `jax.nn.dot_product_attention` (None, "xla", "cudnn").
  """

  patch_size: int = 16
  width: int = 384
  depth: int = 12
  num_heads: int = 6
  mlp_ratio: float = 4.0
  pos_embed: str = "sincos"
  img_size: tuple[int, int] = (224, 224)
  interpolate_pos: bool = True
  normalize: bool = True
  token_multiple: int = 8
  attention: str | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @classmethod
  def from_name(cls, name: str, **kwargs) -> ViT:
    """`ViT.from_name("S/16", dtype=jnp.bfloat16)`."""
    return cls(**{**vit_variant(name), **kwargs})

  def grid(self, hw: tuple[int, int]) -> tuple[int, int]:
    """The patch grid (h, w) of an (H, W) input; raises unless H and W are multiples of the patch."""
    p = self.patch_size
    if hw[0] % p or hw[1] % p:
      raise ValueError(f"input {hw[0]}x{hw[1]} is not a multiple of the patch size {p}")
    return hw[0] // p, hw[1] // p

  def _pos(self, grid: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """(position embedding of [CLS] [1, D], of the patches [h*w, D])."""
    d = self.width
    if self.pos_embed == "sincos":
      base = self.grid(tuple(self.img_size)) if self.interpolate_pos else None
      return jnp.zeros((1, d)), jnp.asarray(sincos_2d(d, grid, base_grid=base))
    if self.pos_embed != "learned":
      raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {self.pos_embed!r}")
    g0 = self.grid(tuple(self.img_size))
    table = self.param(
      "pos_embed", nn.initializers.normal(0.02), (1, 1 + g0[0] * g0[1], d), self.param_dtype
    )[0]
    patches = table[1:]
    if tuple(grid) != g0:
      patches = jax.image.resize(patches.reshape(*g0, d), (*grid, d), "cubic").reshape(-1, d)
    return table[:1], patches

  @nn.compact
  def encode_tokens(self, x: jax.Array, ids_keep: jax.Array | None = None) -> jax.Array:
    """Images [B, H, W, 3] in [0, 1] -> tokens after the final norm [B, 1 + n, D].

    `ids_keep` [B, n] (int) selects which patches (raster order) enter the encoder, MAE style;
    None keeps all h*w of them.
    """
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"ViT expects [B, H, W, 3] images, got shape {x.shape}")
    grid = self.grid(x.shape[1:3])
    if self.normalize:
      x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    x = nn.Conv(
      self.width,
      (self.patch_size,) * 2,
      strides=(self.patch_size,) * 2,
      padding="VALID",
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=_patch_init,
      name="patch_embed",
    )(x.astype(self.dtype))
    b = x.shape[0]
    cls_pos, pos = self._pos(grid)
    x = x.reshape(b, -1, self.width) + pos.astype(self.dtype)  # [B, h*w, D]
    if ids_keep is not None:
      x = jnp.take_along_axis(x, ids_keep[..., None].astype(jnp.int32), axis=1)  # [B, n, D]
    cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, self.width), self.param_dtype)
    cls = jnp.broadcast_to((cls[0] + cls_pos).astype(self.dtype), (b, 1, self.width))
    x = jnp.concatenate([cls, x], axis=1)  # [B, 1 + n, D]
    n_tok = x.shape[1]
    pad = (-n_tok) % max(self.token_multiple, 1)
    lengths = None
    if pad:  # keep the fused attention kernels on aligned shapes; padded keys are masked
      x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)))
      lengths = jnp.full((b,), n_tok, jnp.int32)
    for i in range(self.depth):
      x = Block(
        self.num_heads,
        self.mlp_ratio,
        implementation=self.attention,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=f"blocks_{i}",
      )(x, lengths=lengths)
    x = x[:, :n_tok]
    return layer_norm("norm", self.dtype, self.param_dtype)(x)

  def __call__(self, x: jax.Array, *, train: bool = False, ids_keep: jax.Array | None = None):
    """Returns (tokens [B, 1 + n, D] after the final norm, {"grid": (h, w) array})."""
    del train  # no dropout / BatchNorm
    tokens = self.encode_tokens(x, ids_keep)
    return tokens, {"grid": jnp.asarray(self.grid(x.shape[1:3]))}

  def features(self, x: jax.Array) -> jax.Array:
    """The last block after the final norm, [CLS] dropped, as a grid [B, h, w, D]."""
    h, w = self.grid(x.shape[1:3])
    tokens = self.encode_tokens(x)
    return tokens[:, 1:].reshape(x.shape[0], h, w, self.width)


def _patch_init(key, shape, dtype=jnp.float32):
  """MAE: the patch projection initialised as a Linear layer (xavier-uniform on the flat view)."""
  fan_in, fan_out = int(np.prod(shape[:-1])), shape[-1]
  bound = float(np.sqrt(6.0 / (fan_in + fan_out)))
  return jax.random.uniform(key, shape, dtype, -bound, bound)


# ------------------------------------------------------------------------------ weight import

_SKIP_PREFIXES = ("head.", "fc_norm.", "decoder", "mask_token", "pre_logits.", "head_dist.")


def _unwrap(state_dict: Mapping) -> dict[str, np.ndarray]:
  """Picks the weights out of common checkpoint wrappers and strips DDP / DINO prefixes."""
  sd = state_dict
  for key in ("model", "state_dict", "teacher"):
    if key in sd and isinstance(sd[key], Mapping):
      sd = sd[key]
      break
  out = {}
  for k, v in sd.items():
    for prefix in ("module.", "backbone."):
      if k.startswith(prefix):
        k = k[len(prefix) :]
    arr = v.detach().cpu().float().numpy() if hasattr(v, "detach") else np.asarray(v)
    out[k] = arr
  return out


def _timm_to_ours(name: str, arr: np.ndarray) -> tuple[tuple[str, ...], np.ndarray] | None:
  """One timm tensor -> (our parameter path, array in our layout), None for ignored names."""
  if name.startswith(_SKIP_PREFIXES):
    return None
  parts = name.split(".")
  if name == "cls_token":
    return ("cls_token",), arr.reshape(1, 1, -1)
  if name == "pos_embed":
    return ("pos_embed",), arr
  if parts[0] == "patch_embed":
    if parts[-1] == "weight":
      return ("patch_embed", "kernel"), arr.transpose(2, 3, 1, 0)  # [D, C, p, p] -> [p, p, C, D]
    return ("patch_embed", "bias"), arr
  leaf = {"weight": "kernel", "bias": "bias"}[parts[-1]]
  if parts[0] == "norm":
    return ("norm", "scale" if leaf == "kernel" else "bias"), arr
  if parts[0] == "blocks":
    block = f"blocks_{parts[1]}"
    mod = parts[2:-1]  # ["norm1"] | ["attn", "qkv"] | ["mlp", "fc1"] ...
    if mod[0].startswith("norm"):
      return (block, mod[0], "scale" if leaf == "kernel" else "bias"), arr
    return (block, *mod, leaf), arr.T if leaf == "kernel" else arr
  raise ValueError(f"unexpected ViT weight {name!r}")


def load_torch_state_dict(params: Mapping, state_dict: Mapping) -> dict:
  """Copies a timm / DINO / MAE ViT state dict into our ViT `params` (returns a new tree).

  Classifier heads, `fc_norm`, MAE decoder weights and `mask_token` are ignored. A learned
  `pos_embed` of another grid is resized bicubically to ours; for a sin-cos model the table is
  fixed and the checkpoint's is ignored. Raises ValueError on a missing weight or a shape
  mismatch.
  """
  flat = traverse_util.flatten_dict(params)
  new = dict(flat)
  seen = set()
  for name, arr in _unwrap(state_dict).items():
    mapped = _timm_to_ours(name, arr)
    if mapped is None:
      continue
    path, value = mapped
    if path == ("pos_embed",):
      if path not in flat:
        continue  # sin-cos model: fixed table
      value = _resize_pos(value, flat[path].shape)
    if path not in flat:
      raise ValueError(f"checkpoint weight {name!r} has no place in this ViT ({'/'.join(path)})")
    if tuple(value.shape) != tuple(flat[path].shape):
      raise ValueError(
        f"checkpoint weight {name!r}: shape {value.shape} != ours "
        f"{tuple(flat[path].shape)} at {'/'.join(path)}"
      )
    new[path] = jnp.asarray(value, flat[path].dtype)
    seen.add(path)
  missing = sorted("/".join(p) for p in flat if p not in seen)
  if missing:
    raise ValueError(f"checkpoint lacks {len(missing)} ViT weights, e.g. {missing[:3]}")
  return traverse_util.unflatten_dict(new)


def _resize_pos(table: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """Resizes a learned [1, 1 + g*g, D] table to `shape` (square grids), [CLS] kept."""
  if tuple(table.shape) == tuple(shape):
    return table
  d = table.shape[-1]
  g_in, g_out = int(round(np.sqrt(table.shape[1] - 1))), int(round(np.sqrt(shape[1] - 1)))
  if g_in * g_in != table.shape[1] - 1 or g_out * g_out != shape[1] - 1:
    raise ValueError(f"pos_embed {table.shape} cannot be resized to {shape}")
  grid = jax.image.resize(table[0, 1:].reshape(g_in, g_in, d), (g_out, g_out, d), "cubic")
  return np.concatenate([table[:, :1], np.asarray(grid).reshape(1, -1, d)], axis=1)


def load_pretrained(params: Mapping, path: str | Path) -> dict:
  """`load_torch_state_dict(params, state_dict)` of a `.pth`, `.safetensors` or `.npz` file.

  The file is read by `aejax.models.torch_weights.load_state_dict` (no torch needed).
  """
  return load_torch_state_dict(params, load_state_dict(path))
