"""The OVAL codec's applications on an experiment config (`experiments/oval.py`).

Each maps the config's sections (`data.color_space`, `model`, `codec` (a `LatentCodec`), `convert`,
`eval`, `rd`, `online`) onto one `aejax.codec` call: conversion, the post-training report, the
rate–distortion study, `.aejx` encoding and online learning.
"""

from __future__ import annotations

from pathlib import Path

from aejax.codec.convert import convert_frames, rd_study
from aejax.codec.files import encode_video, learned_codec
from aejax.codec.latent import LatentCodec
from aejax.codec.online import OnlineConfig
from aejax.codec.online_study import run_online_mode
from aejax.data.video import VideoReader, iter_frames


def latent_codec(config, model, params) -> LatentCodec:
  """The `LatentCodec` of `config.codec` for this model (entropy "learned": its density's table,
  `learned_codec`)."""
  return learned_codec(LatentCodec(**config.codec), model, params)


def video_info(video, max_frames: int | None = None) -> tuple[float, int]:
  """(fps, expected frame count) of a video file from its header (fps 25 when it states none; the
  count, a progress hint, is 0 when unknown and at most `max_frames`)."""
  with VideoReader(video) as r:
    fps, n = r.fps or 25.0, r.container_frames
  return fps, min(n, max_frames) if max_frames and n else (max_frames or n)


def convert(model, params, config, frames, **kw) -> dict:
  """`convert_frames` with the config's colour space, latent codec and (unless given)
  `convert.batch_size`; `kw` as `convert_frames`."""
  kw.setdefault("batch_size", config.convert.batch_size)
  latent = latent_codec(config, model, params)
  return convert_frames(model, params, frames, color_space=config.data.color_space, latent=latent, **kw)


def rd(model, params, config, frames, out_dir, *, batch_size: int | None = None, title: str = "") -> dict:
  """`rd_study` against the baselines of `config.rd` (bit cuts, resize factors, JPEG qualities);
  `frames` an array or a function that reads the video again (streamed)."""
  kw = {k: v for k, v in config.rd.items() if k != "max_frames"}  # the baselines
  kw.update(color_space=config.data.color_space, batch_size=batch_size or config.convert.batch_size)
  return rd_study(model, params, frames, out_dir, title=title, **kw)


def report(model, params, config, frames, out: Path) -> dict:
  """The trained model on the validation frames: original | decoded | error as an H.264 MP4, and
  the R–D table and plot of its latent codecs against bit cutting, resizing and JPEG."""
  out, bs = Path(out), config.eval.batch_size
  video = out / "side_by_side.mp4"
  kw = dict(fps=15.0, out_video=video, side_by_side=True, report_dir=out, name="valid")
  s = convert(model, params, config, frames, batch_size=bs, **kw)["summary"]
  res = rd(model, params, config, frames, out, batch_size=bs, title="validation video")
  return {"valid_psnr": s["psnr"], "side_by_side": str(video), "rd_plot": res["plot"]}


def encode(model, params, config, video, out: Path, source: dict) -> dict:
  """Encodes the video file `video` into the `.aejx` file `out` (`encode_video`, streamed), with a
  per-frame CSV and summary beside it."""
  fps, total = video_info(video, config.convert.max_frames)
  return encode_video(
    model,
    params,
    iter_frames(video, config.convert.max_frames),
    out,
    color_space=config.data.color_space,
    batch_size=config.convert.batch_size,
    latent=latent_codec(config, model, params),
    fps=fps,
    model_config=config.model.to_dict(),
    source=source,
    with_ms_ssim=config.convert.ms_ssim,
    report_dir=Path(out).parent,
    name=Path(out).stem,
    total_frames=total,
  )


def online(model, params, config, out_dir, *, video=None, camera: int | None = None, out_file=None) -> dict:
  """Online learning (`config.online`) on a video file or a camera (`run_online_mode`); with
  `out_file` the stream is also written as an `.aejx` file with its decoder updates."""
  settings = {k: v for k, v in config.online.items() if k != "max_frames"}
  return run_online_mode(
    model,
    params,
    out_dir,
    cfg=OnlineConfig(**settings, color_space=config.data.color_space),
    latent=latent_codec(config, model, params),
    video=video,
    camera=camera,
    max_frames=config.online.max_frames,
    out_file=out_file,
    model_config=config.model.to_dict(),
  )
