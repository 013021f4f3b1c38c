"""The whole key-frame pipeline on one video file: `select_video` (key frames and clips, nothing
written) and `extract_video` (every output). Evaluation: `aejax.keyframes.evaluation`."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from aejax.data.video import open_video
from aejax.io import write_json
from aejax.keyframes.features import make_dist_pairs
from aejax.keyframes.report import write_outputs
from aejax.keyframes.scan import scan_novelty, scan_shots
from aejax.keyframes.select import (
  is_sampled,
  segment_clips,
  select_keyframes,
)
from aejax.keyframes.shots import PossibleKeys, ShotRules, select_shots
from aejax.viz import pyplot

METHODS = ("shots", "novelty")


def select_video(
  video: str | Path,
  embed_fn: Callable,
  *,
  model_size: Sequence[int] | None,
  method: str = "shots",
  rate: float = 5.0,
  fps: float | None = None,
  metric: str = "latent",
  shots: ShotRules | None = None,
  reference: str = "last",
  threshold_mode: str = "percentile",
  threshold: float = 80.0,
  min_clip: float = 1.0,
  max_clip: float | None = 10.0,
  batch_size: int = 16,
  loss_kwargs=None,
  progress: bool = False,
  warm_up: bool = False,
  **_unused,
) -> dict:
  """Key frames and clips of one video, without writing anything.

  The video is decoded once, only its sampled frames (`rate` per second) converted; memory stays
  flat in the video's length (features, and "shots" keeps the frames of possible key frames up to
  `shots.PossibleKeys`' bound).

  Args:
    video: the input video file.
    embed_fn: `x [B, h, w, 3] in [-1, 1] -> {"feat": [B, ...]}` (`make_embed_fn` or `raw_embed_fn`).
    model_size: (H, W) the frames are resized to before `embed_fn` (None: native size, edge-padded
      to a multiple of 8).
    method: "shots" (`aejax.keyframes.shots`: hard cuts, within-shot changes, the sharpest frame of
      each segment; clips are the segments) or "novelty" (the original: the sharpest frame of each
      second, a distance to a reference above a threshold; clips cut at the key frames).
    rate: sampled frames per second.
    fps: overrides the file's frame rate (None: the file's).
    metric: "latent" or "recon" (`make_dist_pairs`; "shots" uses the latent or reconstruction as
      the feature of `relative_distance`).
    shots: the rules of "shots" (`shots.ShotRules`, None: its defaults; from a config section:
      `ShotRules.pop_from`).
    reference, threshold_mode, threshold, min_clip, max_clip: "novelty" (`select_keyframes`,
      `segment_clips`).
    batch_size: frames per `embed_fn` call.
    loss_kwargs: `ms_ssim_l1_loss` keywords of the "recon" distance ("novelty"), e.g. the config's loss.
    progress: show a progress bar.
    warm_up: compile the model while the first frames decode ("shots"; `scan.scan_shots`).

  Returns:
    `fps`, `num_frames`, `size` (H, W), `candidates` (`Candidate`s, frames dropped), `keys`
    (positions in candidates), `scores` [n] and `threshold` (what the timeline plots), `clips`
    (`start`, `end`, `key_frames`), `shot_starts` (frame indices; "shots" only), `frames` ({frame
    index: RGB} of the key frames kept while scanning; "shots" only, others are read again),
    `seconds`.
  """
  from tqdm import tqdm

  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  size = None if model_size is None else tuple(model_size)
  shots = shots or ShotRules()
  keeper = None
  if method == "shots":
    keeper = PossibleKeys(shots)
  t0 = time.perf_counter()
  with open_video(video, fps) as reader:
    fps = reader.fps
    bar = tqdm(
      total=reader.container_frames or None,
      unit="frame",
      desc="extract",
      mininterval=1.0,
      disable=not progress,
    )
    with bar:
      if keeper is None:
        cands, feats = scan_novelty(reader, embed_fn, rate=rate, size=size, batch_size=batch_size, bar=bar)
      else:
        cands, feats, cue = scan_shots(
          reader, embed_fn, keeper, rate=rate, size=size, batch_size=batch_size, bar=bar, warm_up=warm_up
        )
    num_frames, frame_size = reader.frames_seen, reader.size
  if not cands:
    raise ValueError(f"{video}: no decodable frames")
  out = dict(fps=fps, num_frames=num_frames, size=tuple(frame_size), candidates=cands, frames={})
  if method == "novelty":
    dist = make_dist_pairs(feats["feat"], metric, loss_kwargs=loss_kwargs)
    keys, scores, thr = select_keyframes(
      len(cands), dist, reference=reference, threshold_mode=threshold_mode, threshold=threshold
    )
    clips = segment_clips([cands[k].index for k in keys], num_frames, fps, min_len=min_clip, max_len=max_clip)
    out.update(keys=keys, scores=scores, threshold=thr, clips=clips, shot_starts=None)
  else:
    times = np.array([c.time for c in cands])
    starts, segs = select_shots(
      times,
      cue,
      feats,
      np.array([c.sharpness for c in cands]),
      num_frames / fps,
      shots,
    )
    kept = keeper.frames
    first = lambda p: 0 if p == 0 else cands[p].index
    clips = [
      {
        "start": first(g.start),
        "end": cands[g.end].index if g.end < len(cands) else num_frames,
        "key_frames": [cands[g.key].index] if g.key >= 0 else [],
        "shot": g.shot,
      }
      for g in segs
    ]
    out.update(
      keys=[g.key for g in segs if g.key >= 0],
      scores=cue,
      threshold=shots.cut_threshold,
      clips=clips,
      shot_starts=[first(p) for p in starts],
      frames={cands[g.key].index: kept[g.key] for g in segs if g.key in kept},
    )
  out["seconds"] = time.perf_counter() - t0
  return out


def extract_video(
  video: str | Path,
  out: str | Path,
  embed_fn: Callable,
  *,
  model_size: Sequence[int] | None,
  write_clips: bool = True,
  loss_kwargs=None,
  **settings,
) -> dict:
  """Key frames (PNG, `keyframes.json`), key clips (MP4), a timeline plot and a contact sheet.

  Args:
    video: the input video file.
    out: the output folder.
    embed_fn: see `select_video`.
    model_size: see `select_video`.
    write_clips: write the clips as MP4 (a second decoding pass over the whole video; without it
      the clips are listed in `keyframes.json` only).
    loss_kwargs: see `select_video`.
    **settings: `select_video`'s keywords (method, rate, fps, metric, thresholds, ...).

  Returns:
    A summary: output folder, counts, the video's length and the time taken.
  """
  out = Path(out)
  t0, c0 = time.perf_counter(), time.process_time()
  # matplotlib's import (~0.4 s CPU, for the timeline) overlaps the scan, which mostly waits on the
  # model and the decoder
  plots = threading.Thread(target=pyplot, daemon=True)
  plots.start()
  try:
    sel = select_video(
      video, embed_fn, model_size=model_size, loss_kwargs=loss_kwargs, progress=True, warm_up=True, **settings
    )
  finally:  # no import left running in a thread when an error ends the process
    plots.join()
  t_scan, c_scan = time.perf_counter() - t0, time.process_time() - c0
  cands, fps, num_frames = sel["candidates"], sel["fps"], sel["num_frames"]
  rules = dataclasses.asdict(settings.get("shots") or ShotRules())  # recorded flat, as the config's keys
  size = None if model_size is None else tuple(model_size)
  settings = (
    {k: v for k, v in settings.items() if k != "shots"}
    | rules
    | dict(model_size=size, write_clips=write_clips)
  )
  method = settings.get("method", "shots")
  if method == "shots":
    title = f"{Path(video).name}: HSV cut cue, {len(sel['shot_starts'])} shots, {len(sel['keys'])} key frames"
  else:
    title = (
      f"{Path(video).name}: {settings.get('metric', 'latent')} distance to "
      f"{settings.get('reference', 'last')} ({settings.get('threshold_mode', 'percentile')} "
      f"{settings.get('threshold', 80.0)})"
    )
  record = write_outputs(
    out,
    video,
    fps=fps,
    num_frames=num_frames,
    size=sel["size"],
    candidates=cands,
    keys=sel["keys"],
    scores=sel["scores"],
    threshold=sel["threshold"],
    clips=sel["clips"],
    settings=settings,
    write_clips=write_clips,
    title=title,
    frames=sel["frames"],
  )
  if sel["shot_starts"] is not None:
    record["shot_starts"] = sel["shot_starts"]
  elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
  record["timing_s"] = {
    "scan_and_embed": t_scan,
    "total": elapsed,
    "scan_and_embed_cpu": c_scan,
    "total_cpu": cpu,
  }
  write_json(out / "keyframes.json", record)
  sampled_count = sum(1 for i in range(num_frames) if is_sampled(i, fps, settings.get("rate", 5.0)))
  return {
    "out": str(out),
    "keyframes": len(sel["keys"]),
    "clips": len(sel["clips"]) if write_clips else 0,
    "shots": len(sel["shot_starts"]) if sel["shot_starts"] is not None else None,
    "candidates": len(cands),
    "video_seconds": round(num_frames / fps, 2),
    "seconds": round(elapsed, 2),
    "cpu_seconds": round(cpu, 2),
    "sampled_frames_per_s": round(sampled_count / elapsed, 1),
  }
