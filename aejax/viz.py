"""Every picture aejax makes: image grids, PNGs, GIFs, and matplotlib (Agg) figures.

Plots import matplotlib through `pyplot()` and are written by `save_figure()`; nothing else in
the package sets a matplotlib backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_uint8(x) -> np.ndarray:
  """Float arrays in [0, 1] (or uint8) to uint8, clipping out-of-range values."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    return x
  return (np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _rgb(x: np.ndarray) -> np.ndarray:
  x = to_uint8(x)
  if x.ndim == 2:
    x = x[..., None]
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return x


def make_grid(images, ncol: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
  """Tiles `images` ([N, H, W, C] or a list of equally sized images) into one [H', W', 3] image."""
  ims = [_rgb(im) for im in images]
  if not ims:
    raise ValueError("make_grid: no images given")
  n = len(ims)
  ncol = ncol or int(np.ceil(np.sqrt(n)))
  nrow = int(np.ceil(n / ncol))
  h = max(im.shape[0] for im in ims)
  w = max(im.shape[1] for im in ims)
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), fill, np.uint8)
  for i, im in enumerate(ims):
    r, c = divmod(i, ncol)
    y, x = pad + r * (h + pad), pad + c * (w + pad)
    grid[y : y + im.shape[0], x : x + im.shape[1]] = im
  return grid


def save_image(path, image) -> Path:
  """Writes one RGB (or grey) image as PNG, creating parent folders (atomically)."""
  import cv2

  from aejax.io import atomic_path

  path = Path(path)
  im = _rgb(image)
  with atomic_path(path) as tmp:  # an interrupted write leaves the old file, never half a PNG
    if not cv2.imwrite(str(tmp), im[..., ::-1]):
      raise OSError(f"{path}: could not write image")
  return path


def save_grid(path, images, ncol: int | None = None) -> Path:
  """Saves `images` tiled by `make_grid` as a PNG and returns the path."""
  return save_image(path, make_grid(images, ncol))


def write_gif(path, frames, fps: float = 10.0) -> Path:
  """Writes [T, H, W, C] frames (uint8 or float in [0, 1]) as a looping GIF."""
  from PIL import Image

  from aejax.io import atomic_path

  path = Path(path)
  ims = [Image.fromarray(_rgb(f)) for f in frames]
  with atomic_path(path) as tmp:
    ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
  return path


def pyplot():
  """`matplotlib.pyplot` on the non-interactive Agg backend (imported on first use)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig, path, dpi: int = 110) -> Path:
  """Lays out, saves (creating the folder; atomically) and closes a matplotlib figure; returns the path."""
  from aejax.io import atomic_path

  fig.tight_layout()
  path = Path(path)
  try:
    with atomic_path(path) as tmp:  # written under a temporary name, then renamed
      fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or None)
  finally:
    pyplot().close(fig)
  return path


def side_by_side(videos, *, gap: int = 1, scale: int = 1) -> np.ndarray:
  """Equally long videos [T, H, W, C] (uint8, or float in [0, 1]) left to right, white `gap`-pixel
  columns between them, every pixel repeated `scale` times: uint8 [T, scale * H, scale * W', 3]."""
  vids = [_rgb(v) for v in videos]
  white = np.full(vids[0].shape[:2] + (gap, 3), 255, np.uint8)
  frames = np.concatenate([p for v in vids for p in (white, v)][1:], axis=2)
  return frames.repeat(scale, 1).repeat(scale, 2)


def write_side_by_side(stem, videos, fps: float, *, gap: int = 1, scale: int = 1) -> tuple[Path, Path]:
  """Writes `stem.gif` and `stem.mp4` (H.264, browser-playable) of `side_by_side(videos)`."""
  from aejax.data.video import write_video

  frames = side_by_side(videos, gap=gap, scale=scale)
  stem = Path(stem)
  return write_gif(stem.with_suffix(".gif"), frames, fps), write_video(stem.with_suffix(".mp4"), frames, fps)


def plot_metrics(
  metrics_path, out, series: dict[str, str], *, ylabel: str = "", log: bool = False
) -> Path | None:
  """Curves of logged values against step from a run's `metrics.jsonl`.

  Args:
    metrics_path: the `metrics.jsonl` file (one JSON object with a `step` per line).
    out: the PNG to write.
    series: legend label -> logged key, e.g. `{"train MSE": "mse", "validation MSE": "eval/mse"}`;
      `eval/` keys are drawn with markers (they are sparse).
    ylabel: the y axis label.
    log: a logarithmic y axis.

  Returns:
    The path written, or None when the file is missing or none of the keys was logged.
  """
  import json

  path = Path(metrics_path)
  if not path.is_file():
    return None
  curves: dict[str, dict] = {label: {} for label in series}
  for line in path.read_text().splitlines():
    rec = json.loads(line)
    for label, key in series.items():
      if key in rec:
        curves[label][rec.get("step")] = rec[key]
  if not any(curves.values()):
    return None
  fig, ax = pyplot().subplots(figsize=(5, 3.5))
  for label, points in curves.items():
    if points:
      ax.plot(
        list(points), list(points.values()), "o-" if series[label].startswith("eval/") else "-", label=label
      )
  ax.set(xlabel="step", ylabel=ylabel, yscale="log" if log else "linear")
  ax.legend()
  return save_figure(fig, out)
