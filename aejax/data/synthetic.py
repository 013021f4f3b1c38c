"""Embedded synthetic data: textured images, shape videos, scene cuts, a DAVIS-like set, moving digits.

Everything here is generated procedurally and deterministically from a seed; no file is read. The
sets are synthetic twins of the real datasets the five systems use, so every experiment runs and
is tested without a download:

- `textured_images`: natural-looking images (1/f "fractal" textures, stripes, checks, blobs and
  textured shapes, with a lighting gradient) for the image autoencoders (key frames, OVAL, VAE).
- `shapes_video`: several textured objects moving smoothly, scaling, rotating and occluding each
  other over a textured, slowly panning background, with per-pixel object ids. Texture moves with
  the objects, so frame-to-frame correspondence is learnable (SiamMAE, Gupta et al. 2023).
- `scene_cut_video`: shots of `shapes_video` joined with hard cuts whose frame indices are recorded
  (ground truth for key-frame extraction).
- `davis_like` / `write_davis_like`: a DAVIS-2017 layout (Pont-Tuset et al. 2017).
- `moving_digits`: the bouncing-digits generator of Srivastava et al. 2015 (MovingMNIST), over
  procedurally drawn digits (OpenCV Hershey fonts, no licence constraint) or any MNIST-format set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from aejax.data.digits import load_digits, moving_digits, moving_digits_sequence, procedural_digits
from aejax.data.sequences import DAVIS_PALETTE, write_indexed_png

__all__ = [
  "DAVIS_PALETTE",
  "SyntheticVideo",
  "davis_like",
  "load_digits",
  "moving_digits",
  "moving_digits_sequence",
  "procedural_digits",
  "scene_cut_video",
  "shapes_video",
  "textured_images",
  "write_davis_like",
  "write_davis_sequence",
  "write_indexed_png",
  "write_video_folder",
]


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(size, int):
    return size, size
  h, w = size
  return int(h), int(w)


# ----------------------------------------------------------------------------------- textures


def _fractal_noise(rng: np.random.Generator, h: int, w: int, beta: float) -> np.ndarray:
  """1/f^beta noise (natural-image power spectrum), scaled to [0, 1]: [h, w] float32."""
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  f = np.sqrt(fx**2 + fy**2)
  f[0, 0] = 1.0
  spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
  spec[0, 0] = 0.0
  x = np.fft.irfft2(spec, s=(h, w))
  lo, hi = np.percentile(x, [1, 99])
  return np.clip((x - lo) / max(hi - lo, 1e-8), 0, 1).astype(np.float32)


def _random_colors(rng: np.random.Generator, k: int) -> np.ndarray:
  """k saturated-ish RGB colours via random HSV: [k, 3] float32 in [0, 1]."""
  hsv = np.stack([rng.uniform(0, 180, k), rng.uniform(60, 255, k), rng.uniform(70, 255, k)], -1)
  rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]
  return rgb.astype(np.float32) / 255.0


def _texture(rng: np.random.Generator, h: int, w: int, kind: int | None = None) -> np.ndarray:
  """A natural-looking texture: [h, w, 3] float32 in [0, 1]."""
  kind = int(rng.integers(4)) if kind is None else kind
  noise = _fractal_noise(rng, h, w, beta=rng.uniform(1.8, 3.0))
  cols = _random_colors(rng, 3)
  if kind == 0:  # colour-mapped fractal noise (clouds, foliage, rock)
    t = noise[..., None]
    base = np.where(
      t < 0.5, cols[0] + (cols[1] - cols[0]) * (2 * t), cols[1] + (cols[2] - cols[1]) * (2 * t - 1)
    )
  else:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(4, 14)
    ang = rng.uniform(0, np.pi)
    u = (xx * np.cos(ang) + yy * np.sin(ang)) / period
    v = (-xx * np.sin(ang) + yy * np.cos(ang)) / period
    if kind == 1:  # stripes, warped by the noise
      pat = 0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.8 * noise))
    elif kind == 2:  # checks
      pat = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
      pat = cv2.GaussianBlur(pat, (0, 0), 0.7)
    else:  # dots / blobs
      pat = (np.sin(2 * np.pi * u) * np.sin(2 * np.pi * v) > 0.3).astype(np.float32)
      pat = cv2.GaussianBlur(pat, (0, 0), 1.0)
    t = pat[..., None]
    base = cols[0] * (1 - t) + cols[1] * t
    base = base * (0.75 + 0.5 * noise[..., None])
  grain = rng.normal(0, 0.02, size=(h, w, 3)).astype(np.float32)
  return np.clip(base + grain, 0, 1).astype(np.float32)


def _shape_mask(rng: np.random.Generator, p: int) -> np.ndarray:
  """An anti-aliased shape (ellipse, rectangle, triangle or star) filling ~70 % of a p×p box."""
  kind = int(rng.integers(4))
  ss = 4
  canvas = np.zeros((p * ss, p * ss), np.uint8)
  c, r = p * ss / 2, p * ss * 0.35
  if kind == 0:
    axes = (int(r), int(r * rng.uniform(0.55, 1.0)))
    cv2.ellipse(canvas, (int(c), int(c)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
  else:
    n = {1: 4, 2: 3, 3: 10}[kind]
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, np.pi)
    rad = np.full(n, r)
    if kind == 3:
      rad[1::2] *= rng.uniform(0.45, 0.65)
    pts = np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], -1).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 255)
  return cv2.resize(canvas, (p, p), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _composite(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  a = alpha[..., None]
  return dst * (1 - a) + src * a


def textured_images(n: int, size: int | Sequence[int] = (64, 64), seed: int = 0) -> np.ndarray:
  """Natural-looking images: textured backgrounds with textured shapes and a lighting gradient.

  Args:
    n: number of images.
    size: (H, W) or one int.
    seed: images are a function of (seed, index) only.

  Returns:
    uint8 [n, H, W, 3].
  """
  h, w = _size2(size)
  out = np.empty((n, h, w, 3), np.uint8)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  for i in range(n):
    rng = np.random.default_rng([seed, i, 11])
    img = _texture(rng, h, w)
    for _ in range(int(rng.integers(1, 5))):
      p = int(max(8, min(h, w) * rng.uniform(0.3, 0.8)))
      alpha_p = _shape_mask(rng, p)
      tex_p = _texture(rng, p, p)
      m = np.float32([[1, 0, rng.uniform(-p / 3, w - 2 * p / 3)], [0, 1, rng.uniform(-p / 3, h - 2 * p / 3)]])
      alpha = cv2.warpAffine(alpha_p, m, (w, h))
      tex = cv2.warpAffine(tex_p, m, (w, h))
      img = _composite(img, tex, alpha)
    ang = rng.uniform(0, 2 * np.pi)
    grad = (xx * np.cos(ang) + yy * np.sin(ang)) / max(h, w)
    img = img * (0.8 + 0.35 * (grad - grad.min()))[..., None]
    out[i] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
  return out


# ------------------------------------------------------------------------------------- videos


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Bounce x inside [lo, hi] (triangle wave)."""
  span = hi - lo
  y = np.mod(x - lo, 2 * span)
  return lo + np.where(y > span, 2 * span - y, y)


class SyntheticVideo:
  """Textured objects moving over a panning textured background, with per-pixel object ids.

  Each object has its own texture and shape; it translates with constant velocity plus a slow
  wobble (bouncing off the frame borders), scales by up to ±30 % and rotates slowly. Objects are
  drawn in id order, so higher ids occlude lower ones. The background is a larger texture seen
  through a window that pans smoothly (sub-pixel), so background pixels also move coherently.
  """

  def __init__(
    self, size: int | Sequence[int] = (64, 64), num_objects: int = 3, seed: int = 0, speed: float = 1.0
  ):
    self.size = _size2(size)
    self.num_objects = num_objects
    self.seed = seed
    h, w = self.size
    rng = np.random.default_rng([seed, 23])
    self.margin = m = max(4, min(h, w) // 8)
    self.background = _texture(rng, h + 2 * m, w + 2 * m)
    self.pan = rng.uniform(0.02, 0.08, 2) * speed, rng.uniform(0, 2 * np.pi, 2)
    self.objects = []
    for _ in range(num_objects):
      base = min(h, w) * rng.uniform(0.22, 0.42)
      p = int(np.ceil(base * 1.5)) | 1
      vel_ang = rng.uniform(0, 2 * np.pi)
      self.objects.append(
        dict(
          p=p,
          alpha=_shape_mask(rng, p),
          tex=_texture(rng, p, p),
          c0=np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h]),
          v=speed * rng.uniform(0.6, 1.8) * np.array([np.cos(vel_ang), np.sin(vel_ang)]),
          wob=rng.uniform(0.5, 2.0, 2) * speed,
          wob_w=rng.uniform(0.1, 0.3, 2),
          wob_ph=rng.uniform(0, 2 * np.pi, 2),
          s_amp=rng.uniform(0.1, 0.3),
          s_w=rng.uniform(0.05, 0.2),
          s_ph=rng.uniform(0, 2 * np.pi),
          rot0=rng.uniform(0, 360),
          rot_v=rng.uniform(-3, 3) * speed,
        )
      )

  def frame(self, t: float, amodal: bool = False):
    """Renders time t: (image [H, W, 3] uint8, ids [H, W] uint8 with 0 = background).

    With `amodal`, also each object's full (unoccluded) silhouette: bool [K, H, W].
    """
    h, w = self.size
    m = self.margin
    (pw, pph) = self.pan
    off = m + 0.8 * m * np.sin(pw * t + pph)
    shift = np.float32([[1, 0, -off[0]], [0, 1, -off[1]]])
    img = cv2.warpAffine(
      self.background, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    ids = np.zeros((h, w), np.uint8)
    full = []
    for k, o in enumerate(self.objects, start=1):
      c = o["c0"] + o["v"] * t + o["wob"] * np.sin(o["wob_w"] * t + o["wob_ph"])
      c = np.array([_reflect(c[0], 0.05 * w, 0.95 * w), _reflect(c[1], 0.05 * h, 0.95 * h)])
      s = 1.0 + o["s_amp"] * np.sin(o["s_w"] * t + o["s_ph"])
      rot = cv2.getRotationMatrix2D((o["p"] / 2, o["p"] / 2), o["rot0"] + o["rot_v"] * t, s)
      rot[:, 2] += c - o["p"] / 2
      alpha = cv2.warpAffine(o["alpha"], rot, (w, h), flags=cv2.INTER_LINEAR)
      tex = cv2.warpAffine(o["tex"], rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
      img = _composite(img, tex, alpha)
      ids[alpha > 0.5] = k
      full.append(alpha > 0.5)
    image = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    if amodal:
      return image, ids, np.stack(full) if full else np.zeros((0, h, w), bool)
    return image, ids

  def render(self, num_frames: int, start: int = 0, amodal: bool = False) -> dict[str, np.ndarray]:
    """Frames start..start+num_frames-1: dict(video [T, H, W, 3] uint8, masks [T, H, W] uint8,
    and with `amodal` the unoccluded silhouettes `amodal` [T, K, H, W] bool)."""
    frames = [self.frame(float(t), amodal) for t in range(start, start + num_frames)]
    out = {"video": np.stack([f[0] for f in frames]), "masks": np.stack([f[1] for f in frames])}
    if amodal:
      out["amodal"] = np.stack([f[2] for f in frames])
    return out


def shapes_video(
  num_frames: int,
  size: int | Sequence[int] = (64, 64),
  num_objects: int = 3,
  seed: int = 0,
  speed: float = 1.0,
) -> dict[str, np.ndarray]:
  """A `SyntheticVideo` rendered for `num_frames` frames.

  Returns:
    dict(video [T, H, W, 3] uint8, masks [T, H, W] uint8 object ids 0..num_objects).
  """
  return SyntheticVideo(size, num_objects, seed, speed).render(num_frames)


def scene_cut_video(
  num_frames: int,
  size: int | Sequence[int] = (64, 64),
  num_shots: int = 3,
  seed: int = 0,
  num_objects: int = 3,
) -> dict:
  """Shots of different synthetic scenes joined by hard cuts.

  Returns:
    dict(video [T, H, W, 3] uint8, masks [T, H, W] uint8, cuts: list[int] (the first frame index
    of every shot after the first), shot_ids [T] int32).
  """
  if num_shots < 1 or num_frames < num_shots:
    raise ValueError(f"scene_cut_video: need 1 <= num_shots <= num_frames, got {num_shots}, {num_frames}")
  rng = np.random.default_rng([seed, 37])
  min_len = max(1, num_frames // (2 * num_shots))
  extra = num_frames - min_len * num_shots
  lengths = min_len + rng.multinomial(extra, np.ones(num_shots) / num_shots)
  parts = [
    SyntheticVideo(size, num_objects, seed=seed * 1009 + s + 1).render(int(n), start=5 * s)
    for s, n in enumerate(lengths)
  ]
  cuts = [int(c) for c in np.cumsum(lengths)[:-1]]
  shot_ids = np.repeat(np.arange(num_shots, dtype=np.int32), lengths)
  return {
    "video": np.concatenate([p["video"] for p in parts]),
    "masks": np.concatenate([p["masks"] for p in parts]),
    "cuts": cuts,
    "shot_ids": shot_ids,
  }


# -------------------------------------------------------------------------------------- DAVIS


def davis_like(
  num_sequences: int = 3,
  num_frames: int = 10,
  size: int | Sequence[int] = (64, 96),
  seed: int = 0,
  num_objects: int = 2,
) -> list[dict]:
  """Synthetic DAVIS-style sequences: list of dict(name, video [T,H,W,3], masks [T,H,W] ids)."""
  seqs = []
  for i in range(num_sequences):
    k = num_objects if num_objects > 0 else 1 + i % 3
    d = shapes_video(num_frames, size, k, seed=seed * 7919 + i)
    seqs.append({"name": f"synth-{i:03d}", **d})
  return seqs


def write_davis_sequence(
  root: str | Path,
  name: str,
  video: np.ndarray | None = None,
  masks: np.ndarray | None = None,
  palette: np.ndarray | None = None,
  resolution: str = "480p",
  quality: int = 95,
) -> None:
  """Writes one sequence in the DAVIS layout under `root`.

  `video` [T, H, W, 3] uint8 → `JPEGImages/<res>/<name>/00000.jpg ...`; `masks` [T, H, W] object
  ids → indexed PNGs `Annotations/<res>/<name>/00000.png ...` with `palette` (DAVIS default).
  Prediction folders for `aejax.davis.evaluate` use the same PNG naming under `<root>/<name>`
  when `resolution` is "" and `video` is None.
  """
  root = Path(root)
  if video is not None:
    jdir = root / "JPEGImages" / resolution / name
    jdir.mkdir(parents=True, exist_ok=True)
    for t, img in enumerate(np.asarray(video, np.uint8)):
      if not cv2.imwrite(str(jdir / f"{t:05d}.jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise ValueError(f"{jdir / f'{t:05d}.jpg'}: OpenCV could not write the frame")
  if masks is not None:
    adir = (root / "Annotations" / resolution / name) if resolution else root / name
    for t, m in enumerate(np.asarray(masks)):
      write_indexed_png(adir / f"{t:05d}.png", m, palette)


def write_davis_like(
  root: str | Path,
  num_sequences: int = 3,
  num_frames: int = 10,
  size: int | Sequence[int] = (64, 96),
  seed: int = 0,
  num_objects: int = 2,
  num_train: int = 1,
) -> Path:
  """Writes `davis_like(...)` as a DAVIS-2017 folder and returns `root`.

  Layout: `JPEGImages/480p/<seq>/00000.jpg`, `Annotations/480p/<seq>/00000.png` (indexed PNGs with
  the DAVIS palette, every frame annotated), `ImageSets/2017/{train,val}.txt` (the first
  `num_train` sequences in train, the rest in val).
  """
  root = Path(root)
  seqs = davis_like(num_sequences, num_frames, size, seed, num_objects)
  for s in seqs:
    write_davis_sequence(root, s["name"], s["video"], s["masks"])
  sets = root / "ImageSets" / "2017"
  sets.mkdir(parents=True, exist_ok=True)
  names = [s["name"] for s in seqs]
  (sets / "train.txt").write_text("".join(n + "\n" for n in names[:num_train]))
  (sets / "val.txt").write_text("".join(n + "\n" for n in names[num_train:]))
  return root


# --------------------------------------------------------------------------------- video files


def write_video_folder(
  root: str | Path,
  n: int = 4,
  num_frames: int = 24,
  size: int | Sequence[int] = (64, 80),
  fps: float = 30.0,
  ext: str = ".mp4",
  seed: int = 0,
  classes: int | Sequence[str] = 0,
  num_shots: int = 1,
) -> list[Path]:
  """Writes `n` synthetic videos (shape videos, or scene-cut videos when `num_shots` > 1).

  With `classes` (a count or names) the videos go in Kinetics-style class folders
  `root/<class>/vid_0000.mp4`, round-robin; otherwise flat in `root`. Returns the paths written.
  """
  from aejax.data.video import write_video

  root = Path(root)
  names = [f"class_{c}" for c in range(classes)] if isinstance(classes, int) else list(classes)
  paths = []
  for i in range(n):
    folder = root / names[i % len(names)] if names else root
    folder.mkdir(parents=True, exist_ok=True)
    if num_shots > 1:
      video = scene_cut_video(num_frames, size, num_shots, seed=seed * 131 + i)["video"]
    else:
      video = shapes_video(num_frames, size, seed=seed * 131 + i)["video"]
    paths.append(write_video(folder / f"vid_{i:04d}{ext}", video, fps))
  return paths
