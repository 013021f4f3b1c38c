"""What key-frame distances are computed on: frames resized and scaled to [-1, 1], embedded by the
autoencoder (latent or reconstruction) or kept as pixels (the baseline), and the pairwise distances.

Also the training images taken from videos (every k-th frame), resized the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import cv2
import numpy as np

from aejax.evaluate import map_batches, pad_batch
from aejax.keyframes.select import Candidate

METRICS = ("latent", "recon")


def resize_frames(frames: np.ndarray, size: Sequence[int] | None) -> np.ndarray:
  """uint8 RGB [B, H, W, 3] resized to `size` (H, W) by area averaging; `size=None` keeps the frame
  size, edge-padded to a multiple of 8 (the autoencoder's stride)."""
  frames = np.asarray(frames)
  if size is not None:
    h, w = int(size[0]), int(size[1])
    if frames.shape[1:3] != (h, w):
      frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    return frames
  ph, pw = (-frames.shape[1]) % 8, (-frames.shape[2]) % 8
  if ph or pw:
    frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
  return frames


def to_model_input(frames: np.ndarray) -> np.ndarray:
  """uint8 [..., 3] -> float32 in [-1, 1], as the autoencoder was trained."""
  return np.asarray(frames).astype(np.float32) * np.float32(2 / 255) - 1.0


def video_frame_images(root, frame_step: int, size: Sequence[int]) -> np.ndarray:
  """Every `frame_step`-th frame of every readable video under `root`, resized to `size` (uint8)."""
  from aejax.data.scan import scan_videos
  from aejax.data.video import VideoReader

  infos = [i for i in scan_videos(root) if i.ok]
  if not infos:
    raise ValueError(f"{root}: no readable video")
  out = []
  for info in infos:
    idx = np.arange(0, info.num_frames, max(1, frame_step))
    with VideoReader(info.path, num_frames=info.num_frames) as r:
      out.append(resize_frames(r.read(idx), size))
  return np.concatenate(out)


def make_embed_fn(model, variables, metric: str) -> Callable:
  """`x [B, h, w, 3] in [-1, 1] -> {"feat": latent or reconstruction}` of a `KeyframeAE`.

  BatchNorm runs in inference mode, so an image's features do not depend on its batch.
  """
  import jax
  import jax.numpy as jnp

  from aejax.models.keyframe_ae import KeyframeAE

  if metric not in METRICS:
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")

  variables = jax.device_put(variables)  # device arrays: constants of the compiled function

  @jax.jit
  def embed(x):
    z = model.apply(variables, x, train=False, method=KeyframeAE.encode)
    return z if metric == "latent" else model.apply(variables, z, train=False, method=KeyframeAE.decode)

  return lambda x: {"feat": embed(jnp.asarray(x))}


def raw_embed_fn(x) -> dict:
  """The pixel baseline: the resized [-1, 1] frame itself."""
  return {"feat": x}


def candidate_features(
  candidates: Iterable[Candidate], embed_fn: Callable, *, size, batch_size: int, keep_frames: bool = False
) -> tuple[list[Candidate], dict]:
  """Streams candidates through `embed_fn(x [B, h, w, 3] in [-1, 1]) -> dict of [B, ...]` in
  fixed-size batches (the last padded: one compilation). Frames are dropped after resizing unless
  `keep_frames`, so memory grows with the features only. Returns (candidates, stacked features)."""
  kept: list[Candidate] = []
  small: list[np.ndarray] = []
  out: dict[str, list] = {}

  def flush():
    x, n = pad_batch(to_model_input(np.stack(small)), batch_size)
    for k, v in embed_fn(x).items():
      out.setdefault(k, []).append(np.asarray(v)[:n])
    small.clear()

  for c in candidates:
    small.append(resize_frames(c.frame[None], size)[0])
    if not keep_frames:
      c.frame = None
    kept.append(c)
    if len(small) == batch_size:
      flush()
  if small:
    flush()
  return kept, {k: np.concatenate(v) for k, v in out.items()}


def make_dist_pairs(features: np.ndarray, metric: str, *, chunk: int = 16, loss_kwargs=None) -> Callable:
  """`dist_pairs(i, j) -> [K]` over candidate features.

  metric "latent": RMS difference of the feature arrays (latents, or pixels for the baseline);
  "recon": `ms_ssim_l1_loss` between the images (reconstructions, or frames for the baseline),
  per pair, on [-1, 1] images (data range 2).
  """
  feats = np.asarray(features, np.float32)
  if metric == "latent":
    flat = feats.reshape(len(feats), -1)
    return lambda i, j: np.sqrt(np.mean((flat[np.asarray(i)] - flat[np.asarray(j)]) ** 2, axis=1))
  if metric != "recon":
    raise ValueError(f"metric must be 'latent' or 'recon', got {metric!r}")
  import jax

  from aejax.losses import ms_ssim_l1_loss

  kw = dict(loss_kwargs or {})
  fn = jax.jit(lambda a, b: ms_ssim_l1_loss(a, b, reduction="per_example", **kw))

  def dist_pairs(i, j):
    i, j = np.asarray(i), np.asarray(j)
    if not len(i):
      return np.zeros(0)
    # Batches of pair indices, the last edge-padded (= the last pair repeated); two compiled
    # shapes: single pairs (the greedy search) and chunks.
    return map_batches(lambda ij: fn(feats[ij[0]], feats[ij[1]]), (i, j), 1 if len(i) == 1 else chunk)

  return dist_pairs
