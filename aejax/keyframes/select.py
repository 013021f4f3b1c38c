"""Key-frame and key-clip selection, after Best-Frame-Retrieval (Chen et al. 2021).

The pipeline (`specs/seeds_keyframe_oval_vae.md` §1.7, with the original's edge cases fixed):

1. Sampling: keep the first frame of every 1/rate-second slot (`floor(i * rate / fps)` changes).
   A video slower than `rate` keeps every frame (the original took `i % (fps // rate)`, a modulo by
   zero below 5 fps).
2. Sharpest frame per second: the sampled frame with the largest variance of the Laplacian of its
   grey image, per second `floor(i / fps)`. The maximum is reset for every second (the original
   carried it over, so a flat second returned the previous second's frame) and the last, partial
   second is kept (the original dropped it). Seconds without sampled frames produce nothing.
3. Novelty: the first candidate is always a key frame; every later candidate is scored by a
   distance to a reference, either the last emitted key frame (default: slow drift accumulates
   and triggers) or the previous candidate (the original), and is a key frame when its score is
   above the threshold. Thresholds are absolute, a percentile of the consecutive-candidate
   distances, "mad" (an outlier rule on the consecutive distances: median + k x 1.4826 x MAD, k =
   `threshold`; it adapts to short videos, where a percentile of a handful of values sits at the
   largest one), or "top N" (exactly N key frames for the previous-candidate reference; the largest
   count <= N found by bisection on the threshold for the last-key reference).
4. Key clips: the video is cut at the key frames; clips shorter than `min_len` seconds merge into
   the one before, clips longer than `max_len` are split evenly.

The distances are functions of the candidates' features (`aejax.keyframes.features`): the RMS
difference of autoencoder latents, or the MS-SSIM + L1 loss between reconstructions, and the same
on raw pixels for the baseline, all on frames resized and scaled to [-1, 1] the same way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

REFERENCES = ("last", "previous")
THRESHOLD_MODES = ("absolute", "percentile", "mad", "top")


@dataclasses.dataclass
class Candidate:
  """A sampled frame (the sharpest of one second, or every sample for shot-aware selection)."""

  index: int  # frame index in the video
  time: float  # seconds
  sharpness: float  # variance of the Laplacian
  frame: np.ndarray | None = None  # [H, W, 3] uint8 RGB


def sample_slot(index: int, fps: float, rate: float) -> int:
  """Which 1/rate-second slot frame `index` falls in (frames are sampled at slot changes)."""
  return int(math.floor(index * rate / fps + 1e-9))


def is_sampled(index: int, fps: float, rate: float) -> bool:
  """Whether frame `index` is the first of its 1/rate-second slot."""
  return index == 0 or sample_slot(index, fps, rate) != sample_slot(index - 1, fps, rate)


def sharpness(frame: np.ndarray) -> float:
  """Variance of the Laplacian of the grey image (RGB or grey uint8 in; higher is sharper)."""
  grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
  if grey.dtype != np.uint8:
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())
  # uint8 in: the 3x3 Laplacian is a whole number within +-1020, exact in int16 (6x faster than float64)
  _, sd = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))
  return float(sd[0, 0]) ** 2


def sampled_frames(frames: Iterable[np.ndarray], fps: float, rate: float) -> Iterator[tuple[int, np.ndarray]]:
  """`(index, frame)` for the sampled frames of a frame sequence (see `is_sampled`)."""
  for i, f in enumerate(frames):
    if is_sampled(i, fps, rate):
      yield i, f


def sharpest_per_second(sampled: Iterable[tuple[int, np.ndarray]], fps: float) -> Iterator[Candidate]:
  """One `Candidate` per second that has sampled frames (the partial last second included)."""
  if not fps > 0:
    raise ValueError(f"sharpest_per_second: fps must be positive, got {fps}")
  best: Candidate | None = None
  for index, frame in sampled:
    second = int(math.floor(index / fps + 1e-9))
    if best is not None and int(math.floor(best.index / fps + 1e-9)) != second:
      yield best
      best = None
    s = sharpness(frame)
    if best is None or s > best.sharpness:
      best = Candidate(index=int(index), time=index / fps, sharpness=s, frame=frame)
  if best is not None:
    yield best


# ------------------------------------------------------------------------------ selection


def consecutive_scores(n: int, dist_pairs: Callable) -> np.ndarray:
  """[n] distances of every candidate to the one before (NaN for the first)."""
  scores = np.full(n, np.nan, np.float64)
  if n > 1:
    scores[1:] = dist_pairs(np.arange(n - 1), np.arange(1, n))
  return scores


def _greedy_last(n: int, dist: Callable[[int, int], float], threshold: float):
  keys, scores = [0], np.full(n, np.nan, np.float64)
  for t in range(1, n):
    scores[t] = dist(keys[-1], t)
    if scores[t] > threshold:
      keys.append(t)
  return keys, scores


def select_keyframes(
  n: int,
  dist_pairs: Callable,
  *,
  reference: str = "last",
  threshold_mode: str = "percentile",
  threshold: float = 80.0,
):
  """Picks key frames among `n` candidates.

  Args:
    n: number of candidates (in time order).
    dist_pairs: `dist_pairs(i [K], j [K]) -> [K]` distances between candidates.
    reference: "last" (the last emitted key frame) or "previous" (the previous candidate).
    threshold_mode: "absolute" (`threshold` is a distance), "percentile" (`threshold` in [0, 100]
      of the consecutive-candidate distances), "mad" (median + `threshold` robust standard
      deviations, 1.4826 x the median absolute deviation, of the consecutive distances) or "top"
      (`threshold` = number of key frames).
    threshold: see `threshold_mode`.

  Returns:
    `(keys, scores, threshold_value)`: sorted candidate positions, [n] scores (each candidate's
    distance to its reference at decision time; NaN for the first) and the distance threshold used.
  """
  if reference not in REFERENCES:
    raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
  if threshold_mode not in THRESHOLD_MODES:
    raise ValueError(f"threshold_mode must be one of {THRESHOLD_MODES}, got {threshold_mode!r}")
  if n == 0:
    return [], np.zeros(0), float("nan")
  if threshold_mode == "top" and (threshold < 1 or threshold != int(threshold)):
    raise ValueError(f"threshold_mode 'top' needs a whole number >= 1, got {threshold}")
  if threshold_mode == "percentile" and not 0 <= threshold <= 100:
    raise ValueError(f"threshold_mode 'percentile' needs a value in [0, 100], got {threshold}")
  if threshold_mode == "mad" and not threshold >= 0:
    raise ValueError(f"threshold_mode 'mad' needs a value >= 0 (robust deviations), got {threshold}")
  consec = consecutive_scores(n, dist_pairs)
  if reference == "previous":
    if threshold_mode == "top":
      order = np.argsort(-consec[1:], kind="stable")[: int(threshold) - 1] + 1
      keys = sorted([0, *order.tolist()])
      thr = float(consec[keys[1:]].min()) if len(keys) > 1 else float("inf")
      return keys, consec, thr
    thr = _threshold_value(consec, threshold_mode, threshold)
    keys = [0] + [t for t in range(1, n) if consec[t] > thr]
    return keys, consec, thr

  cache: dict[tuple[int, int], float] = {(t - 1, t): float(consec[t]) for t in range(1, n)}

  def dist(i: int, j: int) -> float:
    if (i, j) not in cache:
      cache[(i, j)] = float(dist_pairs(np.array([i]), np.array([j]))[0])
    return cache[(i, j)]

  if threshold_mode != "top":
    thr = _threshold_value(consec, threshold_mode, threshold)
    keys, scores = _greedy_last(n, dist, thr)
    return keys, scores, thr
  target = int(threshold)
  if target >= n:
    keys, scores = _greedy_last(n, dist, -np.inf)
    return keys, scores, -np.inf
  lo, hi = 0.0, float(np.nanmax(consec)) if n > 1 else 0.0
  hi = max(hi, 1e-12)
  while len(_greedy_last(n, dist, hi)[0]) > target:  # distances to a key can exceed consecutive ones
    lo, hi = hi, hi * 2
  best = (hi, *_greedy_last(n, dist, hi))
  for _ in range(40):
    mid = 0.5 * (lo + hi)
    keys, scores = _greedy_last(n, dist, mid)
    if len(keys) <= target:
      hi, best = mid, (mid, keys, scores)
      if len(keys) == target:
        break
    else:
      lo = mid
  thr, keys, scores = best
  return keys, scores, float(thr)


def _changes(consec: np.ndarray) -> np.ndarray:
  """The finite consecutive distances `consec[1:]` (the first candidate has none)."""
  vals = np.asarray(consec[1:], np.float64)
  return vals[np.isfinite(vals)]


def robust_threshold(consec: np.ndarray, k: float) -> float:
  """median + k x 1.4826 x MAD of the consecutive distances `consec[1:]` (inf when empty)."""
  vals = _changes(consec)
  if not len(vals):
    return float("inf")
  med = float(np.median(vals))
  return med + k * 1.4826 * float(np.median(np.abs(vals - med)))


def _threshold_value(consec: np.ndarray, mode: str, threshold: float) -> float:
  if mode == "absolute":
    return float(threshold)
  if mode == "mad":
    return robust_threshold(consec, threshold)
  vals = _changes(consec)
  return float(np.percentile(vals, threshold)) if len(vals) else float("inf")


# ---------------------------------------------------------------------------------- clips


def segment_clips(
  key_frames: Sequence[int],
  num_frames: int,
  fps: float,
  *,
  min_len: float = 1.0,
  max_len: float | None = 10.0,
) -> list[dict]:
  """Cuts frames [0, num_frames) at the key frames into clips.

  Args:
    key_frames: frame indices of the key frames (any order); the video is cut at all but the first.
    num_frames: frames in the video.
    fps: frames per second.
    min_len: clips shorter than this (seconds) merge into the clip before (the first into the next).
    max_len: clips longer than this (seconds) are split into equal parts (None: never split).

  Returns:
    Dicts `start`, `end` (frame indices, end exclusive) and `key_frames` (those inside), in order,
    covering every frame exactly once.
  """
  if num_frames <= 0:
    return []
  keys = sorted({int(k) for k in key_frames})
  # The first key frame stands for the start: the first clip runs from frame 0 through it.
  cuts = [k for k in keys[1:] if 0 < k < num_frames]
  bounds = [0, *cuts, num_frames]
  min_frames = max(1, int(math.ceil(min_len * fps - 1e-9)))
  clips = [[a, b] for a, b in zip(bounds[:-1], bounds[1:])]
  merged: list[list[int]] = []
  for clip in clips:
    if merged and clip[1] - clip[0] < min_frames:
      merged[-1][1] = clip[1]
    elif merged and merged[-1][1] - merged[-1][0] < min_frames:  # a short first clip
      merged[-1][1] = clip[1]
    else:
      merged.append(list(clip))
  out = []
  max_frames = int(math.floor(max_len * fps + 1e-9)) if max_len else None
  for a, b in merged:
    parts = int(math.ceil((b - a) / max_frames)) if max_frames else 1
    edges = np.linspace(a, b, max(parts, 1) + 1).round().astype(int)
    for s, e in zip(edges[:-1], edges[1:]):
      out.append(
        {
          "start": int(s),
          "end": int(e),
          "key_frames": [int(k) for k in sorted(set(key_frames)) if s <= k < e],
        }
      )
  return out


# --------------------------------------------------------------------------- evaluation


def shot_recall(key_frames: Sequence[int], shot_ids: np.ndarray) -> dict[str, float]:
  """Share of shots with at least one key frame, and key frames per shot (mean over shots)."""
  shot_ids = np.asarray(shot_ids)
  shots = np.unique(shot_ids)
  hit = shot_ids[np.asarray(list(key_frames), int)] if len(key_frames) else np.zeros(0, int)
  return {
    "recall": float(np.isin(shots, hit).mean()),
    "keyframes_per_shot": float(len(key_frames) / len(shots)),
    "num_keyframes": float(len(key_frames)),
  }
