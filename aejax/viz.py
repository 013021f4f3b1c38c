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
    grid[y:y + im.shape[0], x:x + im.shape[1]] = im
  return grid


def save_image(path, image) -> Path:
  """Writes one RGB (or grey) image as PNG, creating parent folders."""
  import cv2

  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  im = _rgb(image)
  if not cv2.imwrite(str(path), im[..., ::-1]):
    raise OSError(f"{path}: could not write image")
  return path


def save_grid(path, images, ncol: int | None = None) -> Path:
  """Saves `images` tiled by `make_grid` as a PNG and returns the path."""
  return save_image(path, make_grid(images, ncol))


def write_gif(path, frames, fps: float = 10.0) -> Path:
  """Writes [T, H, W, C] frames (uint8 or float in [0, 1]) as a looping GIF."""
  from PIL import Image

  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  ims = [Image.fromarray(_rgb(f)) for f in frames]
  ims[0].save(path, save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
  return path


def pyplot():
  """`matplotlib.pyplot` on the non-interactive Agg backend (imported on first use)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig, path, dpi: int = 110) -> Path:
  """Lays out, saves (creating the folder) and closes a matplotlib figure; returns the path."""
  fig.tight_layout()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=dpi)
  pyplot().close(fig)
  return path
