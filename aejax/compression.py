"""Honest rate accounting for learned video compression, the classic baselines, and R–D plots.

Rate is always what would actually cross the link: `LatentCodec.encode` returns the bytes of one
frame's latent (at its precision, with any side information, optionally zlib-compressed), and
decoder updates are charged by `tree_bytes` at the precision they are sent in. Ratios compare with
the raw 8-bit RGB frame at full size (3 H W bytes), never a cropped one; bits per pixel are
8 bytes / (H W). This fixes the accounting of OVAL (Kaplan et al., APS360 2022), whose "23.3x"
used the decoder's cropped 351x471 output and whose resizing baseline was labelled by the
per-side factor instead of the pixel ratio (`specs/seeds_keyframe_oval_vae.md` §2.11).

Baselines, on uint8 RGB frames [N, H, W, 3]: keeping the k most significant bits of every
channel (bin centres restored), down/up-scaling (INTER_AREA down, INTER_CUBIC up; the rate is the
8-bit small frame), and per-frame JPEG (OpenCV) at a given quality or at the quality whose size is
nearest a byte budget (`jpeg_at_bytes`), which is what a user would pick instead.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import jax
import numpy as np

from aejax.viz import pyplot, save_figure  # noqa: F401  (re-exported until the codec move)

PRECISIONS = ("float32", "float16", "int8", "int4")


def raw_frame_bytes(height: int, width: int) -> int:
  """Bytes of one raw 8-bit RGB frame."""
  return 3 * int(height) * int(width)


def compression_ratio(nbytes, height: int, width: int):
  """Raw 8-bit RGB bytes of the full frame / transmitted bytes."""
  return raw_frame_bytes(height, width) / np.asarray(nbytes, np.float64)


def bits_per_pixel(nbytes, height: int, width: int):
  """8 * transmitted bytes / (H W)."""
  return 8.0 * np.asarray(nbytes, np.float64) / (int(height) * int(width))


def tree_bytes(tree, dtype="float32") -> int:
  """Bytes of every array in `tree` sent at `dtype` (a decoder update)."""
  item = np.dtype(dtype).itemsize
  return int(sum(np.size(a) for a in jax.tree.leaves(tree)) * item)


def cast_tree(tree, dtype="float32"):
  """What the receiver holds after `tree` is sent at `dtype`: values rounded to it, as float32."""
  return jax.tree.map(lambda a: np.asarray(np.asarray(a).astype(dtype), np.float32), tree)


def _pack_nibbles(q: np.ndarray) -> bytes:
  q = q.astype(np.uint8).ravel()
  if q.size % 2:
    q = np.append(q, np.uint8(0))
  return ((q[0::2] << 4) | q[1::2]).astype(np.uint8).tobytes()


def _unpack_nibbles(buf: bytes, n: int) -> np.ndarray:
  b = np.frombuffer(buf, np.uint8)
  return np.stack([b >> 4, b & 15], axis=1).ravel()[:n]


@dataclasses.dataclass(frozen=True)
class LatentCodec:
  """Turns one frame's latent [h, w, C] into the bytes sent, and back.

  Attributes:
    precision: "float32", "float16" (the original), "int8" or "int4".
    channels: keep the first k channels (None: all); each dropped channel is replaced by its
      per-frame mean, sent as float16 (2 bytes).
    step: integer precisions only. None: per-frame, per-channel range quantisation with
      `lo` and `scale` sent as float16 (4 bytes per kept channel); a number: a fixed uniform step,
      values `round(z / step)` clipped to the signed range, no side information.
    entropy: "none", or "zlib" (level 9) over the whole payload, a real lossless coder.
  """

  precision: str = "float16"
  channels: int | None = None
  step: float | None = None
  entropy: str = "none"

  def __post_init__(self):
    if self.precision not in PRECISIONS:
      raise ValueError(f"LatentCodec: precision {self.precision!r} is not one of {PRECISIONS}")
    if self.entropy not in ("none", "zlib"):
      raise ValueError(f"LatentCodec: entropy {self.entropy!r} is not 'none' or 'zlib'")
    if self.step is not None and self.step <= 0:
      raise ValueError(f"LatentCodec: step must be positive, got {self.step}")
    if self.channels is not None and self.channels < 1:
      raise ValueError(f"LatentCodec: channels must be >= 1, got {self.channels}")

  @property
  def name(self) -> str:
    parts = [self.precision]
    if self.channels is not None:
      parts.append(f"c{self.channels}")
    if self.step is not None and self.precision.startswith("int"):
      parts.append(f"step{self.step:g}")
    if self.entropy != "none":
      parts.append(self.entropy)
    return "-".join(parts)

  def _levels(self) -> int:
    return 256 if self.precision == "int8" else 16

  def _kept(self, c: int) -> int:
    return c if self.channels is None else min(self.channels, c)

  def encode(self, z) -> bytes:
    """One frame's latent [h, w, C] → the payload bytes."""
    z = np.asarray(z, np.float32)
    k = self._kept(z.shape[-1])
    keep, drop = z[..., :k], z[..., k:]
    parts = [drop.mean(axis=(0, 1)).astype(np.float16).tobytes()] if drop.shape[-1] else []
    if self.precision in ("float32", "float16"):
      parts.append(keep.astype(self.precision).tobytes())
    else:
      levels = self._levels()
      if self.step is None:
        lo = keep.min(axis=(0, 1)).astype(np.float16)
        hi = keep.max(axis=(0, 1))
        scale = np.maximum((hi - lo.astype(np.float32)) / (levels - 1), 1e-4).astype(np.float16)
        q = np.rint((keep - lo.astype(np.float32)) / scale.astype(np.float32))
        q = np.clip(q, 0, levels - 1)
        parts += [lo.tobytes(), scale.tobytes()]
      else:
        q = np.clip(np.rint(keep / self.step), -(levels // 2), levels // 2 - 1) + levels // 2
      parts.append(q.astype(np.uint8).tobytes() if levels == 256 else _pack_nibbles(q))
    payload = b"".join(parts)
    return zlib.compress(payload, 9) if self.entropy == "zlib" else payload

  def decode(self, payload: bytes, shape: Sequence[int]) -> np.ndarray:
    """Payload → the receiver's latent [h, w, C] float32 (`shape` is known to both ends)."""
    h, w, c = (int(v) for v in shape)
    buf = zlib.decompress(payload) if self.entropy == "zlib" else payload
    k = self._kept(c)
    off = 2 * (c - k)
    fill = np.frombuffer(buf[:off], np.float16).astype(np.float32)
    n = h * w * k
    if self.precision in ("float32", "float16"):
      keep = np.frombuffer(buf[off:], self.precision).astype(np.float32).reshape(h, w, k)
    else:
      levels = self._levels()
      if self.step is None:
        lo = np.frombuffer(buf[off:off + 2 * k], np.float16).astype(np.float32)
        scale = np.frombuffer(buf[off + 2 * k:off + 4 * k], np.float16).astype(np.float32)
        off += 4 * k
      data = buf[off:]
      q = (np.frombuffer(data, np.uint8)[:n] if levels == 256 else _unpack_nibbles(data, n))
      q = q.astype(np.float32).reshape(h, w, k)
      keep = lo + q * scale if self.step is None else (q - levels // 2) * self.step
    out = np.empty((h, w, c), np.float32)
    out[..., :k] = keep
    out[..., k:] = fill
    return out

  def roundtrip(self, z) -> tuple[np.ndarray, np.ndarray]:
    """Latents [N, h, w, C] → (what the receiver decodes [N, h, w, C], bytes per frame [N])."""
    z = np.asarray(z, np.float32)
    out, sizes = np.empty_like(z), np.empty(len(z), np.int64)
    for i, zi in enumerate(z):
      payload = self.encode(zi)
      out[i], sizes[i] = self.decode(payload, zi.shape), len(payload)
    return out, sizes


# --------------------------------------------------------------------------------- baselines


def bit_cut(frames: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
  """Keeps the `bits` most significant bits per channel (restored at bin centres).

  Returns (reconstruction uint8 [N, H, W, 3], bytes per frame [N]) with bytes = ceil(3 H W bits / 8).
  """
  if not 1 <= bits <= 8:
    raise ValueError(f"bit_cut: bits must be in 1..8, got {bits}")
  frames = np.asarray(frames, np.uint8)
  cut = 8 - bits
  rec = (frames >> cut) << cut
  if cut:
    rec = rec + np.uint8(1 << (cut - 1))
  n, h, w, _ = frames.shape
  return rec.astype(np.uint8), np.full(n, math.ceil(3 * h * w * bits / 8), np.int64)


def resize_codec(frames: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
  """Down-scales by `factor` per side (INTER_AREA), sends the 8-bit small frame, up-scales back
  (INTER_CUBIC). The pixel ratio is about factor²; bytes are exactly 3 h' w'."""
  frames = np.asarray(frames, np.uint8)
  n, h, w, _ = frames.shape
  sh, sw = max(1, int(round(h / factor))), max(1, int(round(w / factor)))
  rec = np.stack([cv2.resize(cv2.resize(f, (sw, sh), interpolation=cv2.INTER_AREA), (w, h),
                             interpolation=cv2.INTER_CUBIC) for f in frames])
  return rec, np.full(n, 3 * sh * sw, np.int64)


def _jpeg(frame: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
  ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]),
                         [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
  if not ok:
    raise ValueError("OpenCV could not encode a JPEG")
  return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1], int(buf.size)


def jpeg_codec(frames: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-frame JPEG (OpenCV, 4:2:0) at `quality` (1..100): (reconstruction, bytes per frame)."""
  out = [_jpeg(f, quality) for f in np.asarray(frames, np.uint8)]
  return np.stack([o[0] for o in out]), np.array([o[1] for o in out], np.int64)


def jpeg_at_bytes(frames: np.ndarray, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-frame JPEG at the quality whose size is nearest `target` bytes (a scalar or [N]).

  Returns (reconstruction, bytes per frame, quality per frame).
  """
  frames = np.asarray(frames, np.uint8)
  targets = np.broadcast_to(np.asarray(target, np.float64), (len(frames),))
  recs, sizes, quals = [], [], []
  for f, t in zip(frames, targets):
    lo, hi = 1, 100
    while lo < hi:  # smallest quality whose size reaches the target (size grows with quality)
      mid = (lo + hi) // 2
      if _jpeg(f, mid)[1] >= t:
        hi = mid
      else:
        lo = mid + 1
    cands = [(abs(_jpeg(f, q)[1] - t), q) for q in {max(1, lo - 1), lo}]
    q = min(cands)[1]
    rec, size = _jpeg(f, q)
    recs.append(rec)
    sizes.append(size)
    quals.append(q)
  return np.stack(recs), np.array(sizes, np.int64), np.array(quals, np.int64)


# ----------------------------------------------------------------------------------- quality


def _blur_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
  """'VALID' separable Gaussian filtering of [H, W, C] float32 (OpenCV; fast on CPU)."""
  r = len(g) // 2
  y = cv2.sepFilter2D(x, cv2.CV_32F, g, g, borderType=cv2.BORDER_CONSTANT)
  return y[r:x.shape[0] - r, r:x.shape[1] - r]


def ms_ssim_host(a: np.ndarray, b: np.ndarray, max_val: float = 1.0) -> float:
  """MS-SSIM of two [H, W, C] float images with OpenCV filtering: the same definition as
  `aejax.metrics.ms_ssim` (Wang et al. 2003 weights, 11-tap sigma-1.5 window, 'valid' filtering,
  per-channel means clipped at 0, 2x2 pooling after zero-padding odd sizes, fewer scales with
  renormalised weights for small images), for host-side evaluation of long videos, where XLA's
  depthwise convolutions are slow on CPU. Tested equal to `metrics.ms_ssim`."""
  from aejax import metrics

  g = metrics.gaussian_kernel_1d(metrics.FILTER_SIZE, metrics.FILTER_SIGMA)
  m = metrics.ms_ssim_num_scales(*a.shape[:2])
  w = np.asarray(metrics.MS_SSIM_WEIGHTS[:m], np.float64)
  w = w / w.sum()
  c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
  eps = np.finfo(np.float32).eps ** 2
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  vals = []
  for s in range(m):
    mu0, mu1 = _blur_valid(a, g), _blur_valid(b, g)
    mu00, mu11, mu01 = mu0 * mu0, mu1 * mu1, mu0 * mu1
    s00 = np.maximum(eps, _blur_valid(a * a, g) - mu00)
    s11 = np.maximum(eps, _blur_valid(b * b, g) - mu11)
    s01 = _blur_valid(a * b, g) - mu01
    s01 = np.sign(s01) * np.minimum(np.sqrt(s00 * s11), np.abs(s01))
    cs = (2 * s01 + c2) / (s00 + s11 + c2)
    if s == m - 1:
      cs = cs * (2 * mu01 + c1) / (mu00 + mu11 + c1)
    vals.append(np.maximum(cs.reshape(-1, a.shape[-1]).mean(0), 0.0))  # [C]
    if s < m - 1:
      pad = ((0, a.shape[0] % 2), (0, a.shape[1] % 2), (0, 0))
      a, b = (np.pad(x, pad) for x in (a, b))
      a, b = (x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2, -1).mean((1, 3)) for x in (a, b))
  per_channel = np.prod(np.stack(vals).astype(np.float64) ** w[:, None], axis=0)
  return float(per_channel.mean())


def quality(reference, reconstruction, *, with_ms_ssim: bool = True) -> dict:
  """Per-frame PSNR (dB), MS-SSIM and MAE of RGB frames (uint8, or float in [0, 1]), on the host.

  Returns a dict of [N] float arrays: `psnr`, `ms_ssim` (when asked), `mae` (on the [0, 1] scale).
  """
  def as_float(x):
    x = np.asarray(x)
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)

  ref, rec = as_float(reference), as_float(reconstruction)
  if ref.shape != rec.shape or ref.ndim != 4:
    raise ValueError(f"quality: expected two [N, H, W, C] batches, got {ref.shape} and {rec.shape}")
  d = (ref - rec).reshape(len(ref), -1)
  mse = np.mean(np.square(d, dtype=np.float64), axis=1)
  out = {"psnr": 10.0 * np.log10(1.0 / np.maximum(mse, 1e-20)), "mae": np.abs(d).mean(1, np.float64)}
  if with_ms_ssim:
    out["ms_ssim"] = np.array([ms_ssim_host(a, b) for a, b in zip(ref, rec)])
  return out


def summarize(method: str, setting: str, reference, reconstruction, nbytes,
              with_ms_ssim: bool = True) -> dict:
  """One rate–distortion row: mean bytes per frame, ratio, bpp, PSNR, MS-SSIM, MAE."""
  h, w = np.asarray(reference).shape[1:3]
  q = quality(reference, reconstruction, with_ms_ssim=with_ms_ssim)
  nbytes = np.asarray(nbytes, np.float64)
  row = {"method": method, "setting": setting, "bytes_per_frame": float(nbytes.mean()),
         "ratio": float(compression_ratio(nbytes.mean(), h, w)),
         "bpp": float(bits_per_pixel(nbytes.mean(), h, w)),
         "psnr": float(q["psnr"].mean()), "mae": float(q["mae"].mean())}
  if with_ms_ssim:
    row["ms_ssim"] = float(q["ms_ssim"].mean())
  return row


def baseline_rows(frames: np.ndarray, *, bits=(1, 2, 3, 4, 6), factors=(2, 3, 4, 6, 8),
                  jpeg_qualities=(5, 10, 25, 50, 75, 90), jpeg_targets: Sequence[float] = (),
                  with_ms_ssim: bool = True) -> list[dict]:
  """R–D rows for every baseline on uint8 RGB frames (JPEG also at each byte target)."""
  rows = []
  for b in bits:
    rows.append(summarize("bit_cut", f"{b} bits", frames, *bit_cut(frames, b), with_ms_ssim))
  for f in factors:
    rec, nb = resize_codec(frames, f)
    h, w = frames.shape[1:3]
    pix = h * w / (nb[0] / 3)
    rows.append(summarize("resize", f"1/{f:g} per side ({pix:.1f}x fewer pixels)", frames, rec, nb,
                          with_ms_ssim))
  for q in jpeg_qualities:
    rows.append(summarize("jpeg", f"q{q}", frames, *jpeg_codec(frames, q), with_ms_ssim))
  for t in jpeg_targets:
    rec, nb, qs = jpeg_at_bytes(frames, t)
    rows.append(summarize("jpeg@bytes", f"~{t:.0f} B (q {qs.min()}-{qs.max()})", frames, rec, nb,
                          with_ms_ssim))
  return rows


# ------------------------------------------------------------------------------ tables, plots

COLUMNS = ("method", "setting", "bytes_per_frame", "ratio", "bpp", "psnr", "ms_ssim", "mae")


def write_rows(rows: list[dict], csv_path, md_path=None, title: str = "") -> None:
  """Writes R–D rows as CSV and (optionally) a markdown table."""
  cols = [c for c in COLUMNS if any(c in r for r in rows)]
  cols += [c for r in rows for c in r if c not in cols]
  cols = list(dict.fromkeys(cols))
  Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
  with open(csv_path, "w", newline="") as f:
    wr = csv.DictWriter(f, fieldnames=cols)
    wr.writeheader()
    wr.writerows(rows)
  if md_path is not None:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ([f"## {title}", ""] if title else []) + ["| " + " | ".join(cols) + " |",
                                                      "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    Path(md_path).write_text("\n".join(lines) + "\n")


def plot_rd(rows: list[dict], path, title: str = "") -> Path:
  """bpp (log) against PSNR and MS-SSIM, one line per method."""
  plt = pyplot()
  keys = [k for k in ("psnr", "ms_ssim") if any(k in r for r in rows)]
  fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
  methods = list(dict.fromkeys(r["method"] for r in rows))
  for ax, key in zip(axes[0], keys):
    for m in methods:
      pts = sorted((r["bpp"], r[key]) for r in rows if r["method"] == m and key in r)
      if pts:
        ax.plot(*zip(*pts), "o-" if len(pts) > 1 else "*", label=m, ms=5 if len(pts) > 1 else 12)
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (log)")
    ax.set_ylabel({"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM"}[key])
    ax.grid(True, which="both", alpha=0.3)
  axes[0][0].legend(fontsize=8)
  if title:
    fig.suptitle(title)
  return save_figure(fig, path)


def error_heatmap(reference: np.ndarray, reconstruction: np.ndarray, max_err: float = 64.0):
  """|error| averaged over channels, as an RGB heat map (uint8 [.., H, W, 3], JET colours)."""
  err = np.abs(reference.astype(np.float32) - reconstruction.astype(np.float32)).mean(-1)
  e8 = np.clip(err * (255.0 / max_err), 0, 255).astype(np.uint8)
  flat = e8.reshape(-1, e8.shape[-1])
  return cv2.applyColorMap(flat, cv2.COLORMAP_JET)[..., ::-1].reshape(*e8.shape, 3)


def apply_codec(decode_fn: Callable, z, codec: LatentCodec):
  """Runs `codec` over latents and `decode_fn` over what the receiver gets: (frames, bytes)."""
  zhat, nbytes = codec.roundtrip(z)
  return decode_fn(zhat), nbytes
