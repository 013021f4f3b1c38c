"""The SiamMAE ViT-S/16 training step in plain PyTorch, written from the spec (bench only).

Same step as `bench/siammae_step.py --preset paper`: shared ViT-S/16 encoder ([CLS], fixed sin-cos
positions, pre-norm, erf GELU, LayerNorm eps 1e-6) on f1 (all 196 patches) and f2 (9 kept, a
random mask per sample), cross-self decoder 512 wide x 8 x 16 heads, per-patch normalised L2 on
the hidden patches, AdamW (0.9, 0.95, wd 0.05 on matrices), bf16 autocast. Runs eager and
`torch.compile` and prints one JSON line each (pairs/s). Not a dependency of the library:
`pip install -r bench/requirements.txt`.

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


def sincos_2d(dim: int, g: int) -> torch.Tensor:
  def one(d, pos):
    omega = 1.0 / 10000 ** (np.arange(d // 2) / (d / 2.0))
    out = np.outer(pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], 1)
  gw, gh = np.meshgrid(np.arange(g), np.arange(g))
  emb = np.concatenate([one(dim // 2, gw), one(dim // 2, gh)], 1)
  return torch.tensor(np.concatenate([np.zeros((1, dim)), emb]), dtype=torch.float32)[None]


class Attn(nn.Module):
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
    o = F.scaled_dot_product_attention(q, k, v)
    return self.proj(o.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
  def __init__(self, d, heads, cross=False):
    super().__init__()
    ln = lambda: nn.LayerNorm(d, eps=1e-6)  # noqa: E731
    self.cross = cross
    if cross:
      self.norm_cross, self.norm_ctx, self.cross_attn = ln(), ln(), Attn(d, heads, True)
    self.norm1, self.attn, self.norm2 = ln(), Attn(d, heads), ln()
    self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

  def forward(self, x, ctx=None):
    if self.cross:
      x = x + self.cross_attn(self.norm_cross(x), self.norm_ctx(ctx))
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class SiamMAE(nn.Module):
  def __init__(self, img=224, p=16, d=384, depth=12, heads=6, dd=512, ddepth=8, dheads=16,
               ratio=0.95):
    super().__init__()
    self.p, self.g, self.ratio = p, img // p, ratio
    self.patch = nn.Conv2d(3, d, p, p)
    self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
    self.register_buffer("pos", sincos_2d(d, self.g))
    self.register_buffer("dpos", sincos_2d(dd, self.g))
    self.blocks = nn.ModuleList([Block(d, heads) for _ in range(depth)])
    self.norm = nn.LayerNorm(d, eps=1e-6)
    self.dembed = nn.Linear(d, dd)
    self.mask_token = nn.Parameter(torch.randn(1, 1, dd) * 0.02)
    self.dblocks = nn.ModuleList([Block(dd, dheads, cross=True) for _ in range(ddepth)])
    self.dnorm = nn.LayerNorm(dd, eps=1e-6)
    self.pred = nn.Linear(dd, p * p * 3)

  def encode(self, x, ids_keep=None):
    t = self.patch(x).flatten(2).transpose(1, 2) + self.pos[:, 1:]
    if ids_keep is not None:
      t = torch.gather(t, 1, ids_keep[..., None].expand(-1, -1, t.shape[-1]))
    t = torch.cat([(self.cls + self.pos[:, :1]).expand(t.shape[0], -1, -1), t], 1)
    for blk in self.blocks:
      t = blk(t)
    return self.norm(t)

  def patchify(self, x):
    b, c, _, _ = x.shape
    x = x.reshape(b, c, self.g, self.p, self.g, self.p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, self.g * self.g, -1)

  def forward(self, f1, f2):
    b, length = f1.shape[0], self.g * self.g
    keep = int(length * (1 - self.ratio))
    ids_shuffle = torch.argsort(torch.rand(b, length, device=f1.device), 1)
    ids_restore = torch.argsort(ids_shuffle, 1)
    mask = torch.ones(b, length, device=f1.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    past = self.dembed(self.encode(f1)) + self.dpos
    y = self.dembed(self.encode(f2, ids_shuffle[:, :keep]))
    fill = self.mask_token.expand(b, length - keep, -1)
    y_ = torch.gather(torch.cat([y[:, 1:], fill], 1), 1,
                      ids_restore[..., None].expand(-1, -1, y.shape[-1]))
    y = torch.cat([y[:, :1], y_], 1) + self.dpos
    for blk in self.dblocks:
      y = blk(y, past)
    pred = self.pred(self.dnorm(y))[:, 1:].float()
    t = self.patchify(f2)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
    loss = ((pred - t) ** 2).mean(-1)
    return (loss * mask).sum() / mask.sum()


def run(compiled: bool, batch: int, steps: int, device: str) -> dict:
  torch.manual_seed(0)
  model = SiamMAE().to(device)
  decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "token" not in n
           and n != "cls"]
  no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "token" not in n
                                                              and n != "cls")]
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                           {"params": no_decay, "weight_decay": 0.0}], lr=1.5e-4 * batch / 256,
                          betas=(0.9, 0.95), fused=device == "cuda")
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
  return {"impl": "torch.compile" if compiled else "torch eager", "device": device,
          "batch_pairs": batch, "step_ms": round(dt * 1e3, 2), "pairs_per_s": round(batch / dt, 1),
          "warmup_s": round(warm, 1), "loss": float(loss.detach()), "torch": torch.__version__,
          "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--eager_only", action="store_true")
  a = p.parse_args()
  device = "cuda" if torch.cuda.is_available() else "cpu"
  for compiled in ([False] if a.eager_only else [False, True]):
    try:
      print(json.dumps(run(compiled, a.batch, a.steps, device)), flush=True)
    except Exception as e:  # noqa: BLE001 - report and go on (e.g. no compiler on this host)
      print(json.dumps({"impl": "torch.compile" if compiled else "torch eager",
                        "error": str(e).splitlines()[0] if str(e) else type(e).__name__}))


if __name__ == "__main__":
  main()
