"""The OVAL applications behind `experiments/oval.py`: streaming conversion, the R–D study and
the online run (kept apart so the experiment file stays a readable map)."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from aejax import compression as comp
from aejax.data.transforms import convert_color, convert_color_inverse
from aejax.models.oval import OVAL, latent_shape, split_params
from aejax.online import OnlineConfig, VideoSink, plot_online, run_online
from aejax.viz import save_image


def latent_codec(config) -> comp.LatentCodec:
  c = config.codec
  return comp.LatentCodec(c.precision, channels=c.channels or None, step=c.step or None,
                          entropy=c.entropy)


class FrameCodec:
  """Jitted encode/decode of fixed-size batches of RGB uint8 frames, carrying LSTM state."""

  def __init__(self, model: OVAL, params, color_space: str, size, batch: int):
    self.model, self.size, self.batch = model, tuple(size), batch
    self.enc_params, self.dec_params = split_params(params)
    lstm = model.use_lstm

    def encode(p, frames, carry):  # [B, H, W, 3] uint8
      x = convert_color(frames.astype(jnp.float32) / 255.0, color_space)
      z, carry = model.apply({"params": p}, x[None] if lstm else x, carry=carry, method=OVAL.encode)
      return (z[0] if lstm else z), carry

    def decode(p, z, carry):
      y, carry = model.apply({"params": p}, z[None] if lstm else z, self.size, carry=carry,
                             method=OVAL.decode)
      rgb = jnp.clip(convert_color_inverse(y[0] if lstm else y, color_space), 0.0, 1.0)
      return jnp.round(rgb * 255.0).astype(jnp.uint8), carry

    self._enc, self._dec = jax.jit(encode), jax.jit(decode)
    h, w, c = latent_shape(size, model.features, model.kernels, model.strides)
    zero = jnp.zeros((1, h, w, c), jnp.float32)
    self.enc_carry = self.dec_carry = (zero, zero) if lstm else None

  def _pad(self, x):
    """Pads a short last batch to one shape (one compilation); the LSTM's carry must not see
    padding, so LSTM batches run at their own length."""
    n = len(x)
    if n < self.batch and not self.model.use_lstm:
      x = np.concatenate([x, np.repeat(x[-1:], self.batch - n, 0)])
    return x, n

  def encode(self, frames: np.ndarray) -> np.ndarray:
    x, n = self._pad(frames)
    z, self.enc_carry = self._enc(self.enc_params, x, self.enc_carry)
    return np.asarray(z)[:n]

  def decode(self, z: np.ndarray) -> np.ndarray:
    x, n = self._pad(z)
    y, self.dec_carry = self._dec(self.dec_params, x, self.dec_carry)
    return np.asarray(y)[:n]


def _batches(frames: Iterable[np.ndarray], size: int):
  buf = []
  for f in frames:
    buf.append(f)
    if len(buf) == size:
      yield np.stack(buf)
      buf = []
  if buf:
    yield np.stack(buf)


def convert_frames(model, params, config, frames: Iterable[np.ndarray], *, fps: float = 15.0,
                   out_video=None, side_by_side: bool = False, with_ms_ssim: bool = True,
                   report_dir=None, name: str = "convert", latent: comp.LatentCodec | None = None):
  """Streams frames through encoder → latent codec → decoder; writes video, CSV and plot.

  Returns {"summary": means and timings, "rows": per-frame dicts}.
  """
  latent = latent or latent_codec(config)
  it = _batches(frames, config.convert.batch_size)
  rows, sink, codec = [], None, None
  t_codec, t_all, n_timed = 0.0, time.perf_counter(), 0
  for bi, batch in enumerate(it):
    if codec is None:
      h, w = batch.shape[1:3]
      codec = FrameCodec(model, params, config.data.color_space, (h, w), config.convert.batch_size)
      if out_video:
        sink = VideoSink(out_video, fps, (h, w * 3) if side_by_side else (h, w))
    t0 = time.perf_counter()
    zhat, nbytes = latent.roundtrip(codec.encode(batch))
    dec = codec.decode(zhat)
    if bi > 0:  # the first batch compiles
      t_codec += time.perf_counter() - t0
      n_timed += len(batch)
    q = comp.quality(batch, dec, with_ms_ssim=with_ms_ssim)
    if sink is not None:
      shown = np.concatenate([batch, dec, comp.error_heatmap(batch, dec)], 2) if side_by_side else dec
      for f in shown:
        sink.write(f)
    for j in range(len(batch)):
      rows.append({"frame": len(rows), "bytes": int(nbytes[j]),
                   "ratio": float(comp.compression_ratio(nbytes[j], h, w)),
                   "bpp": float(comp.bits_per_pixel(nbytes[j], h, w)),
                   **{k: float(v[j]) for k, v in q.items()}})
  if sink is not None:
    sink.close()
  if not rows:
    raise ValueError("convert: no frames")
  total = time.perf_counter() - t_all
  mean = lambda k: float(np.mean([r[k] for r in rows]))
  summary = {"frames": len(rows), "size": [int(h), int(w)], "latent": latent.name,
             "bytes_per_frame": mean("bytes"), "ratio": float(comp.compression_ratio(mean("bytes"), h, w)),
             "bpp": mean("bpp"), "psnr": mean("psnr"), "mae": mean("mae"),
             "codec_fps": n_timed / t_codec if t_codec > 0 else float("nan"),
             "total_fps": len(rows) / total}
  if with_ms_ssim:
    summary["ms_ssim"] = mean("ms_ssim")
  if report_dir is not None:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    with open(report_dir / f"{name}_frames.csv", "w", newline="") as f:
      wr = csv.DictWriter(f, fieldnames=list(rows[0]))
      wr.writeheader()
      wr.writerows(rows)
    _plot_frames(rows, report_dir / f"{name}_frames.png", f"{name}: {latent.name}")
    (report_dir / f"{name}_summary.json").write_text(json.dumps(summary, indent=2))
  return {"summary": summary, "rows": rows}


def _plot_frames(rows, path, title):
  plt = comp.pyplot()
  keys = [k for k in ("psnr", "ms_ssim", "mae", "bytes") if k in rows[0]]
  fig, axes = plt.subplots(len(keys), 1, figsize=(9, 2.2 * len(keys)), sharex=True)
  for ax, k in zip(np.atleast_1d(axes), keys):
    ax.plot([r[k] for r in rows], lw=1)
    ax.set_ylabel(k)
    ax.grid(alpha=0.3)
  np.atleast_1d(axes)[-1].set_xlabel("frame")
  fig.suptitle(title)
  comp.save_figure(fig, path, dpi=100)


RD_CODECS = (comp.LatentCodec("float32"), comp.LatentCodec("float16"), comp.LatentCodec("int8"),
             comp.LatentCodec("int8", entropy="zlib"), comp.LatentCodec("int4"),
             comp.LatentCodec("int4", entropy="zlib"), comp.LatentCodec("int8", channels=6),
             comp.LatentCodec("int4", channels=5, entropy="zlib"),
             comp.LatentCodec("int4", channels=3, entropy="zlib"))


def rd_study(model, params, config, frames: np.ndarray, out_dir, title: str = "") -> dict:
  """Latent codecs vs baselines on `frames`: rd.csv, rd.md, rd.png and a comparison picture."""
  out_dir = Path(out_dir)
  rows = []
  for codec in RD_CODECS:
    res = convert_frames(model, params, config, frames, with_ms_ssim=True, latent=codec)
    s = res["summary"]
    method = "oval" if codec.channels is None else "oval (channels dropped)"
    rows.append({"method": method, "setting": codec.name, "bytes_per_frame": s["bytes_per_frame"],
                 "ratio": s["ratio"], "bpp": s["bpp"], "psnr": s["psnr"], "ms_ssim": s["ms_ssim"],
                 "mae": s["mae"]})
  targets = [r["bytes_per_frame"] for r in rows if r["setting"] in ("float16", "int8", "int4-zlib")]
  rd = config.rd
  rows += comp.baseline_rows(frames, bits=tuple(rd.bits), factors=tuple(rd.factors),
                             jpeg_qualities=tuple(rd.jpeg_qualities), jpeg_targets=targets)
  comp.write_rows(rows, out_dir / "rd.csv", out_dir / "rd.md", title=f"rate-distortion: {title}")
  comp.plot_rd(rows, out_dir / "rd.png", title=f"{title} ({len(frames)} frames, {frames.shape[2]}x"
                                               f"{frames.shape[1]})")
  mid = frames[len(frames) // 2:len(frames) // 2 + 1]
  fcodec = FrameCodec(model, params, config.data.color_space, mid.shape[1:3], 1)
  zhat, nb = comp.LatentCodec("int8").roundtrip(fcodec.encode(mid))
  oval = fcodec.decode(zhat)
  jpg, jb, jq = comp.jpeg_at_bytes(mid, nb)
  pic = np.concatenate([np.concatenate([mid[0], oval[0]], 1),
                        np.concatenate([jpg[0], comp.error_heatmap(mid, oval)[0]], 1)], 0)
  save_image(out_dir / "compare_int8_vs_jpeg.png", pic)
  return {"rows": len(rows), "table": str(out_dir / "rd.md"), "plot": str(out_dir / "rd.png"),
          "picture": f"{out_dir / 'compare_int8_vs_jpeg.png'} (top: original | OVAL int8 {nb[0]} B; "
                     f"bottom: JPEG q{jq[0]} {jb[0]} B | OVAL error)"}


def _camera_frames(index: int, max_frames: int):
  import cv2

  cap = cv2.VideoCapture(index)
  if not cap.isOpened():
    raise ValueError(f"camera {index}: OpenCV cannot open it")
  n = 0
  try:
    while not max_frames or n < max_frames:
      ok, f = cap.read()
      if not ok:
        break
      n += 1
      yield cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
  finally:
    cap.release()


def _video_frames(path, max_frames: int):
  from aejax.data.video import VideoReader

  with VideoReader(path) as r:
    for i, f in enumerate(r):
      if max_frames and i >= max_frames:
        break
      yield f


def run_online_mode(model, params, config, out_dir, *, video=None, camera: int = -1) -> dict:
  """The `online` mode: decoded video, per-frame CSV, plot, TensorBoard and a summary."""
  from aejax.data.video import VideoReader
  from aejax.train import Writer

  oc = config.online
  if video:
    with VideoReader(video) as r:
      fps = r.fps or 15.0
    frames = _video_frames(video, oc.max_frames)
  elif camera is not None and camera >= 0:
    fps, frames = 15.0, _camera_frames(camera, oc.max_frames)
  else:
    raise ValueError("online needs --video IN or --camera N")
  cfg = OnlineConfig(buffer_size=oc.buffer_size, lr=oc.lr, loss=oc.loss, threshold=oc.threshold,
                     train_every=oc.train_every, update_dtype=oc.update_dtype,
                     color_space=config.data.color_space, ms_ssim=oc.ms_ssim)
  out_dir = Path(out_dir)
  writer = Writer(out_dir)
  try:
    s = run_online(frames, model, params, cfg, latent_codec(config), fps=fps,
                   out_video=out_dir / "decoded.mp4", csv_path=out_dir / "frames.csv",
                   scalars=lambda i, d: writer.scalars(i, {f"online/{k}": v for k, v in d.items()}))
  finally:
    writer.close()
  plot_online(s, out_dir / "online.png", title=f"{Path(video).name if video else 'camera'}: "
                                              f"{s['updates']} updates")
  summary = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in s.items()
             if not isinstance(v, np.ndarray)}
  summary["mae_reduction"] = 1.0 - summary["mae"] / summary["frozen_mae"]
  summary["outputs"] = str(out_dir)
  (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
  return summary
