"""Evaluation of key-frame methods: the shot-recall study on synthetic videos with known scene cuts
(autoencoder features against raw pixels), and methods scored on a folder of videos with known shots
(`aejax.keyframes.cutset`), PySceneDetect among them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from aejax.keyframes.features import METRICS, candidate_features, make_dist_pairs
from aejax.keyframes.pipeline import select_video
from aejax.keyframes.select import (
  REFERENCES,
  sampled_frames,
  select_keyframes,
  sharpest_per_second,
  shot_recall,
)


def shot_recall_study(
  embed_fns: Mapping[str, Callable[[str], Callable]],
  *,
  num_videos: int,
  num_frames: int,
  fps: float,
  num_shots: int,
  video_size: Sequence[int],
  rate: float,
  model_size: Sequence[int],
  batch_size: int,
  seed: int = 1000,
) -> dict[str, dict]:
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
        _, feats = candidate_features(
          cands, embeds[name, metric], size=tuple(model_size), batch_size=batch_size, keep_frames=True
        )
        dist = make_dist_pairs(feats["feat"], metric)
        for ref in REFERENCES:
          for budget in (num_shots, 2 * num_shots):
            keys, _, _ = select_keyframes(
              len(cands), dist, reference=ref, threshold_mode="top", threshold=budget
            )
            r = shot_recall([cands[k].index for k in keys], clip["shot_ids"])
            for k, val in r.items():
              results.setdefault(f"{name}_{metric}_{ref}_top{budget}", {}).setdefault(k, []).append(val)
  return {m: {k: float(np.mean(v)) for k, v in d.items()} for m, d in results.items()}


def selection_method(embed_fn: Callable, **settings) -> Callable:
  """`fn(video) -> (key frame indices, detected shot starts or None)` of `select_video`."""

  def run(video):
    sel = select_video(video, embed_fn, **settings)
    return [sel["candidates"][k].index for k in sel["keys"]], sel["shot_starts"]

  return run


def pyscenedetect_method(video) -> tuple[list[int], list[int]]:
  """The peer: PySceneDetect's `detect(video, ContentDetector())` with its defaults, one key frame
  per detected scene (its middle frame; the middle of the video when it finds no cut)."""
  from scenedetect import ContentDetector, detect

  scenes = detect(str(video), ContentDetector())
  if not scenes:
    from aejax.data.video import count_frames

    return [count_frames(video) // 2], [0]
  spans = [(a.get_frames(), b.get_frames()) for a, b in scenes]
  return [(a + b) // 2 for a, b in spans], [a for a, _ in spans]


def evaluate_set(folder: str | Path, methods: Mapping[str, Callable]) -> dict[str, dict]:
  """Scores key-frame methods on a folder of videos with known shots (`aejax.keyframes.cutset`).

  Args:
    folder: a folder with videos and `shots.json`.
    methods: name -> `fn(video path) -> (key frame indices, shot starts or None)`.

  Returns:
    name -> `cutset.summarize` figures plus `seconds` (wall time of all its calls, decoding and
    compilation included) and `per_video` (`cutset.score_keyframes` of each video).
  """
  from aejax.keyframes.cutset import load_set, score_keyframes, summarize

  entries = load_set(folder)
  results = {}
  for name, fn in methods.items():
    per_video, seconds = [], 0.0
    for path, entry in entries.items():
      t0 = time.perf_counter()
      keys, cuts = fn(path)
      seconds += time.perf_counter() - t0
      per_video.append({"video": Path(path).name, **score_keyframes(keys, entry, cut_frames=cuts)})
    results[name] = {**summarize(per_video), "seconds": round(seconds, 2), "per_video": per_video}
    print(
      f"{name}: "
      + ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in results[name].items()
        if k != "per_video"
      )
    )
  return results
