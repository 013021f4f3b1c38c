"""Moving digits (Srivastava et al. 2015, MovingMNIST) and an embedded, procedurally drawn digit set.

The digits are drawn with OpenCV's Hershey fonts and random affine jitter, centred by mass in a
20×20 box like MNIST; nothing is downloaded and no licence applies. Any MNIST-format set (e.g. an
`.npz` with `x_train` / `y_train`) can replace them; `find_mnist` looks for the real one where the
project keeps it (`$AEJAX_MNIST`, `$AEJAX_REALDATA/mnist/mnist.npz`, `../shared/realdata` beside
the checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

_FONTS = (
  cv2.FONT_HERSHEY_SIMPLEX,
  cv2.FONT_HERSHEY_DUPLEX,
  cv2.FONT_HERSHEY_COMPLEX,
  cv2.FONT_HERSHEY_TRIPLEX,
  cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
  cv2.FONT_HERSHEY_PLAIN,
)


def procedural_digits(per_class: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """MNIST-like digits drawn with OpenCV's Hershey fonts and random affine jitter.

  Returns:
    (images [10 * per_class, 28, 28] uint8 white-on-black, labels [10 * per_class] uint8), each
    digit centred by mass in a 20×20 box as in MNIST.
  """
  rng = np.random.default_rng([seed, 101])
  imgs, labels = [], []
  for label in range(10):
    for _ in range(per_class):
      font = _FONTS[int(rng.integers(len(_FONTS)))]
      scale = 2.2 if font == cv2.FONT_HERSHEY_PLAIN else 1.6
      canvas = np.zeros((64, 64), np.uint8)
      (tw, th), _ = cv2.getTextSize(str(label), font, scale, 4)
      cv2.putText(
        canvas,
        str(label),
        ((64 - tw) // 2, (64 + th) // 2),
        font,
        scale,
        255,
        int(rng.integers(3, 7)),
        cv2.LINE_AA,
      )
      a = cv2.getRotationMatrix2D((32, 32), rng.uniform(-15, 15), rng.uniform(0.85, 1.1))
      a[0, 1] += rng.uniform(-0.25, 0.25)  # shear
      canvas = cv2.warpAffine(canvas, a, (64, 64))
      ys, xs = np.nonzero(canvas > 30)
      crop = canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
      f = 20.0 / max(crop.shape)
      crop = cv2.resize(
        crop,
        (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))),
        interpolation=cv2.INTER_AREA,
      )
      out = np.zeros((28, 28), np.uint8)
      cy, cx = np.array(np.nonzero(crop)).mean(1) if crop.any() else (10, 10)
      y0 = int(np.clip(round(14 - cy), 0, 28 - crop.shape[0]))
      x0 = int(np.clip(round(14 - cx), 0, 28 - crop.shape[1]))
      out[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
      imgs.append(out)
      labels.append(label)
  return np.stack(imgs), np.asarray(labels, np.uint8)


def load_mnist_npz(path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """`x_<split>`, `y_<split>` of an MNIST-format .npz file; one-line errors naming the file."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: MNIST-format digits file not found")
  try:
    with np.load(path) as d:
      if f"x_{split}" not in d:
        raise ValueError(f"{path}: no array 'x_{split}' (MNIST .npz format expected)")
      return d[f"x_{split}"], d[f"y_{split}"]
  except (OSError, ValueError, AttributeError, TypeError) as e:
    if str(path) in str(e):
      raise
    raise ValueError(f"{path}: not an MNIST-format .npz file ({type(e).__name__})") from None


def find_mnist() -> str | None:
  """The real MNIST `.npz` if one is where the project keeps it, else None (nothing downloaded).

  `$AEJAX_MNIST` when set (its value is the answer: an empty value turns the search off), else
  `mnist/mnist.npz` under `$AEJAX_REALDATA` or under `../shared/realdata` beside the checkout.
  """
  if "AEJAX_MNIST" in os.environ:
    return os.environ["AEJAX_MNIST"] or None
  beside = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"
  for root in (os.environ.get("AEJAX_REALDATA"), beside):
    if root and (Path(root) / "mnist" / "mnist.npz").is_file():
      return str(Path(root) / "mnist" / "mnist.npz")
  return None


def load_digits(digits, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """None or "procedural" → procedural; (images, labels); images only (labels -1); or an MNIST
  .npz path (its `split` arrays)."""
  if digits is None or (isinstance(digits, str) and digits in ("", "procedural")):
    return procedural_digits()
  if isinstance(digits, (str, Path)):
    return load_mnist_npz(digits, split)
  if isinstance(digits, tuple):
    imgs, labels = digits
    return np.asarray(imgs), np.asarray(labels)
  imgs = np.asarray(digits)
  return imgs, np.full(len(imgs), -1)


def moving_digits_sequence(
  rng: np.random.Generator,
  images: np.ndarray,
  labels: np.ndarray,
  num_frames: int = 20,
  size: int = 64,
  num_digits: int = 2,
  step_length: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
  """One bouncing-digits sequence as in Srivastava et al. 2015: ([T, S, S] uint8, labels [D]).

  Each digit starts at a uniform position, moves in a uniform random direction by `step_length`
  of the free range per frame, and bounces off the borders; digits are combined by maximum.
  """
  dh, dw = images.shape[1:3]
  lim_y, lim_x = size - dh, size - dw
  video = np.zeros((num_frames, size, size), np.uint8)
  picks = rng.integers(0, len(images), num_digits)
  for d in picks:
    theta = rng.uniform(0, 2 * np.pi)
    y, x = rng.uniform(0, 1, 2)
    vy, vx = np.sin(theta), np.cos(theta)
    for t in range(num_frames):
      py, px = int(round(y * lim_y)), int(round(x * lim_x))
      win = video[t, py : py + dh, px : px + dw]
      np.maximum(win, images[d], out=win)
      y, x = y + vy * step_length, x + vx * step_length
      if y <= 0 or y >= 1:
        vy, y = -vy, float(np.clip(y, 0, 1))
      if x <= 0 or x >= 1:
        vx, x = -vx, float(np.clip(x, 0, 1))
  return video, labels[picks].astype(np.int32)


def moving_digits(
  n: int,
  num_frames: int = 20,
  size: int = 64,
  num_digits: int = 2,
  seed: int = 0,
  digits=None,
  split: str = "train",
) -> dict[str, np.ndarray]:
  """`n` moving-digits sequences, a function of (seed, index).

  Args:
    digits: None (embedded procedural digits), `(images [N, h, w] uint8, labels [N])`, an image
      array alone (labels -1), or the path of an MNIST `.npz` (`x_<split>`, `y_<split>`).

  Returns:
    dict(video [n, T, size, size, 1] uint8, labels [n, num_digits] int32).
  """
  images, labels = load_digits(digits, split)
  vids, labs = [], []
  for i in range(n):
    v, lab = moving_digits_sequence(
      np.random.default_rng([seed, i, 53]), images, labels, num_frames, size, num_digits
    )
    vids.append(v)
    labs.append(lab)
  video = np.stack(vids)[..., None] if n else np.zeros((0, num_frames, size, size, 1), np.uint8)
  return {"video": video, "labels": np.asarray(labs, np.int32).reshape(n, num_digits)}
