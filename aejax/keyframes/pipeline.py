"""The whole key-frame pipeline: extraction from one video file, and the shot-recall study on
synthetic videos with known scene cuts (autoencoder features against raw pixels)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from aejax.data.video import open_video
from aejax.keyframes.features import METRICS, candidate_features, make_dist_pairs
from aejax.keyframes.report import write_outputs
from aejax.keyframes.select import (
  REFERENCES,
  is_sampled,
  sampled_frames,
  segment_clips,
  select_keyframes,
  sharpest_per_second,
  shot_recall,
)


def extract_video(video: str | Path, out: str | Path, embed_fn: Callable, *, model_size: Sequence[int],
                  rate: float = 5.0, fps: float | None = None, metric: str = "latent",
                  reference: str = "last", threshold_mode: str = "percentile", threshold: float = 80.0,
                  min_clip: float = 1.0, max_clip: float | None = 10.0, write_clips: bool = True,
                  batch_size: int = 16) -> dict:
  """Key frames (PNG, `keyframes.json`), key clips (MP4), a timeline plot and a contact sheet.

  The video is decoded once for scoring (only the sampled frames; the rest are grabbed) and once
  more for the outputs; memory stays flat in the video's length.

  Args:
    video: the input video file.
    out: the output folder.
    embed_fn: `x [B, h, w, 3] in [-1, 1] -> {"feat": [B, ...]}` (`make_embed_fn` or `raw_embed_fn`).
    model_size: (H, W) the candidates are resized to before `embed_fn`.
    rate: sampled frames per second.
    fps: overrides the file's frame rate (None: the file's).
    metric, reference, threshold_mode, threshold: see `make_dist_pairs` and `select_keyframes`.
    min_clip, max_clip: clip lengths in seconds, see `segment_clips`.
    write_clips: write the clips as MP4.
    batch_size: candidates per `embed_fn` call.

  Returns:
    A summary: output folder, counts, the video's length and the time taken.
  """
  from tqdm import tqdm

  out = Path(out)
  settings = dict(rate=rate, fps=fps, model_size=tuple(model_size), metric=metric, reference=reference,
                  threshold_mode=threshold_mode, threshold=threshold, min_clip=min_clip, max_clip=max_clip,
                  write_clips=write_clips, batch_size=batch_size)
  t0, c0 = time.perf_counter(), time.process_time()
  with open_video(video, fps) as reader, tqdm(total=reader.container_frames or None, unit="frame",
                                              desc="extract", mininterval=1.0) as bar:
    fps = reader.fps

    def sampled():
      seen = 0
      for i, frame in reader.stream(keep=lambda i: is_sampled(i, fps, rate)):
        bar.update(reader.frames_seen - seen)
        seen = reader.frames_seen
        yield i, frame
      bar.update(reader.frames_seen - seen)

    cands, feats = candidate_features(sharpest_per_second(sampled(), fps), embed_fn,
                                      size=tuple(model_size), batch_size=batch_size)
    num_frames, size = reader.frames_seen, reader.size
  if not cands:
    raise ValueError(f"{video}: no decodable frames")
  t_scan, c_scan = time.perf_counter() - t0, time.process_time() - c0
  dist = make_dist_pairs(feats["feat"], metric)
  keys, scores, thr = select_keyframes(len(cands), dist, reference=reference, threshold_mode=threshold_mode,
                                       threshold=threshold)
  clips = segment_clips([cands[k].index for k in keys], num_frames, fps, min_len=min_clip, max_len=max_clip)
  title = f"{Path(video).name}: {metric} distance to {reference} ({threshold_mode} {threshold})"
  record = write_outputs(out, video, fps=fps, num_frames=num_frames, size=size, candidates=cands,
                         keys=keys, scores=scores, threshold=thr, clips=clips, settings=settings,
                         write_clips=write_clips, title=title)
  elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
  record["timing_s"] = {"scan_and_embed": t_scan, "total": elapsed, "scan_and_embed_cpu": c_scan,
                        "total_cpu": cpu}
  (out / "keyframes.json").write_text(json.dumps(record, indent=2))
  sampled_count = sum(1 for i in range(num_frames) if is_sampled(i, fps, rate))
  return {"out": str(out), "keyframes": len(keys), "clips": len(clips) if write_clips else 0,
          "candidates": len(cands), "video_seconds": round(num_frames / fps, 2), "seconds": round(elapsed, 2),
          "cpu_seconds": round(cpu, 2), "sampled_frames_per_s": round(sampled_count / elapsed, 1)}


def shot_recall_study(embed_fns: Mapping[str, Callable[[str], Callable]], *, num_videos: int,
                      num_frames: int, fps: float, num_shots: int, video_size: Sequence[int], rate: float,
                      model_size: Sequence[int], batch_size: int, seed: int = 1000) -> dict[str, dict]:
  """Shot recall and key frames per shot on synthetic scene-cut videos, per feature and setting.

  Every method scores the same candidates with both metrics and both references, at budgets of
  one and two key frames per shot (`threshold_mode` "top").

  Args:
    embed_fns: method name -> `fn(metric) -> embed_fn` (e.g. "ae" and "pixels").
    num_videos, num_frames, fps, num_shots, video_size: the synthetic videos
      (`aejax.data.synthetic.scene_cut_video`, seeds `seed`, `seed + 1`, ...).
    rate: sampled frames per second.
    model_size: (H, W) the candidates are resized to.
    batch_size: candidates per embedding call.
    seed: the first video's seed.

  Returns:
    `{"<method>_<metric>_<reference>_top<budget>": {"recall", "keyframes_per_shot",
    "num_keyframes"}}`, each the mean over the videos.
  """
  from aejax.data import synthetic

  embeds = {(name, metric): fn(metric) for name, fn in embed_fns.items() for metric in METRICS}
  results: dict[str, dict[str, list]] = {}
  for v in range(num_videos):
    clip = synthetic.scene_cut_video(num_frames, tuple(video_size), num_shots, seed=seed + v)
    cands = list(sharpest_per_second(sampled_frames(list(clip["video"]), fps, rate), fps))
    for metric in METRICS:
      for name in embed_fns:
        _, feats = candidate_features(cands, embeds[name, metric], size=tuple(model_size),
                                      batch_size=batch_size, keep_frames=True)
        dist = make_dist_pairs(feats["feat"], metric)
        for ref in REFERENCES:
          for budget in (num_shots, 2 * num_shots):
            keys, _, _ = select_keyframes(len(cands), dist, reference=ref, threshold_mode="top",
                                          threshold=budget)
            r = shot_recall([cands[k].index for k in keys], clip["shot_ids"])
            for k, val in r.items():
              results.setdefault(f"{name}_{metric}_{ref}_top{budget}", {}).setdefault(k, []).append(val)
  return {m: {k: float(np.mean(v)) for k, v in d.items()} for m, d in results.items()}
