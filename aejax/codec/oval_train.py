"""Offline training of the OVAL codec: its clips (interleaved across videos, as the original's
loader) and its loss on `video` batches (colour space, input noise, metrics in RGB)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from aejax.data import synthetic
from aejax.data.sources import ArraySource, VideoClipSource
from aejax.data.transforms import convert_color, convert_color_inverse
from aejax.metrics import psnr
from aejax.models.oval import reconstruction_loss
from aejax.models.rd_layers import rate_bits
from aejax.train import apply_model

COLOR_SPACES = ("rgb", "bgr", "hsv", "ycbcr", "lab")


def interleave(groups: list[list]) -> list:
  """Round robin: item p of group 0, 1, ..., then item p + 1 (exhausted groups drop out)."""
  return [g[p] for p in range(max(map(len, groups))) for g in groups if p < len(g)]


class InterleavedClips:
  """Reorders a `VideoClipSource(hop=clip_len)` so consecutive elements cycle through videos."""

  def __init__(self, source: VideoClipSource):
    self.source = source
    by_video: dict[int, list[int]] = {}
    for i, (v, _) in enumerate(source.clips):
      by_video.setdefault(v, []).append(i)
    self.order = interleave(list(by_video.values()))

  def __len__(self) -> int:
    return len(self.order)

  def __getitem__(self, i: int) -> dict:
    return self.source[self.order[int(i)]]

  def __repr__(self) -> str:
    return f"InterleavedClips({self.source!r})"


def photo_clips(folder, size, per_image: int = 12, seed: int = 0, scales=(2.0, 2.0)) -> ArraySource:
  """One-frame clips (`video` [1, H, W, 3] uint8) cut from the photos of `folder`: `per_image`
  random crops of `size` (H, W) per photo, every other one mirrored, each from the photo scaled so
  its short side is a random multiple in `scales` (lo, hi) of the crop's (never above the
  photo's own size when lo < hi: scale jitter without upsampling)."""
  import cv2

  from aejax.data.images import ImageFolderSource

  src, (h, w) = ImageFolderSource(folder, split="train", valid_fraction=0.0), size
  rng, clips = np.random.default_rng(seed), []
  for i in range(len(src)):
    img = src[i]["image"]
    fit = max(h / img.shape[0], w / img.shape[1])  # the scale at which the crop just fits
    for j in range(per_image):
      k = rng.uniform(*scales) * fit
      k = k if scales[0] == scales[1] else max(min(k, 1.0), fit)
      im = cv2.resize(img, (round(img.shape[1] * k), round(img.shape[0] * k)), interpolation=cv2.INTER_AREA)
      y, x = rng.integers(0, im.shape[0] - h + 1), rng.integers(0, im.shape[1] - w + 1)
      crop = im[y : y + h, x : x + w]
      clips.append(crop[:, ::-1] if j % 2 else crop)
  name = f"oval-photos-{Path(folder).name}-{per_image}-{h}x{w}-{scales[0]:g}-{scales[1]:g}"
  return ArraySource({"video": np.stack(clips)[:, None]}, name=name)


def train_source(data):
  """(source, clip_len): `video` [clip_len, H, W, 3] uint8 clips, interleaved across videos.

  `data` is the experiment's `config.data`: `root` a video folder or a prepared `aejax_videos`
  set (`aejax.data.roots.videos`); else `images` a folder of photos (`photo_clips`, one-frame
  clips); else `num_synthetic` synthetic videos of `synthetic_frames`.
  """
  from aejax.data import roots

  if not data.root and data.get("images"):
    kw = dict(per_image=data.get("per_image", 12), scales=tuple(data.get("scales", (2.0, 2.0))))
    return photo_clips(data.images, tuple(data.size), seed=0, **kw), 1
  clip_len = min(data.clip_len or data.batch_size, data.batch_size)
  if data.root:
    return InterleavedClips(
      VideoClipSource(roots.videos(data.root), num_frames=clip_len, hop=clip_len)
    ), clip_len
  videos = [
    synthetic.shapes_video(data.synthetic_frames, tuple(data.size), seed=s)["video"]
    for s in range(data.num_synthetic)
  ]
  name = f"oval-synthetic-{data.num_synthetic}x{data.synthetic_frames}-{tuple(data.size)}-{clip_len}"
  clips = interleave(
    [[v[p : p + clip_len] for p in range(0, len(v) - clip_len + 1, clip_len)] for v in videos]
  )
  return ArraySource({"video": np.stack(clips)}, name=name), clip_len


def make_loss_fn(name: str, color_space: str, noise_std: float, use_lstm: bool):
  """The engine's `loss_fn` on `video` [B, T, H, W, 3] uint8 batches.

  Frames go to `color_space`, get Gaussian noise of `noise_std` in training only, and the loss
  `name` (`aejax.models.oval.reconstruction_loss`) is taken on the logits; metrics: the BCE, MSE
  and MAE in the model's space, MAE and per-frame PSNR in RGB. A model with a learned latent
  density (`OVAL.density_filters`) adds its rate term: loss += `model.rate_lambda` * bpp, bpp the
  ideal code length of the noisy latent (-sum log2 likelihood) per input pixel (metric `bpp`).
  """

  def loss_fn(model, variables, batch, rngs, train):
    rgb = jnp.asarray(batch["video"], jnp.float32) / 255.0  # [B, T, H, W, 3]
    if not use_lstm:
      rgb = rgb.reshape(-1, *rgb.shape[2:])  # [B*T, H, W, 3]
    x = convert_color(rgb, color_space)
    inp = x + noise_std * jax.random.normal(rngs["noise"], x.shape) if train and noise_std else x
    (y, aux), new_state = apply_model(model, variables, inp, rngs=rngs, train=train)
    loss = reconstruction_loss(name, aux["logits"], x, model.output)
    rate = {}
    if "likelihoods" in aux:
      rate["bpp"] = rate_bits(aux["likelihoods"]) / np.prod(x.shape[:-1])
      loss = loss + model.rate_lambda * rate["bpp"]
    y_rgb = jnp.clip(convert_color_inverse(y, color_space), 0.0, 1.0)
    frames = lambda a: a.reshape(-1, *a.shape[-3:])  # [N, H, W, 3]
    metrics = {
      "loss": loss,
      "bce": reconstruction_loss("bce", aux["logits"], x),
      "mse": jnp.mean((y - x) ** 2),
      "mae": jnp.mean(jnp.abs(y - x)),
      "mae_rgb": jnp.mean(jnp.abs(y_rgb - rgb)),
      "psnr_rgb": jnp.mean(psnr(frames(y_rgb), frames(rgb))),
      **rate,
    }  # mean per frame
    return loss, metrics, new_state

  return loss_fn
