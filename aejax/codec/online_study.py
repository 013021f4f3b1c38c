"""Online learning studies: a video or camera through `aejax.codec.online.run_online` with its
outputs (decoded video, per-frame CSV, plot, TensorBoard, summary), and OVAL's claim tested at
equal total bytes against the frozen model's rate–distortion curve (`online_vs_frozen`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aejax.codec.convert import convert_frames
from aejax.codec.latent import LatentCodec
from aejax.codec.online import OnlineConfig, run_online
from aejax.codec.report import quality_at_rate
from aejax.data.video import VideoReader, camera_frames, iter_frames
from aejax.io import write_json
from aejax.models.oval import OVAL
from aejax.train.writer import Writer
from aejax.viz import pyplot, save_figure


def plot_online(summary: dict, path, title: str = "") -> Path:
  """Per-frame MAE of the online and the frozen model, with decoder updates marked."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(10, 4))
  frozen, online = summary["per_frame_frozen_mae"], summary["per_frame_mae"]
  ax.plot(frozen, label=f"frozen (mean {frozen.mean():.4f})", lw=1)
  ax.plot(online, label=f"online (mean {online.mean():.4f})", lw=1)
  for j, f in enumerate(summary["update_frames"]):
    ax.axvline(f, color="tab:red", alpha=0.25, lw=0.8, label="decoder update" if j == 0 else None)
  ax.set_xlabel("frame")
  ax.set_ylabel("MAE (RGB, [0, 1])")
  ax.set_title(title or "online vs frozen")
  ax.legend()
  return save_figure(fig, path)


def run_online_mode(
  model: OVAL,
  params,
  out_dir,
  *,
  cfg: OnlineConfig,
  latent: LatentCodec,
  video=None,
  camera: int | None = None,
  max_frames: int | None = None,
  out_file=None,
  model_config: dict | None = None,
) -> dict:
  """Online learning on a video file or a camera: decoded video, per-frame CSV, plot, TensorBoard.

  Args:
    model, params: the OVAL model and its starting parameters.
    out_dir: where `decoded.mp4`, `frames.csv`, `online.png`, `summary.json` and TensorBoard go.
    cfg: the online settings; latent: how each frame's latent is sent.
    video: an input video file (its fps drives the clock; 15 when it reports none), or
    camera: a camera index (15 fps clock).
    max_frames: stop after this many frames (None: the whole stream).
    out_file, model_config: also write the stream (with its decoder updates) as an `.aejx` file.

  Returns:
    The JSON-able summary (means, updates, `mae_reduction` against the frozen model, `outputs`).
  """
  if video:
    with VideoReader(video) as r:
      fps = r.fps or 15.0
    frames = iter_frames(video, max_frames)
  elif camera is not None:
    fps, frames = 15.0, camera_frames(camera, max_frames)
  else:
    raise ValueError("online needs --video IN or --camera N")
  out_dir = Path(out_dir)
  writer = Writer(out_dir)
  try:
    s = run_online(
      frames,
      model,
      params,
      cfg,
      latent,
      fps=fps,
      out_video=out_dir / "decoded.mp4",
      csv_path=out_dir / "frames.csv",
      scalars=lambda i, d: writer.scalars(i, {f"online/{k}": v for k, v in d.items()}),
      out_file=out_file,
      model_config=model_config,
    )
  finally:
    writer.close()
  plot_online(
    s, out_dir / "online.png", title=f"{Path(video).name if video else 'camera'}: {s['updates']} updates"
  )
  summary = {
    k: (float(v) if isinstance(v, (float, np.floating)) else v)
    for k, v in s.items()
    if not isinstance(v, np.ndarray)
  }
  summary["mae_reduction"] = 1.0 - summary["mae"] / summary["frozen_mae"]
  summary["outputs"] = str(out_dir)
  write_json(out_dir / "summary.json", summary)
  return summary


def online_vs_frozen(
  model: OVAL,
  params,
  frames: np.ndarray,
  *,
  fps: float,
  cfg: OnlineConfig,
  latent: LatentCodec,
  frozen_codecs,
  batch_size: int = 16,
) -> dict:
  """OVAL's claim at equal total bytes: the online run (latents + charged decoder updates) against
  the frozen model's rate–distortion curve over `frozen_codecs` (e.g. finer quantiser steps).

  Returns the online summary's rate and quality (`bpp` from total bytes sent), the frozen curve's
  rows, and `frozen_psnr_at_equal_bytes`: the best frozen PSNR within the online run's total bpp
  (`report.quality_at_rate`: the curve's Pareto front in log bpp; NaN outside its rates), with
  `gain_db` = online PSNR - that.
  """
  s = run_online(iter(frames), model, params, cfg, latent, fps=fps)
  curve = []
  for c in frozen_codecs:
    f = convert_frames(
      model, params, frames, color_space=cfg.color_space, batch_size=batch_size, latent=c, with_ms_ssim=False
    )["summary"]
    curve.append({"setting": c.name, "bpp": f["bpp"], "psnr": f["psnr"]})
  at = quality_at_rate(curve, s["bpp"])
  keys = (
    "frames",
    "updates",
    "update_bytes_total",
    "bytes_total",
    "frozen_bytes_total",
    "ratio",
    "frozen_ratio",
    "bpp",
    "frozen_bpp",
    "psnr",
    "frozen_psnr",
    "mae",
    "frozen_mae",
  )
  return {
    **{k: s[k] for k in keys},
    "latent": latent.name,
    "frozen_curve": curve,
    "frozen_psnr_at_equal_bytes": at,
    "gain_db": s["psnr"] - at,
    "update_frames": [int(v) for v in s["update_frames"]],
  }
