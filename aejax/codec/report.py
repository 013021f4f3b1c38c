"""Quality and rate–distortion reports of a codec: per-frame quality, R–D rows, tables and plots.

`quality` measures RGB frames on the host (PSNR from `aejax.metrics.psnr`, MS-SSIM with OpenCV
filters, MAE); `summarize` turns a reconstruction and its bytes into one R–D row (bytes per frame,
ratio against raw 8-bit RGB, bits per pixel, quality); `write_rows` and `plot_rd` write a set of
rows as CSV, markdown and a bpp–quality plot; `plot_frames` and `error_heatmap` show one video.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from aejax import metrics
from aejax.codec.latent import bits_per_pixel, compression_ratio
from aejax.viz import pyplot, save_figure

COLUMNS = ("method", "setting", "bytes_per_frame", "ratio", "bpp", "psnr", "ms_ssim", "mae")


def _blur_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
  """'VALID' separable Gaussian filtering of [H, W, C] float32 (OpenCV; fast on CPU)."""
  r = len(g) // 2
  y = cv2.sepFilter2D(x, cv2.CV_32F, g, g, borderType=cv2.BORDER_CONSTANT)
  return y[r : x.shape[0] - r, r : x.shape[1] - r]


def ms_ssim_host(a: np.ndarray, b: np.ndarray, max_val: float = 1.0) -> float:
  """MS-SSIM of two [H, W, C] float images with OpenCV filtering: the same definition as
  `aejax.metrics.ms_ssim` (Wang et al. 2003 weights, 11-tap sigma-1.5 window, 'valid' filtering,
  per-channel means clipped at 0, 2x2 pooling after zero-padding odd sizes, fewer scales with
  renormalised weights for small images), for host-side evaluation of long videos, where XLA's
  depthwise convolutions are slow on CPU. Tested equal to `metrics.ms_ssim`."""
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
      a, b = ((x[::2, ::2] + x[1::2, ::2] + x[::2, 1::2] + x[1::2, 1::2]) * 0.25 for x in (a, b))  # 2x2 means
  per_channel = np.prod(np.stack(vals).astype(np.float64) ** w[:, None], axis=0)
  return float(per_channel.mean())


def quality(reference, reconstruction, *, with_ms_ssim: bool = True) -> dict:
  """Per-frame PSNR (dB), MS-SSIM and MAE of RGB frames (uint8, or float in [0, 1]).

  Returns a dict of [N] float arrays: `psnr` (`aejax.metrics.psnr`; infinite for identical
  frames), `ms_ssim` (when asked; `ms_ssim_host`), `mae` (on the [0, 1] scale).
  """

  def as_float(x):
    x = np.asarray(x)
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)

  ref, rec = np.asarray(reference), np.asarray(reconstruction)
  if ref.shape != rec.shape or ref.ndim != 4:
    raise ValueError(f"quality: expected two [N, H, W, C] batches, got {ref.shape} and {rec.shape}")
  if ref.dtype == rec.dtype == np.uint8:  # exact integer errors, one frame at a time (1080p video)
    sse, sae = np.zeros(len(ref)), np.zeros(len(ref))
    for i, (a, b) in enumerate(zip(ref, rec)):
      d = (a.astype(np.int16) - b).ravel()
      sse[i], sae[i] = np.dot(d.astype(np.float64), d), np.abs(d).sum(dtype=np.int64)
    with np.errstate(divide="ignore"):
      out = {"psnr": 10.0 * np.log10(255.0**2 * ref[0].size / sse), "mae": sae / (255.0 * ref[0].size)}
  else:
    ref, rec = as_float(ref), as_float(rec)
    out = {
      "psnr": np.asarray(metrics.psnr(ref, rec), np.float64),
      "mae": np.abs(ref - rec).reshape(len(ref), -1).mean(1, np.float64),
    }
  if with_ms_ssim:
    ref, rec = as_float(ref), as_float(rec)
    out["ms_ssim"] = np.array([ms_ssim_host(a, b) for a, b in zip(ref, rec)])
  return out


def summarize(
  method: str, setting: str, reference, reconstruction, nbytes, with_ms_ssim: bool = True
) -> dict:
  """One rate–distortion row: mean bytes per frame, ratio, bpp, PSNR, MS-SSIM, MAE."""
  h, w = np.asarray(reference).shape[1:3]
  q = quality(reference, reconstruction, with_ms_ssim=with_ms_ssim)
  nbytes = np.asarray(nbytes, np.float64)
  row = {
    "method": method,
    "setting": setting,
    "bytes_per_frame": float(nbytes.mean()),
    "ratio": float(compression_ratio(nbytes.mean(), h, w)),
    "bpp": float(bits_per_pixel(nbytes.mean(), h, w)),
    "psnr": float(q["psnr"].mean()),
    "mae": float(q["mae"].mean()),
  }
  if with_ms_ssim:
    row["ms_ssim"] = float(q["ms_ssim"].mean())
  return row


def rd_row(method: str, setting: str, summary: dict) -> dict:
  """A rate–distortion row (`COLUMNS`) from a conversion's or an encode's summary."""
  return {"method": method, "setting": setting, **{k: summary[k] for k in COLUMNS[2:] if k in summary}}


def write_csv(rows: list[dict], path, fields=None) -> Path:
  """Writes dict rows as CSV (columns: `fields`, default the first row's keys); returns the path."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", newline="") as f:
    wr = csv.DictWriter(f, fieldnames=list(fields or rows[0]))
    wr.writeheader()
    wr.writerows(rows)
  return path


def read_rows(path) -> list[dict]:
  """R–D rows back from a `write_rows` CSV (numeric cells as floats, empty cells dropped)."""

  def cell(v: str):
    try:
      return float(v)
    except ValueError:
      return v

  with open(path, newline="") as f:
    return [{k: cell(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def write_rows(rows: list[dict], csv_path, md_path=None, title: str = "") -> None:
  """Writes R–D rows as CSV and (optionally) a markdown table."""
  cols = [c for c in COLUMNS if any(c in r for r in rows)]
  cols += [c for r in rows for c in r if c not in cols]
  cols = list(dict.fromkeys(cols))
  write_csv(rows, csv_path, cols)
  if md_path is not None:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ([f"## {title}", ""] if title else []) + [
      "| " + " | ".join(cols) + " |",
      "|" + "---|" * len(cols),
    ]
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


def plot_frames(rows: list[dict], path, title: str) -> Path:
  """Per-frame PSNR, MS-SSIM, MAE and bytes of one converted video, one panel each."""
  plt = pyplot()
  keys = [k for k in ("psnr", "ms_ssim", "mae", "bytes") if k in rows[0]]
  fig, axes = plt.subplots(len(keys), 1, figsize=(9, 2.2 * len(keys)), sharex=True)
  for ax, k in zip(np.atleast_1d(axes), keys):
    ax.plot([r[k] for r in rows], lw=1)
    ax.set_ylabel(k)
    ax.grid(alpha=0.3)
  np.atleast_1d(axes)[-1].set_xlabel("frame")
  fig.suptitle(title)
  return save_figure(fig, path, dpi=100)


def error_heatmap(reference: np.ndarray, reconstruction: np.ndarray, max_err: float = 64.0):
  """|error| averaged over channels, as an RGB heat map (uint8 [.., H, W, 3], JET colours)."""
  err = np.abs(reference.astype(np.float32) - reconstruction.astype(np.float32)).mean(-1)
  e8 = np.clip(err * (255.0 / max_err), 0, 255).astype(np.uint8)
  flat = e8.reshape(-1, e8.shape[-1])
  return cv2.applyColorMap(flat, cv2.COLORMAP_JET)[..., ::-1].reshape(*e8.shape, 3)


def _bd(anchor: list[dict], test: list[dict], key: str, rate_axis: bool) -> float:
  """Mean difference of log(bpp) (rate_axis) or of `key` between two R–D curves over their common
  quality (or log-rate) range, each curve its Pareto front interpolated piecewise linearly."""

  def curve(rows):
    front = pareto([r for r in rows if key in r and r["bpp"] > 0], key)
    return np.array([r[key] for r in front]), np.log([r["bpp"] for r in front])

  (qa, ra), (qb, rb) = curve(anchor), curve(test)
  if len(qa) < 2 or len(qb) < 2:
    return float("nan")
  xa, ya, xb, yb = (qa, ra, qb, rb) if rate_axis else (ra, qa, rb, qb)
  lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
  if not hi > lo:
    return float("nan")
  x = np.linspace(lo, hi, 257)
  return float(np.mean(np.interp(x, xb, yb) - np.interp(x, xa, ya)))


def quality_at_rate(rows: list[dict], bpp: float, key: str = "psnr") -> float:
  """The best `key` the rows reach within `bpp`: their Pareto front interpolated piecewise linearly
  in log(bpp), held at its last value between the front's highest rate and the highest rate
  measured (a setting off the front spends more for less). NaN below the lowest rate or above the
  highest measured: never extrapolated."""
  rows = [r for r in rows if key in r and r["bpp"] > 0]
  front = pareto(rows, key)
  x, y = np.log([r["bpp"] for r in front]), [r[key] for r in front]
  if not front or not x[0] <= np.log(bpp) <= np.log(max(r["bpp"] for r in rows)):
    return float("nan")
  return float(np.interp(np.log(bpp), x, y))


def bd_rate(anchor: list[dict], test: list[dict], key: str = "psnr") -> float:
  """Bjøntegaard delta rate (percent) of `test` against `anchor` R–D rows (`bpp` and `key`).

  Over the quality range both Pareto fronts cover, log(bpp) of each front is interpolated
  piecewise linearly in quality (robust where a cubic fit of a few saturating points is not) and
  the mean difference d gives 100 (exp(d) - 1): negative when `test` needs fewer bits for the
  same quality. NaN when the quality ranges do not overlap.
  """
  d = _bd(anchor, test, key, rate_axis=True)
  return float(100.0 * (np.exp(d) - 1.0)) if np.isfinite(d) else d


def pareto(rows: list[dict], key: str = "psnr") -> list[dict]:
  """The rows no other row beats in both rate (lower bpp) and `key` (higher), by bpp."""
  rows = sorted(rows, key=lambda r: (r["bpp"], -r[key]))
  out, best = [], -np.inf
  for r in rows:
    if r[key] > best:
      out.append(r)
      best = r[key]
  return out


def bd_quality(anchor: list[dict], test: list[dict], key: str = "psnr") -> float:
  """Bjøntegaard delta quality of `test` against `anchor`: the mean difference in `key` (e.g. dB
  of PSNR) at equal rate over the common log-bpp range of the Pareto fronts (piecewise linear, as
  `bd_rate`); positive when `test` is better. NaN when the rate ranges do not overlap."""
  return _bd(anchor, test, key, rate_axis=False)
