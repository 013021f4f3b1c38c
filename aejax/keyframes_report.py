"""Video I/O and outputs of key-frame extraction: sampled-frame stream, clip/PNG writer, plots.

See `aejax/keyframes.py` for the selection algorithm (Best-Frame-Retrieval, Chen et al. 2021).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from aejax.keyframes import is_sampled
from aejax.viz import make_grid, save_image

log = logging.getLogger(__name__)


def open_video(path: str | Path, fps: float = 0.0) -> tuple[cv2.VideoCapture, float, int, tuple[int, int]]:
  """Opens a video: (capture, fps, estimated frame count, (H, W)); `fps` > 0 overrides the file's.

  Raises FileNotFoundError / ValueError (one line naming the file) for missing or unreadable files
  and for a file that reports no frame rate when none is given.
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: video file not found")
  cap = cv2.VideoCapture(str(path))
  if not cap.isOpened():
    raise ValueError(f"{path}: OpenCV cannot open this video (corrupt or unsupported codec)")
  file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
  fps = float(fps) if fps and fps > 0 else file_fps
  if not (fps > 0 and np.isfinite(fps)):
    cap.release()
    raise ValueError(f"{path}: the file reports no frame rate; pass --config.extract.fps")
  size = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
  return cap, fps, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), size


def stream_sampled(cap: cv2.VideoCapture, fps: float, rate: float, counter: list,
                   progress=None) -> Iterator[tuple[int, np.ndarray]]:
  """Sampled `(index, RGB frame)` from an open capture; unsampled frames are only grabbed.

  `counter[0]` ends as the number of decodable frames; `progress.update(1)` per frame if given.
  """
  i = 0
  while cap.grab():
    if is_sampled(i, fps, rate):
      ok, frame = cap.retrieve()
      if ok and frame is not None:
        yield i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    i += 1
    counter[0] = i
    if progress is not None:
      progress.update(1)


def write_outputs_pass(path: str | Path, fps: float, out_dir: Path, keyframes: Sequence[int],
                       clips: Sequence[dict], write_clips: bool = True,
                       thumb_width: int = 240) -> dict[int, np.ndarray]:
  """Reads the video once more: key frames as PNG (`keyframes/`), clips as MP4 at the source fps
  (`clips/`, mp4v); returns {frame index: thumbnail RGB} for the contact sheet."""
  cap = cv2.VideoCapture(str(path))
  if not cap.isOpened():
    raise ValueError(f"{path}: OpenCV cannot open this video")
  keys = set(int(k) for k in keyframes)
  ends = [c["end"] - 1 for c in clips] if write_clips else []
  last_needed = max([*keys, *ends], default=-1)
  thumbs: dict[int, np.ndarray] = {}
  writer, clip_i = None, 0
  (out_dir / "keyframes").mkdir(parents=True, exist_ok=True)
  i = 0
  try:
    while i <= last_needed:
      if i in keys or write_clips:
        ok, bgr = cap.read()
      else:
        ok, bgr = cap.grab(), None
      if not ok:
        break
      if i in keys:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        save_image(out_dir / "keyframes" / f"key_{i:06d}.png", rgb)
        h, w = rgb.shape[:2]
        tw = min(thumb_width, w)
        thumbs[i] = cv2.resize(rgb, (tw, max(1, round(h * tw / w))), interpolation=cv2.INTER_AREA)
      if write_clips:
        while clip_i < len(clips) and i >= clips[clip_i]["end"]:
          clip_i += 1
          if writer is not None:
            writer.release()
            writer = None
        if clip_i < len(clips):
          if writer is None:
            clip_path = out_dir / "clips" / clips[clip_i]["file"]
            clip_path.parent.mkdir(parents=True, exist_ok=True)
            h, w = bgr.shape[:2]
            writer = cv2.VideoWriter(str(clip_path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
            if not writer.isOpened():
              raise ValueError(f"{clip_path}: OpenCV VideoWriter did not open (mp4v)")
          writer.write(bgr)
      i += 1
  finally:
    cap.release()
    if writer is not None:
      writer.release()
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


def timeline_plot(path: Path, times: np.ndarray, scores: np.ndarray, threshold: float,
                  key_positions: Sequence[int], sharpness: np.ndarray | None = None,
                  title: str = "", clip_starts: Sequence[float] = ()) -> Path:
  """Score over time with the threshold, the chosen key frames and (optionally) sharpness."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(10, 3.6), dpi=110)
  ax.plot(times, scores, "-o", ms=3, lw=1, color="tab:blue", label="novelty score")
  if np.isfinite(threshold):
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.4g}")
  kp = np.asarray(list(key_positions), int)
  if len(kp):
    y = np.where(np.isfinite(scores[kp]), scores[kp], np.nanmin(scores) if np.isfinite(scores).any() else 0)
    ax.scatter(times[kp], y, s=60, facecolors="none", edgecolors="tab:red", lw=1.5, zorder=3,
               label=f"key frames ({len(kp)})")
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
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path
