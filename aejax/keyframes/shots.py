"""Shot-aware key frames: hard cuts from a cheap colour cue, segments within a shot from features.

The sampled frames (`rate` per second, `select.is_sampled`) of a video are scored three ways:

1. Hard cuts: the mean absolute difference of HSV between consecutive sampled frames, downscaled
   to `CUE_WIDTH` pixels wide (the `content_val` of PySceneDetect's ContentDetector, with hue,
   saturation and value weighted equally, on 0..255 channels; hue 0..179 as OpenCV's). A sampled
   frame starts a new shot when its score is above `cut_threshold` and `cut_ratio` times the
   median score of its neighbours (`CUT_WINDOW` each side): a pan or a hand-held camera raises the
   score for seconds, a cut for one step. Shots shorter than `min_shot` seconds get no key frame
   (a flash or a whip pan is not a shot); they stay clips of their own.
2. Within a shot: the feature maps (autoencoder latent, or pixels) of each sampled frame, `pooled`
   to each channel's spatial mean and standard deviation (a pan or a shaking camera moves the
   content; pooled statistics stay put, raw maps decorrelate), are compared with the segment's
   first frame by a relative RMS distance (`relative_distance`, scale-free, so one threshold suits
   latents and pixels); a new segment starts when it exceeds `change_threshold` and the segment is
   at least `min_segment` seconds long. A static shot is one segment.
3. Representatives: the sharpest sampled frame (variance of the Laplacian) of each segment. A
   representative within `duplicate_threshold` (`DUPLICATE_THRESHOLD`) of any key frame already kept
   in its shot is a near-duplicate: next to that key's segment the two segments merge (the sharpest
   frame of both represents them), otherwise the segment stays a clip without a key frame (a slow
   pan or a camera that returns to a view gives one key frame).

Segments (shots split at within-shot changes) are the key clips: they start and end at shot
boundaries, found at the sampled frames' precision (1/rate s).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np

CUE_WIDTH = 96  # pixels: the cut cue's downscaled width
CUT_WINDOW = 2  # sampled frames each side for the cut cue's local median
# Near-duplicate representatives within a shot (pooled features, `relative_distance`). On the real-footage
# cut set (docs/results/keyframes.md) representatives of one shot >= 3 s apart are at most 0.51 (released
# weights) / 0.61 (demo AE) / 0.44 (pixels) apart, frames across cuts 0.69-0.84 (median); 0.6 is the
# smallest value that gives every long shot there one key frame with either AE.
DUPLICATE_THRESHOLD = 0.6


@dataclasses.dataclass(frozen=True)
class ShotRules:
  """The settings of shot-aware selection, shared by `select_shots` and the scan's `PossibleKeys`
  (which must follow the same rules): `cut_threshold`, `cut_ratio` (`find_cuts`), `min_shot`
  (`short_shots`), `change_threshold`, `min_segment`, `duplicate_threshold` (`segment_shots`;
  None: no near-duplicate test)."""

  cut_threshold: float = 20.0
  cut_ratio: float = 2.0
  min_shot: float = 1.0
  change_threshold: float = 0.5
  min_segment: float = 3.0
  duplicate_threshold: float | None = DUPLICATE_THRESHOLD

  @classmethod
  def pop_from(cls, settings: dict) -> ShotRules:
    """The rules named in `settings` (a config section's keywords), removed from it."""
    return cls(**{f.name: settings.pop(f.name) for f in dataclasses.fields(cls) if f.name in settings})


def hsv_small(frame: np.ndarray, width: int = CUE_WIDTH) -> np.ndarray:
  """uint8 RGB [H, W, 3] -> float32 HSV [h, width, 3] (area-downscaled, OpenCV's ranges)."""
  h, w = frame.shape[:2]
  if w > width:
    frame = cv2.resize(frame, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
  return cv2.cvtColor(frame, cv2.COLOR_RGB2HSV).astype(np.float32)


def content_score(a: np.ndarray, b: np.ndarray) -> float:
  """ContentDetector's score of two `hsv_small` frames: the mean over H, S, V of mean |a - b|."""
  if a.shape != b.shape:
    b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
  return float(np.mean(np.abs(a - b)))


def relative_distance(a: np.ndarray, b: np.ndarray) -> float:
  """RMS(a - b) / sqrt((RMS(a)^2 + RMS(b)^2) / 2): 0 for equal features, ~1.4 for unrelated zero-mean
  ones, independent of the features' scale."""
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  den = np.sqrt((np.mean(a * a) + np.mean(b * b)) / 2)
  return float(np.sqrt(np.mean((a - b) ** 2)) / max(den, 1e-12))


def pooled(feats: np.ndarray) -> np.ndarray:
  """[n, h, w, c] feature maps -> [n, 2c]: each channel's spatial mean and standard deviation (what a
  pan or a hand-held camera leaves nearly unchanged; other shapes are flattened as they are)."""
  f = np.asarray(feats, np.float64)
  if f.ndim != 4:
    return f.reshape(len(f), -1)
  return np.concatenate([f.mean((1, 2)), f.std((1, 2))], axis=1)


def find_cuts(scores: np.ndarray, *, threshold: float, ratio: float, window: int = CUT_WINDOW) -> list[int]:
  """Positions t (>= 1) where sampled frame t starts a new shot.

  Args:
    scores: [n] cue scores, `scores[t]` between frames t - 1 and t (`scores[0]` unused).
    threshold: the absolute floor (ContentDetector's default is 27).
    ratio: the score must also exceed `ratio` x the median of the `window` scores on each side
      (0: off).
    window: neighbours each side for the median.
  """
  scores = np.asarray(scores, np.float64)
  kw = dict(threshold=threshold, ratio=ratio, window=window)
  return [t for t in range(1, len(scores)) if is_cut(scores, t, **kw)]


def is_cut(
  scores: Sequence[float], t: int, *, threshold: float, ratio: float, window: int = CUT_WINDOW
) -> bool:
  """Whether sampled frame t starts a new shot (`find_cuts`); final once `scores[t + window]` is known."""
  s = scores[t]
  if not s > threshold:
    return False
  if ratio > 0:
    nb = [scores[u] for u in range(max(1, t - window), min(len(scores), t + window + 1)) if u != t]
    if nb and s <= ratio * float(np.median(nb)):
      return False
  return True


def short_shots(starts: Sequence[int], times: np.ndarray, end_time: float, min_len: float) -> list[bool]:
  """Which shots (starting at sample positions `starts`) last less than `min_len` seconds.

  Args:
    starts: sample positions where shots start (sorted, the first 0).
    times: [n] the samples' times (seconds).
    end_time: the video's end (seconds).
    min_len: the shortest shot (seconds) that gets a key frame.
  """
  ends = [times[s] for s in starts[1:]] + [end_time]
  return [e - times[s] < min_len for s, e in zip(starts, ends)]


@dataclasses.dataclass
class Segment:
  """A run of sampled frames [start, end) (positions) inside one shot, with its representative."""

  shot: int
  start: int
  end: int
  key: int  # position of the sharpest sample; -1: none (a shot too short, or a near-duplicate)


def segment_shots(
  shot_starts: Sequence[int],
  feats: np.ndarray,
  sharp: np.ndarray,
  times: np.ndarray,
  *,
  change_threshold: float,
  min_segment: float,
  short: Sequence[bool] | None = None,
  duplicate_threshold: float | None = None,
) -> list[Segment]:
  """Segments and representatives of each shot (steps 2 and 3 of the module docstring).

  Args:
    shot_starts: sample positions where shots start (sorted, the first 0).
    feats: [n, d] features of the samples (`pooled`).
    sharp: [n] sharpness of the samples.
    times: [n] times of the samples (seconds).
    change_threshold: relative distance to the segment's first sample that starts a new segment
      (inf: one segment per shot).
    min_segment: the shortest segment (seconds) a change may end.
    short: [shots] shots that get one segment without a key frame (key -1).
    duplicate_threshold: a segment's representative within this relative distance of a key frame
      already kept in its shot is a near-duplicate (None: `change_threshold`).
  """
  dup = change_threshold if duplicate_threshold is None else duplicate_threshold
  n = len(times)
  bounds = [*shot_starts, n]
  out: list[Segment] = []
  for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
    if short is not None and short[s]:
      out.append(Segment(shot=s, start=a, end=b, key=-1))
      continue
    starts = [a]
    for t in range(a + 1, b):
      if (
        times[t] - times[starts[-1]] >= min_segment
        and relative_distance(feats[starts[-1]], feats[t]) > change_threshold
      ):
        starts.append(t)
    segs: list[Segment] = []
    for u, v in zip(starts, [*starts[1:], b]):
      key = u + int(np.argmax(sharp[u:v]))
      kept = [g.key for g in segs if g.key >= 0]
      near = [k for k in kept if relative_distance(feats[k], feats[key]) <= dup]
      prev = segs[-1] if segs else None
      if prev is not None and (prev.key in near or (prev.key < 0 and near)):
        prev.end = v  # a near-duplicate of the previous segment's key (or of the key it repeats): one segment
        if prev.key >= 0:
          prev.key = prev.start + int(np.argmax(sharp[prev.start : v]))
        continue
      segs.append(Segment(shot=s, start=u, end=v, key=-1 if near else key))
    out.extend(segs)
  return out


def select_shots(
  times: np.ndarray, cue: np.ndarray, feats: np.ndarray, sharp: np.ndarray, end_time: float, rules: ShotRules
) -> tuple[list[int], list[Segment]]:
  """Shot starts (sample positions) and segments of sampled frames (the whole module docstring).

  Args:
    times: [n] the samples' times (seconds).
    cue: [n] cut-cue scores (`content_score` to the sample before; `cue[0]` unused).
    feats: [n, ...] the samples' features (feature maps are `pooled`).
    sharp: [n] the samples' sharpness.
    end_time: the video's end (seconds).
    rules: the thresholds (`ShotRules`); shots shorter than `min_shot` seconds get no key frame.
  """
  if not len(times):
    return [], []
  starts = [0, *find_cuts(cue, threshold=rules.cut_threshold, ratio=rules.cut_ratio)]
  short = short_shots(starts, times, end_time, rules.min_shot)
  if all(short):  # a video shorter than `min_shot` still gets one key frame: its longest shot's
    ends = [times[s] for s in starts[1:]] + [end_time]
    short[int(np.argmax([e - times[s] for s, e in zip(starts, ends)]))] = False
  return starts, segment_shots(
    starts,
    pooled(feats),
    sharp,
    times,
    change_threshold=rules.change_threshold,
    min_segment=rules.min_segment,
    short=short,
    duplicate_threshold=rules.duplicate_threshold,
  )


class PossibleKeys:
  """Follows `select_shots`' rules while a video is scanned, sample by sample, to know which samples
  need features and which frames may become key frames; the other frames are let go.

  Features: `segment_shots` compares a sample with its segment's first only once the segment is
  `min_segment` long, so a sample needs its feature only when it starts a shot or lies that far
  from the latest start known (`wanted`; a superset: starts only move later). Frames: every key frame
  is the sharpest sample of one or more consecutive segments as `segment_shots` first splits the
  shot (merging near-duplicates joins segments or drops keys), so the sharpest sample of each such
  segment is kept (`frames`); `compared` lists those whose features the near-duplicate test may
  read (shots of two or more segments). Cuts follow `is_cut`, final `window` scores later. Beyond
  `max_bytes` the oldest kept frames are dropped (decoded again when needed).

  Use: append each sample's cut score to `cue`, then `add` it; call `wanted(t)` for t = 0, 1, ...
  once `cue[t + window]` exists (or with `final=True` at the end), give the features it asks for
  with `set_feature` (any time later), and `finish()` at the end.

  Args:
    rules: the `ShotRules` that `select_shots` will apply (cuts, `change_threshold`, `min_segment`).
    window: see `find_cuts`.
    max_bytes: the most frame bytes kept.
  """

  def __init__(self, rules: ShotRules = ShotRules(), *, window: int = CUT_WINDOW, max_bytes: int = 512 << 20):
    self._cut = dict(threshold=rules.cut_threshold, ratio=rules.cut_ratio, window=window)
    self._change, self._min_segment, self._max_bytes = rules.change_threshold, rules.min_segment, max_bytes
    self.cue: list[float] = []
    self.feats: dict[int, np.ndarray] = {}  # position -> pooled feature
    self.frames: dict[int, np.ndarray] = {}  # position -> frame of a possible key frame (insertion order)
    self._times: list[float] = []
    self._sharp: list[float] = []
    self._pending: dict[int, np.ndarray] = {}  # position -> frame, not yet followed
    self._bytes = 0
    self._start = self._best = -1  # the followed open segment's first and sharpest positions
    self._shot = -1  # the followed shot (counted from 0)
    self._raw: dict[int, int] = {}  # the sharpest position of every segment so far -> its shot
    self._segments: list[int] = []  # segments per shot
    self._latest = 0  # the latest shot or segment start known to `wanted`

  def add(self, time: float, sharpness: float, frame: np.ndarray) -> None:
    """The next sample (its cut score appended to `cue` before): time, sharpness, frame."""
    self._pending[len(self._times)] = frame
    self._times.append(time)
    self._sharp.append(sharpness)

  @property
  def backlog(self) -> bool:
    """Whether the frames of samples added but not yet followed (waiting for a wanted feature) pass
    half of `max_bytes`."""
    held = len(self._pending) * next(iter(self._pending.values())).nbytes if self._pending else 0
    return held > self._max_bytes // 2

  def final(self, t: int) -> bool:
    """Whether sample t's cut is decided (`window` later scores known)."""
    return t + self._cut["window"] < len(self.cue)

  def wanted(self, t: int, final: bool = False) -> bool:
    """Whether sample t needs its feature (call in order, once `final(t)` or at the end)."""
    if t == 0 or is_cut(self.cue, t, **self._cut):
      self._latest = t
      return True
    self._latest = max(self._latest, self._start)
    return self._times[t] - self._times[self._latest] >= self._min_segment

  def set_feature(self, t: int, feature: np.ndarray) -> None:
    """Sample t's pooled feature (`pooled`); follows the samples it was waiting for."""
    self.feats[t] = np.asarray(feature, np.float64)
    self._follow(final=False)

  def finish(self) -> dict[int, np.ndarray]:
    """Follows the last samples (every wanted feature given); returns `frames`."""
    self._follow(final=True)
    return self.frames

  @property
  def compared(self) -> list[int]:
    """The sharpest positions of the segments of shots of two or more segments: the features the
    near-duplicate test of `segment_shots` may read (their frames kept unless over `max_bytes`)."""
    return [t for t, shot in self._raw.items() if self._segments[shot] > 1]

  def _keep(self, t: int, frame: np.ndarray) -> None:
    self._raw[t] = self._shot
    self.frames[t] = frame
    self._bytes += frame.nbytes
    while self._bytes > self._max_bytes and len(self.frames) > 1:
      self._drop(next(iter(self.frames)))

  def _drop(self, t: int) -> None:
    frame = self.frames.pop(t, None)
    if frame is not None:
      self._bytes -= frame.nbytes

  def _follow(self, final: bool) -> None:
    while self._pending:
      t = next(iter(self._pending))
      if not (final or self.final(t)):
        return  # its cut is not decided yet
      cut = self._start < 0 or is_cut(self.cue, t, **self._cut)
      far = not cut and self._times[t] - self._times[self._start] >= self._min_segment
      if far and t not in self.feats:
        if final:
          raise ValueError(f"sample {t}: its feature was wanted but not given")
        return
      frame = self._pending.pop(t)
      if cut:
        self._shot += 1
        self._segments.append(0)
      if cut or (far and relative_distance(self.feats[self._start], self.feats[t]) > self._change):
        self._segments[self._shot] += 1  # a new segment: the open one's sharpest frame stays kept
        self._start = self._best = t
        self._keep(t, frame)
      elif self._sharp[t] > self._sharp[self._best]:  # the first maximum, as np.argmax
        self._drop(self._best)
        del self._raw[self._best]
        self._best = t
        self._keep(t, frame)
