"""Outputs of key-frame extraction: key frames as PNG, key clips as MP4, a timeline plot, a contact
sheet and `keyframes.json`.

See `aejax.keyframes.select` for the selection algorithm (Best-Frame-Retrieval, Chen et al. 2021).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from aejax.data.video import VideoWriter, open_video
from aejax.keyframes.select import Candidate
from aejax.viz import make_grid, pyplot, save_figure, save_image


def _thumb(rgb: np.ndarray, width: int) -> np.ndarray:
  h, w = rgb.shape[:2]
  tw = min(width, w)
  return cv2.resize(rgb, (tw, max(1, round(h * tw / w))), interpolation=cv2.INTER_AREA)


def write_outputs_pass(
  path: str | Path,
  fps: float,
  out_dir: Path,
  keyframes: Sequence[int],
  clips: Sequence[dict],
  write_clips: bool = True,
  thumb_width: int = 240,
  frames: dict[int, np.ndarray] | None = None,
) -> dict[int, np.ndarray]:
  """Reads the video once more: key frames as PNG (`keyframes/`), clips as MP4 at `fps`
  (`clips/<clip["file"]>`, mp4v, each written atomically); returns {frame index: thumbnail RGB}
  for the contact sheet. Without clips only the key frames not in `frames` ({frame index: RGB},
  kept while scanning) are read (`VideoReader.read`, seeking: the same pixels as sequential
  decoding); with clips the video is streamed once."""
  keys = set(int(k) for k in keyframes)
  ends = [c["end"] for c in clips] if write_clips else []
  last_needed = max([*keys, *(e - 1 for e in ends)], default=-1)
  thumbs: dict[int, np.ndarray] = {}
  (out_dir / "keyframes").mkdir(parents=True, exist_ok=True)
  if last_needed < 0:
    return thumbs
  if not write_clips:  # the key frames only: seeking decodes from the nearest key frame of the codec
    got = {i: f for i, f in (frames or {}).items() if i in keys}
    missing = sorted(keys - set(got))
    if missing:
      with open_video(path, fps) as reader:
        got.update(zip(missing, reader.read(missing)))
    with ThreadPoolExecutor(2) as pool:  # OpenCV's PNG encoder releases the GIL
      list(pool.map(lambda i: save_image(out_dir / "keyframes" / f"key_{i:06d}.png", got[i]), sorted(keys)))
    return {i: _thumb(got[i], thumb_width) for i in sorted(keys)}
  with open_video(path, fps) as reader:
    stream = reader.stream(keep=lambda i: write_clips or i in keys, max_frames=last_needed + 1)
    for c, frames in itertools.groupby(stream, key=lambda f: bisect.bisect_right(ends, f[0])):
      writer = VideoWriter(out_dir / "clips" / clips[c]["file"], fps) if c < len(ends) else None
      with writer or contextlib.nullcontext():  # a clip is renamed into place when complete
        for i, rgb in frames:
          if i in keys:
            save_image(out_dir / "keyframes" / f"key_{i:06d}.png", rgb)
            thumbs[i] = _thumb(rgb, thumb_width)
          if writer is not None:
            writer.write(rgb)
  return thumbs


def contact_sheet(path: Path, thumbs: dict[int, np.ndarray], fps: float, ncol: int = 4) -> Path:
  """A grid of the key frames, each labelled with its time and frame index."""
  if not thumbs:
    raise ValueError(f"{path}: no key frames to show")
  ims = []
  for idx in sorted(thumbs):
    im = thumbs[idx].copy()
    label = f"{idx / fps:6.1f}s  #{idx}"
    cv2.rectangle(im, (0, 0), (im.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(im, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    ims.append(im)
  return save_image(path, make_grid(ims, ncol=min(ncol, len(ims))))


def timeline_plot(
  path: Path,
  times: np.ndarray,
  scores: np.ndarray,
  threshold: float,
  key_positions: Sequence[int],
  sharpness: np.ndarray | None = None,
  title: str = "",
  clip_starts: Sequence[float] = (),
) -> Path:
  """Score over time with the threshold, the chosen key frames and (optionally) sharpness."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(10, 3.6), dpi=110)
  ax.plot(times, scores, "-o", ms=3, lw=1, color="tab:blue", label="novelty score")
  if np.isfinite(threshold):
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.4g}")
  kp = np.asarray(list(key_positions), int)
  if len(kp):
    y = np.where(np.isfinite(scores[kp]), scores[kp], np.nanmin(scores) if np.isfinite(scores).any() else 0)
    ax.scatter(
      times[kp],
      y,
      s=60,
      facecolors="none",
      edgecolors="tab:red",
      lw=1.5,
      zorder=3,
      label=f"key frames ({len(kp)})",
    )
  for t in clip_starts:
    ax.axvline(t, color="0.75", lw=0.8, zorder=0)
  ax.set_xlabel("time (s)")
  ax.set_ylabel("distance to reference")
  if sharpness is not None and len(sharpness):
    ax2 = ax.twinx()
    ax2.plot(times, sharpness, color="tab:green", lw=0.8, alpha=0.5)
    ax2.set_ylabel("sharpness (var. of Laplacian)", color="tab:green")
  ax.set_title(title, fontsize=9)
  ax.legend(loc="upper left", fontsize=8)
  return save_figure(fig, path, dpi=110)


def _finite(v: float) -> float | None:
  return float(v) if np.isfinite(v) else None


def write_outputs(
  out: Path,
  video: str | Path,
  *,
  fps: float,
  num_frames: int,
  size: Sequence[int],
  candidates: Sequence[Candidate],
  keys: Sequence[int],
  scores: np.ndarray,
  threshold: float,
  clips: list[dict],
  settings: dict,
  write_clips: bool = True,
  title: str = "",
  frames: dict[int, np.ndarray] | None = None,
) -> dict:
  """Every output of one extraction in `out`: key-frame PNGs, clips (named and timed here),
  `timeline.png`, `contact_sheet.png`; returns the `keyframes.json` record (the caller adds its
  timings and writes it).

  Args:
    out: output folder.
    video: the source video (read once more for the PNGs and clips).
    fps: the frame rate used for times and clips.
    num_frames: frames in the video.
    size: the frame size (H, W).
    candidates: the sharpest frame of each second, in time order.
    keys: positions in `candidates` of the key frames.
    scores: [len(candidates)] novelty scores (NaN for the first).
    threshold: the distance threshold used.
    clips: `segment_clips` output; `file`, `start_time` and `end_time` are added in place.
    settings: the extraction settings, recorded as they are.
    write_clips: write the clips (else `clips` is recorded empty).
    title: the timeline plot's title.
    frames: {frame index: RGB} of key frames already decoded (`write_outputs_pass`).
  """
  for i, c in enumerate(clips):
    c.update(file=f"clip_{i:03d}.mp4", start_time=c["start"] / fps, end_time=c["end"] / fps)
  key_cands = [candidates[k] for k in keys]
  key_frames = [c.index for c in key_cands]
  # The plot (Python, holding the GIL) is drawn while the second decoding pass (releasing it) runs.
  plot = threading.Thread(
    target=timeline_plot,
    args=(
      out / "timeline.png",
      np.array([c.time for c in candidates]),
      scores,
      threshold,
      keys,
      np.array([c.sharpness for c in candidates]),
    ),
    kwargs=dict(title=title, clip_starts=[c["start_time"] for c in clips]),
  )
  out.mkdir(parents=True, exist_ok=True)
  plot.start()
  try:
    thumbs = write_outputs_pass(video, fps, out, key_frames, clips, write_clips, frames=frames)
  finally:
    plot.join()
  contact_sheet(out / "contact_sheet.png", thumbs, fps)
  return {
    "video": str(video),
    "fps": fps,
    "num_frames": num_frames,
    "size": list(size),
    "settings": settings,
    "threshold_value": _finite(threshold),
    "model_size": None if settings.get("model_size") is None else list(settings["model_size"]),
    "keyframes": [
      {
        "frame": c.index,
        "time": c.time,
        "score": _finite(scores[k]),
        "sharpness": c.sharpness,
        "png": f"keyframes/key_{c.index:06d}.png",
      }
      for k, c in zip(keys, key_cands)
    ],
    "candidates": [
      {"frame": c.index, "time": c.time, "score": _finite(s), "sharpness": c.sharpness}
      for c, s in zip(candidates, scores)
    ],
    "clips": clips if write_clips else [],
  }
