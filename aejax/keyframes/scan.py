"""One decoding pass over a video's sampled frames: the cut cue, sharpness and features of
`select_video`.

The decoder runs in a background thread (`prefetch`) that also converts each sampled frame, measures
its cut cue's small HSV frame and sharpness and resizes it for the model; the caller's thread runs
the model on batches. Shot-aware scans (`scan_shots`) run the model only on the samples whose
features the selection reads (`shots.PossibleKeys.wanted`) and keep only the frames of possible
key frames.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np

from aejax.data.video import VideoReader
from aejax.evaluate import pad_batch
from aejax.keyframes.features import candidate_features, resize_frames, to_model_input
from aejax.keyframes.select import Candidate, is_sampled, sharpest_per_second, sharpness
from aejax.keyframes.shots import PossibleKeys, content_score, hsv_small, pooled


def prefetch(items, size: int = 32):
  """Iterates `items` in a background thread (decoding and OpenCV release the GIL, so they overlap
  with the model in the caller's thread); exceptions are re-raised in the caller."""
  q: queue.Queue = queue.Queue(size)
  done = object()

  def work():
    try:
      for x in items:
        q.put(x)
    except BaseException as e:  # noqa: BLE001  (handed to the consumer)
      q.put(_Raised(e))
    q.put(done)

  threading.Thread(target=work, daemon=True).start()
  while (x := q.get()) is not done:
    if isinstance(x, _Raised):
      raise x.error
    yield x


class _Raised:
  def __init__(self, error: BaseException):
    self.error = error


def sampled_frames(reader, rate: float, bar=None):
  """`(index, RGB frame)` of the sampled frames of an open `VideoReader`, updating a tqdm `bar`."""
  seen = 0
  for i, frame in reader.stream(keep=lambda i: is_sampled(i, reader.fps, rate)):
    if bar is not None:
      bar.update(reader.frames_seen - seen)
      seen = reader.frames_seen
    yield i, frame
  if bar is not None:
    bar.update(reader.frames_seen - seen)


def scan_novelty(reader, embed_fn: Callable, *, rate: float, size, batch_size: int, bar=None):
  """The sharpest sampled frame of each second and its features: (candidates, features)."""
  source = sharpest_per_second(prefetch(sampled_frames(reader, rate, bar)), reader.fps)
  return candidate_features(source, embed_fn, size=size, batch_size=batch_size)


def scan_shots(
  reader,
  embed_fn: Callable,
  keeper: PossibleKeys,
  *,
  rate: float,
  size,
  batch_size: int,
  bar=None,
  warm_up: bool = False,
) -> tuple[list[Candidate], np.ndarray, np.ndarray]:
  """Every sampled frame, scored for `shots.select_shots` (the `keeper`'s settings). `warm_up`: run
  `embed_fn` once on a batch of zeros in a background thread at the start (its compilation then
  overlaps the decoding; one wasted batch when it is compiled already).

  Returns:
    candidates (frames dropped; the keeper keeps those of possible key frames), pooled features
    [n, d] (NaN rows: samples whose features the selection does not read), cut cue [n].
  """
  fps = reader.fps
  cands: list[Candidate] = []
  smalls: dict[int, np.ndarray] = {}  # position -> the frame at the model's size, until decided
  queued: list[tuple[int, np.ndarray]] = []  # wanted (position, small frame), waiting for the model
  decided = 0
  # compile the model while the first frames decode (the first batch may come late: few are wanted)
  h, w = size if size is not None else [-(-n // 8) * 8 for n in reader.size]
  warm = threading.Thread(target=embed_fn, args=(np.zeros((batch_size, h, w, 3), np.float32),), daemon=True)
  if warm_up:
    warm.start()

  def measured():  # in the decoding thread
    for i, frame in sampled_frames(reader, rate, bar):
      yield i, frame, hsv_small(frame), sharpness(frame), resize_frames(frame[None], size)[0]

  def flush():
    if warm_up:
      warm.join()  # one compilation, not two racing
    x, n = pad_batch(to_model_input(np.stack([f for _, f in queued])), batch_size)
    feats = pooled(np.asarray(embed_fn(x)["feat"])[:n])
    pos = [p for p, _ in queued]
    queued.clear()
    for p, f in zip(pos, feats):
      keeper.set_feature(p, f)

  def decide(final: bool):
    nonlocal decided
    while decided < len(cands) and (final or keeper.final(decided)):
      small = smalls.pop(decided)
      if keeper.wanted(decided):
        queued.append((decided, small))
      decided += 1
      # a full batch, or frames piling up behind a wanted feature: run the model
      if len(queued) == batch_size or (queued and keeper.backlog):
        flush()

  try:
    prev = None
    for i, frame, hsv, sharp, small in prefetch(measured()):
      keeper.cue.append(float("nan") if prev is None else content_score(prev, hsv))
      prev = hsv
      smalls[len(cands)] = small
      cands.append(Candidate(index=int(i), time=i / fps, sharpness=sharp))
      keeper.add(i / fps, sharp, frame)
      decide(final=False)
    decide(final=True)
    if queued:
      flush()
  finally:  # an early error (a video that does not decode) must not leave XLA compiling at exit
    if warm_up and warm.is_alive():
      warm.join()
  keeper.finish()
  # the near-duplicate test's features: the sharpest frames of the segments of split shots
  missing = [p for p in keeper.compared if p not in keeper.feats]
  absent = [p for p in missing if p not in keeper.frames]  # dropped over the memory bound: decode again
  again = {}
  if absent:
    with VideoReader(reader.path) as r:
      again = dict(zip(absent, r.read([cands[p].index for p in absent])))
  for k in range(0, len(missing), batch_size):
    for p in missing[k : k + batch_size]:
      queued.append((p, resize_frames(keeper.frames.get(p, again.get(p))[None], size)[0]))
    flush()
  feats = np.full((len(cands), len(next(iter(keeper.feats.values()), ()))), np.nan)
  for p, f in keeper.feats.items():
    feats[p] = f
  return cands, feats, np.asarray(keeper.cue, np.float64)
