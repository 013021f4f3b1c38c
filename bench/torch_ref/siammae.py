"""SiamMAE (Gupta, Wu, Deng, Fei-Fei; NeurIPS 2023, arXiv 2305.14344) in plain PyTorch (bench only).

Written from the spec (shared/specs/seeds_vqae_siammae.md §B) to compute exactly what
`aejax.models.siammae.SiamMAE` computes, so the two losses can be compared on the same weights and
inputs (`bench/siammae_check.py`) before any timing. Shared ViT encoder ([CLS], fixed sin-cos
positions, ImageNet mean / std applied to [0, 1] inputs, pre-norm, erf GELU, LayerNorm eps 1e-6,
final norm) on f1 (all patches) and f2 (the kept patches of a per-sample mask); decoder: embed
both, [MASK] at f2's hidden positions, decoder sin-cos positions (on f1's tokens too with
`past_pos_embed`), then "cross_self" (default), "cross" or "joint" blocks; per-patch normalised
L2 on the hidden patches (of the ImageNet-normalised frame, as MAE's data pipeline normalises).
Parameter names mirror the Flax tree (`blocks.3.attn.qkv.weight` for `vit/blocks_3/attn/qkv`).

The timed step (`run`, as `bench/siammae_step.py --preset paper`): ViT-S/16, decoder 512 x 8 x 16,
95 % masking, AdamW (0.9, 0.95, wd 0.05 on matrices), bf16 autocast on CUDA; eager and
`torch.compile`, one JSON line each (pairs/s). `pip install -r bench/requirements.txt`.

  python bench/torch_ref/siammae.py --batch 256 --steps 20
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DECODERS = ("cross_self", "cross", "joint")


def sincos_2d(dim: int, g: int) -> torch.Tensor:
  """MAE's 2D sin-cos table [1, 1 + g*g, dim] (a zero row for [CLS]; columns first, then rows)."""

  def one(d, pos):
    omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
    out = np.outer(pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], 1)

  gw, gh = np.meshgrid(np.arange(g), np.arange(g))  # gw[i, j] = j (column), gh[i, j] = i (row)
  emb = np.concatenate([one(dim // 2, gw), one(dim // 2, gh)], 1)
  return torch.tensor(np.concatenate([np.zeros((1, dim)), emb]), dtype=torch.float32)[None]


class Attn(nn.Module):
  """timm attention: fused `qkv` for self-attention, `q` + `kv` for cross-attention."""

  def __init__(self, d, heads, cross=False):
    super().__init__()
    self.h, self.cross = heads, cross
    if cross:
      self.q, self.kv = nn.Linear(d, d), nn.Linear(d, 2 * d)
    else:
      self.qkv = nn.Linear(d, 3 * d)
    self.proj = nn.Linear(d, d)

  def forward(self, x, ctx=None):
    b, n, d = x.shape
    if self.cross:
      q = self.q(x).view(b, n, self.h, -1).transpose(1, 2)
      k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.h, -1).permute(2, 0, 3, 1, 4)
    else:
      q, k, v = self.qkv(x).view(b, n, 3, self.h, -1).permute(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(q, k, v)  # [B, H, N, hd], scale 1/sqrt(hd)
    return self.proj(o.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
  def __init__(self, d, hidden):
    super().__init__()
    self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

  def forward(self, x):
    return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class Block(nn.Module):
  """Pre-norm block; `cross`: x + CrossAttn(LN(x), LN(ctx)) first; `self_attn=False`: no SelfAttn."""

  def __init__(self, d, heads, mlp_ratio=4.0, cross=False, self_attn=True):
    super().__init__()
    ln = lambda: nn.LayerNorm(d, eps=1e-6)  # noqa: E731
    self.cross, self.self_attn = cross, self_attn
    if cross:
      self.norm_cross, self.norm_ctx, self.cross_attn = ln(), ln(), Attn(d, heads, True)
    if self_attn:
      self.norm1, self.attn = ln(), Attn(d, heads)
    self.norm2, self.mlp = ln(), Mlp(d, int(d * mlp_ratio))

  def forward(self, x, ctx=None):
    if self.cross:
      x = x + self.cross_attn(self.norm_cross(x), self.norm_ctx(ctx))
    if self.self_attn:
      x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class SiamMAE(nn.Module):
  """`forward(f1, f2, ids_keep=None)`: frames [B, 3, H, W] in [0, 1] -> the masked loss (float32).

  `ids_keep` [B, n] (int64, raster order) are f2's visible patches; None draws a random
  per-sample mask keeping int(L * (1 - ratio)) patches (MAE's `random_masking`).
  """

  def __init__(
    self,
    img=224,
    p=16,
    d=384,
    depth=12,
    heads=6,
    dd=512,
    ddepth=8,
    dheads=16,
    ratio=0.95,
    decoder="cross_self",
    mlp_ratio=4.0,
    norm_pix_loss=True,
    past_pos_embed=True,
  ):
    super().__init__()
    if decoder not in DECODERS:
      raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if img % p:
      raise ValueError(f"image size {img} is not a multiple of the patch size {p}")
    self.p, self.g, self.ratio, self.decoder = p, img // p, ratio, decoder
    self.norm_pix_loss, self.past_pos_embed = norm_pix_loss, past_pos_embed
    self.patch_embed = nn.Conv2d(3, d, p, p)
    self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
    self.register_buffer("pos", sincos_2d(d, self.g), persistent=False)
    self.register_buffer("dpos", sincos_2d(dd, self.g), persistent=False)
    self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
    self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
    self.blocks = nn.ModuleList([Block(d, heads, mlp_ratio) for _ in range(depth)])
    self.norm = nn.LayerNorm(d, eps=1e-6)
    self.decoder_embed = nn.Linear(d, dd)
    self.mask_token = nn.Parameter(torch.randn(1, 1, dd) * 0.02)
    cross = decoder != "joint"
    self.decoder_blocks = nn.ModuleList(
      [Block(dd, dheads, mlp_ratio, cross=cross, self_attn=decoder != "cross") for _ in range(ddepth)]
    )
    self.decoder_norm = nn.LayerNorm(dd, eps=1e-6)
    self.decoder_pred = nn.Linear(dd, p * p * 3)

  def encode(self, x, ids_keep=None):
    """Normalised images [B, 3, H, W] -> tokens after the final norm [B, 1 + n, D]."""
    t = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos[:, 1:]  # [B, L, D]
    if ids_keep is not None:
      t = torch.gather(t, 1, ids_keep[..., None].expand(-1, -1, t.shape[-1]))  # [B, n, D]
    t = torch.cat([(self.cls_token + self.pos[:, :1]).expand(t.shape[0], -1, -1).to(t.dtype), t], 1)
    for blk in self.blocks:
      t = blk(t)
    return self.norm(t)

  def patchify(self, x):
    """[B, C, H, W] -> [B, L, p*p*C], each patch flattened as (row, column, channel) like MAE."""
    b, c, _, _ = x.shape
    x = x.reshape(b, c, self.g, self.p, self.g, self.p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, self.g * self.g, -1)

  def random_keep(self, b, device):
    length = self.g * self.g
    keep = int(length * (1 - self.ratio))
    return torch.argsort(torch.rand(b, length, device=device), 1)[:, :keep]

  def forward(self, f1, f2, ids_keep=None):
    b, length = f1.shape[0], self.g * self.g
    if ids_keep is None:
      ids_keep = self.random_keep(b, f1.device)
    f1, f2 = (f1 - self.mean) / self.std, (f2 - self.mean) / self.std
    mask = torch.ones(b, length, device=f1.device).scatter(1, ids_keep, 0.0)  # 1 = hidden
    ctx = self.decoder_embed(self.encode(f1))  # [B, 1 + L, Dd]
    if self.past_pos_embed:
      ctx = ctx + self.dpos
    y = self.decoder_embed(self.encode(f2, ids_keep))  # [B, 1 + n, Dd]
    dd = y.shape[-1]
    full = self.mask_token.to(y.dtype).expand(b, length, dd)
    full = full.scatter(1, ids_keep[..., None].expand(-1, -1, dd), y[:, 1:])  # [B, L, Dd]
    y = torch.cat([y[:, :1], full], 1) + self.dpos  # [B, 1 + L, Dd]
    if self.decoder == "joint":
      z = torch.cat([ctx, y], 1)
      for blk in self.decoder_blocks:
        z = blk(z)
      y = z[:, ctx.shape[1] :]
    else:
      for blk in self.decoder_blocks:
        y = blk(y, ctx)
    pred = self.decoder_pred(self.decoder_norm(y))[:, 1:].float()  # [B, L, p*p*3]
    t = self.patchify(f2.float())
    if self.norm_pix_loss:
      t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
    loss = ((pred - t) ** 2).mean(-1)  # [B, L]
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def run(compiled: bool, batch: int, steps: int, device: str) -> dict:
  torch.manual_seed(0)
  model = SiamMAE().to(device)
  decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "token" not in n]
  no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "token" not in n)]
  opt = torch.optim.AdamW(
    [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
    lr=1.5e-4 * batch / 256,
    betas=(0.9, 0.95),
    fused=device == "cuda",
  )
  frames = torch.rand(batch, 2, 3, 224, 224, device=device)

  def step():
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):  # CPU: fp32
      loss = model(frames[:, 0], frames[:, 1])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  fn = torch.compile(step) if compiled else step
  t0 = time.perf_counter()
  for _ in range(3):
    loss = fn()
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  sync()
  warm = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(steps):
    loss = fn()
  sync()
  dt = (time.perf_counter() - t0) / steps
  return {
    "impl": "torch.compile" if compiled else "torch eager",
    "device": device,
    "batch_pairs": batch,
    "step_ms": round(dt * 1e3, 2),
    "pairs_per_s": round(batch / dt, 1),
    "warmup_s": round(warm, 1),
    "loss": float(loss.detach()),
    "torch": torch.__version__,
    "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
  }


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--eager_only", action="store_true")
  a = p.parse_args()
  device = "cuda" if torch.cuda.is_available() else "cpu"
  for compiled in [False] if a.eager_only else [False, True]:
    try:
      print(json.dumps(run(compiled, a.batch, a.steps, device)), flush=True)
    except Exception as e:  # noqa: BLE001 - report and go on (e.g. no compiler on this host)
      print(
        json.dumps(
          {
            "impl": "torch.compile" if compiled else "torch eager",
            "error": str(e).splitlines()[0] if str(e) else type(e).__name__,
          }
        )
      )


if __name__ == "__main__":
  main()
