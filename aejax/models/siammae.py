"""SiamMAE: Siamese Masked Autoencoders (Gupta, Wu, Deng, Fei-Fei; NeurIPS 2023, arXiv 2305.14344).

Two frames of one video, the past f1 and the future f2, pass through one ViT encoder (shared
weights, no joint attention): f1 whole, f2 with 95 % of its patches hidden by a per-sample random
mask (the `mask` stream). The decoder embeds both token sets to the decoder width, fills f2's
hidden positions with a [MASK] token, adds fixed sin-cos position embeddings and predicts f2's
pixels. Decoder variants (the paper's ablation):

- "cross_self" (default): every block is x + CrossAttn(LN(x), LN(f1)), x + SelfAttn(LN(x)),
  x + MLP(LN(x)), with the f2 tokens as queries and the f1 tokens as keys / values;
- "cross": the same without the self-attention;
- "joint": self-attention blocks over the concatenation [f1; f2] (memory heavy).

The loss is MAE's: per-patch normalised pixel targets ((x - mean) / sqrt(var + 1e-6) over each
patch of the ImageNet-normalised frame), L2 averaged over a patch's pixels, then over the hidden
patches only. The decoder follows MAE's defaults (512 wide, 8 blocks, 16 heads, MLP ratio 4).

Fixes over the public replication (aweers/replicate_siamMAE, spec §C.3): LayerNorm over features
(not tokens), attention scaled by sqrt(head width), an un-patchify that inverts patchify, every
decoder block attends to f1, one mask per sample, [CLS] and the final / decoder norms present,
[MASK] ~ N(0, 0.02), weight decay off biases / norms / tokens (in the optimiser).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from aejax.masking import num_kept, random_masking
from aejax.models.layers import Block, layer_norm, sincos_2d, xavier_dense
from aejax.models.vit import IMAGENET_MEAN, IMAGENET_STD, ViT, vit_variant

__all__ = ["SiamMAE", "masked_patch_loss", "patchify", "unpatchify"]

DECODERS = ("cross_self", "cross", "joint")


def patchify(x: jax.Array, p: int) -> jax.Array:
  """[B, H, W, C] -> [B, h*w, p*p*C], each patch flattened as (row, column, channel) like MAE."""
  b, hh, ww, c = x.shape
  x = x.reshape(b, hh // p, p, ww // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (hh // p) * (ww // p), p * p * c)


def unpatchify(x: jax.Array, p: int, grid: tuple[int, int]) -> jax.Array:
  """The inverse of `patchify`: [B, h*w, p*p*C] -> [B, h*p, w*p, C]."""
  b, _, d = x.shape
  h, w = grid
  c = d // (p * p)
  x = x.reshape(b, h, w, p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * p, w * p, c)


def masked_patch_loss(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """MAE's loss: mean squared error per patch, averaged over the hidden patches (float32)."""
  err = jnp.mean((pred.astype(jnp.float32) - target.astype(jnp.float32)) ** 2, axis=-1)  # [B, L]
  return jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _pad(x: jax.Array, multiple: int) -> tuple[jax.Array, jax.Array | None]:
  """Zero-pads tokens [B, N, D] to a multiple; returns the true lengths [B] (None: no padding)."""
  pad = (-x.shape[1]) % max(multiple, 1)
  if not pad:
    return x, None
  return jnp.pad(x, ((0, 0), (0, pad), (0, 0))), jnp.full((x.shape[0],), x.shape[1], jnp.int32)


class SiamMAE(nn.Module):
  """Siamese masked autoencoder on frame pairs `[B, 2, H, W, 3]` in [0, 1].

  `__call__` returns (pred [B, L, p*p*3] in the (normalised) target space, aux) with aux =
  {"loss", "mask" [B, L] (1 = hidden), "target" [B, L, p*p*3]}.

  Attributes:
    encoder: ViT variant name ("S/16", "S/8", "mini/8", ...); `encoder_width/depth/heads`
      override it (None: keep the variant's value).
    img_size: the training resolution; other sizes get interpolated sin-cos positions (`ViT`).
    mask_ratio: the fraction of f2's patches hidden.
    decoder: "cross_self", "cross" or "joint".
    decoder_width, decoder_depth, decoder_heads, mlp_ratio: the decoder.
    norm_pix_loss: per-patch normalised targets.
    past_pos_embed: add the decoder position embeddings to f1's tokens too (unspecified in the
      paper; cheap, on by default).
    token_multiple, attention: see `ViT`.
  """

  encoder: str = "S/16"
  img_size: int = 224
  encoder_width: int | None = None
  encoder_depth: int | None = None
  encoder_heads: int | None = None
  mask_ratio: float = 0.95
  decoder: str = "cross_self"
  decoder_width: int = 512
  decoder_depth: int = 8
  decoder_heads: int = 16
  mlp_ratio: float = 4.0
  norm_pix_loss: bool = True
  past_pos_embed: bool = True
  token_multiple: int = 8
  attention: str | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    """Builds the shared ViT encoder and the decoder (validating the configuration)."""
    if self.decoder not in DECODERS:
      raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
    cfg = vit_variant(self.encoder)
    for field, key in (
      ("encoder_width", "width"),
      ("encoder_depth", "depth"),
      ("encoder_heads", "num_heads"),
    ):
      if getattr(self, field):
        cfg[key] = getattr(self, field)
    self.patch_size = cfg["patch_size"]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.vit = ViT(
      **cfg,
      img_size=(self.img_size,) * 2,
      mlp_ratio=self.mlp_ratio,
      token_multiple=self.token_multiple,
      attention=self.attention,
      **kw,
    )
    self.decoder_embed = xavier_dense(self.decoder_width, "decoder_embed", **kw)
    self.mask_token = self.param(
      "mask_token", nn.initializers.normal(0.02), (1, 1, self.decoder_width), self.param_dtype
    )
    self.blocks = [
      Block(
        self.decoder_heads,
        self.mlp_ratio,
        cross=self.decoder != "joint",
        self_attn=self.decoder != "cross",
        implementation=self.attention,
        **kw,
        name=f"decoder_blocks_{i}",
      )
      for i in range(self.decoder_depth)
    ]
    self.decoder_norm = layer_norm("decoder_norm", **kw)
    self.decoder_pred = xavier_dense(self.patch_size**2 * 3, "decoder_pred", **kw)

  def features(self, x: jax.Array) -> jax.Array:
    """Label-propagation features of frames [B, H, W, 3]: the encoder grid [B, h, w, D]."""
    return self.vit.features(x)

  def encode(self, x: jax.Array, ids_keep: jax.Array | None = None) -> jax.Array:
    """Encoder tokens [B, 1 + n, D] after the final norm ([CLS] first)."""
    return self.vit.encode_tokens(x, ids_keep)

  def decode(
    self, past: jax.Array, future: jax.Array, ids_restore: jax.Array, grid: tuple[int, int]
  ) -> jax.Array:
    """Encoder tokens of f1 [B, 1+L, D] and of f2's visible patches [B, 1+n, D] -> [B, L, p²·3]."""
    b, length = ids_restore.shape
    base = self.vit.grid((self.img_size,) * 2)
    pos = jnp.asarray(
      sincos_2d(self.decoder_width, grid, cls_token=True, base_grid=base), self.dtype
    )  # [1+L, Dd]
    y = self.decoder_embed(future)  # [B, 1+n, Dd]
    fill = jnp.broadcast_to(
      self.mask_token.astype(y.dtype), (b, length - (y.shape[1] - 1), self.decoder_width)
    )
    y_ = jnp.concatenate([y[:, 1:], fill], axis=1)  # [B, L, Dd] in shuffled order
    y_ = jnp.take_along_axis(y_, ids_restore[..., None], axis=1)  # original order
    y = jnp.concatenate([y[:, :1], y_], axis=1) + pos  # [B, 1+L, Dd]
    ctx = self.decoder_embed(past)  # [B, 1+L, Dd]
    if self.past_pos_embed:
      ctx = ctx + pos
    n = y.shape[1]
    if self.decoder == "joint":
      z, lengths = _pad(jnp.concatenate([ctx, y], axis=1), self.token_multiple)
      for blk in self.blocks:
        z = blk(z, lengths=lengths)
      y = z[:, ctx.shape[1] : ctx.shape[1] + n]
    else:
      y, lengths = _pad(y, self.token_multiple)
      ctx, ctx_lengths = _pad(ctx, self.token_multiple)
      for blk in self.blocks:
        y = blk(y, ctx, lengths=lengths, ctx_lengths=ctx_lengths)
      y = y[:, :n]
    y = self.decoder_pred(self.decoder_norm(y))
    return y[:, 1:]  # [B, L, p*p*3], [CLS] dropped

  def targets(self, x: jax.Array) -> jax.Array:
    """Per-patch targets [B, L, p²·3] of frames [B, H, W, 3] in [0, 1] (ImageNet-normalised)."""
    x = (x.astype(jnp.float32) - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    t = patchify(x, self.patch_size)
    if self.norm_pix_loss:
      mean = t.mean(axis=-1, keepdims=True)
      var = t.var(axis=-1, keepdims=True)
      t = (t - mean) / jnp.sqrt(var + 1e-6)
    return t

  def __call__(self, frames: jax.Array, *, train: bool = False):
    """Pairs [B, 2, H, W, 3] -> (predicted future patches [B, L, p*p*3], aux `loss`, `mask`, `target`)."""
    del train  # no dropout / BatchNorm; masking is always on (the `mask` stream)
    if frames.ndim != 5 or frames.shape[1] != 2 or frames.shape[-1] != 3:
      raise ValueError(f"SiamMAE expects frame pairs [B, 2, H, W, 3], got shape {frames.shape}")
    b = frames.shape[0]
    past, future = frames[:, 0], frames[:, 1]  # [B, H, W, 3]
    grid = self.vit.grid(frames.shape[2:4])
    length = grid[0] * grid[1]
    num_kept(length, self.mask_ratio)  # validates the ratio
    ids_keep, mask, ids_restore = random_masking(self.make_rng("mask"), b, length, self.mask_ratio)
    pred = self.decode(self.encode(past), self.encode(future, ids_keep), ids_restore, grid)
    target = self.targets(future)
    loss = masked_patch_loss(pred, target, mask)
    return pred, {"loss": loss, "mask": mask, "target": target}

  def reconstruct(self, frames: jax.Array, pred: jax.Array, mask: jax.Array) -> dict:
    """Images for a reconstruction grid, all [B, H, W, 3] in [0, 1].

    The prediction is mapped back with the true patch mean / variance (MAE's visualisation) on
    the hidden patches and pasted over the visible ones.
    """
    p = self.patch_size
    grid = (frames.shape[2] // p, frames.shape[3] // p)
    mean_ = jnp.asarray(IMAGENET_MEAN)
    std_ = jnp.asarray(IMAGENET_STD)
    x = patchify((frames[:, 1].astype(jnp.float32) - mean_) / std_, p)
    out = pred.astype(jnp.float32)
    if self.norm_pix_loss:
      out = out * jnp.sqrt(x.var(-1, keepdims=True) + 1e-6) + x.mean(-1, keepdims=True)
    m = mask[..., None]
    rec = unpatchify(out * m + x * (1 - m), p, grid) * std_ + mean_
    masked = unpatchify(
      patchify(frames[:, 1].astype(jnp.float32), p) * (1 - m) + 0.5 * m, p, grid
    )  # hidden patches grey
    clip = lambda a: jnp.clip(a, 0.0, 1.0)  # noqa: E731
    return {
      "past": frames[:, 0],
      "masked_future": clip(masked),
      "prediction": clip(rec),
      "target": frames[:, 1],
    }
