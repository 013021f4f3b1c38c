"""Video conversion with a learned frame codec (OVAL): encoder → latent bytes → decoder.

`FrameCodec` runs the model's two halves over batches of RGB uint8 frames (carrying the ConvLSTM
state from batch to batch when the model has one); `convert_frames` streams a video through it and
a `LatentCodec`, writing the decoded (or side-by-side) video, per-frame CSV, plot and summary;
`rd_study` compares latent codecs with the classic baselines at matched bytes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from aejax.codec.baselines import baseline_rows, jpeg_at_bytes
from aejax.codec.latent import LatentCodec, bits_per_pixel, compression_ratio
from aejax.codec.report import error_heatmap, plot_frames, plot_rd, quality, write_csv, write_rows
from aejax.data.transforms import convert_color, convert_color_inverse
from aejax.data.video import VideoWriter
from aejax.evaluate import map_batches
from aejax.io import write_json
from aejax.models.oval import OVAL, latent_shape, split_params
from aejax.viz import save_image


def video_writer(path, fps: float, size) -> VideoWriter:
  """A streaming writer for the codec's output videos: browser-playable H.264 (libx264 through
  PyAV) for .mp4 files of even size, else the extension's default codec."""
  h, w = size
  h264 = Path(path).suffix.lower() == ".mp4" and h % 2 == 0 and w % 2 == 0
  return VideoWriter(path, fps, (h, w), codec="libx264" if h264 else None)


def frame_codec_fns(model: OVAL, color_space: str, size: Sequence[int]):
  """The model's jitted halves for frames of `size` (H, W) in `color_space`.

  Returns `encode(enc_params, frames, carry) -> (z, carry)` (frames [B, H, W, 3] uint8 RGB) and
  `decode(dec_params, z, carry) -> (frames, carry)` (uint8 RGB); `carry` is the ConvLSTM state
  (None without one), and each end holds only its half of the parameters (`split_params`). A model
  with the original's smaller output (`exact_output=False`, e.g. 351x471 for 360x480) has its
  last rows and columns replicated to the full frame, so every frame is measured at full size.
  """
  size, lstm = tuple(size), model.use_lstm

  def encode(p, frames, carry):  # [B, H, W, 3] uint8
    x = convert_color(frames.astype(jnp.float32) / 255.0, color_space)
    z, carry = model.apply({"params": p}, x[None] if lstm else x, carry=carry, method=OVAL.encode)
    return (z[0] if lstm else z), carry

  def decode(p, z, carry):
    y, carry = model.apply({"params": p}, z[None] if lstm else z, size, carry=carry, method=OVAL.decode)
    y = y[0] if lstm else y
    dh, dw = size[0] - y.shape[-3], size[1] - y.shape[-2]
    if dh or dw:  # the original's smaller output (exact_output=False): edges replicated to `size`
      y = jnp.pad(y, ((0, 0), (0, dh), (0, dw), (0, 0)), mode="edge")
    rgb = jnp.clip(convert_color_inverse(y, color_space), 0.0, 1.0)
    return jnp.round(rgb * 255.0).astype(jnp.uint8), carry

  return jax.jit(encode), jax.jit(decode)


class FrameCodec:
  """Jitted encode/decode of RGB uint8 frames in batches of `batch`, carrying the LSTM state.

  A short batch is padded to `batch` (one compilation) by `aejax.evaluate.map_batches`; with a
  ConvLSTM the carry must not see padding, so LSTM batches run at their own length.
  """

  def __init__(self, model: OVAL, params, color_space: str, size, batch: int):
    self.model, self.size, self.batch = model, tuple(size), batch
    self.enc_params, self.dec_params = split_params(params)
    self._enc, self._dec = frame_codec_fns(model, color_space, size)
    h, w, c = latent_shape(size, model.features, model.kernels, model.strides)
    zero = jnp.zeros((1, h, w, c), jnp.float32)
    self.carry = {"encode": (zero, zero), "decode": (zero, zero)} if model.use_lstm else {}

  def _run(self, half: str, fn, params, x: np.ndarray) -> np.ndarray:
    """`fn` over `x` in batches, carrying that half's LSTM state across calls."""

    def step(batch):
      y, carry = fn(params, batch, self.carry.get(half))
      if carry is not None:
        self.carry[half] = carry
      return y

    return map_batches(step, x, self.batch, pad=not self.model.use_lstm)

  def encode(self, frames: np.ndarray) -> np.ndarray:
    """Frames [N, H, W, 3] uint8 → latents [N, h, w, C] (host)."""
    return self._run("encode", self._enc, self.enc_params, frames)

  def decode(self, z: np.ndarray) -> np.ndarray:
    """Latents [N, h, w, C] → frames [N, H, W, 3] uint8 (host)."""
    return self._run("decode", self._dec, self.dec_params, z)


def _chunks(frames: Iterable[np.ndarray], size: int):
  """Stacks a stream of frames into batches of `size` (the last may be shorter)."""
  buf = []
  for f in frames:
    buf.append(f)
    if len(buf) == size:
      yield np.stack(buf)
      buf = []
  if buf:
    yield np.stack(buf)


def convert_frames(
  model: OVAL,
  params,
  frames: Iterable[np.ndarray],
  *,
  color_space: str,
  batch_size: int,
  latent: LatentCodec,
  fps: float = 15.0,
  out_video=None,
  side_by_side: bool = False,
  with_ms_ssim: bool = True,
  report_dir=None,
  name: str = "convert",
) -> dict:
  """Streams frames through encoder → latent codec → decoder; writes video, CSV and plot.

  Args:
    model, params: the OVAL model and its parameters.
    frames: RGB uint8 frames [H, W, 3] (an array or any iterable; consumed in batches).
    color_space: the model's colour space; batch_size: frames per jitted call.
    latent: how each frame's latent is sent (its bytes are the rate).
    fps: the output video's frame rate; out_video: where to write it (None: not written).
    side_by_side: write original | decoded | error heat map instead of the decoded frames.
    with_ms_ssim: also measure MS-SSIM per frame.
    report_dir, name: where `<name>_frames.csv`, `<name>_frames.png` and `<name>_summary.json` go
      (None: not written).

  Returns:
    {"summary": means and timings, "rows": per-frame dicts}.
  """
  rows, sink, codec = [], None, None
  sender, receiver = latent.stream(), latent.stream()  # temporal prediction runs across batches
  t_codec, t_all, n_timed = 0.0, time.perf_counter(), 0
  try:
    for bi, batch in enumerate(_chunks(frames, batch_size)):
      if codec is None:
        h, w = batch.shape[1:3]
        codec = FrameCodec(model, params, color_space, (h, w), batch_size)
        if out_video:
          sink = video_writer(out_video, fps, (h, w * 3) if side_by_side else (h, w))
      t0 = time.perf_counter()
      zhat, nbytes = latent.roundtrip(codec.encode(batch), sender, receiver)
      dec = codec.decode(zhat)
      if bi > 0:  # the first batch compiles
        t_codec += time.perf_counter() - t0
        n_timed += len(batch)
      q = quality(batch, dec, with_ms_ssim=with_ms_ssim)
      if sink is not None:
        for f in np.concatenate([batch, dec, error_heatmap(batch, dec)], 2) if side_by_side else dec:
          sink.write(f)
      for j in range(len(batch)):
        rows.append(
          {
            "frame": len(rows),
            "bytes": int(nbytes[j]),
            "ratio": float(compression_ratio(nbytes[j], h, w)),
            "bpp": float(bits_per_pixel(nbytes[j], h, w)),
            **{k: float(v[j]) for k, v in q.items()},
          }
        )
  except BaseException:
    if sink is not None:
      sink.abort()
    raise
  if sink is not None:
    sink.close()
  if not rows:
    raise ValueError("convert: no frames")
  total = time.perf_counter() - t_all
  mean = lambda k: float(np.mean([r[k] for r in rows]))
  summary = {
    "frames": len(rows),
    "size": [int(h), int(w)],
    "latent": latent.name,
    "bytes_per_frame": mean("bytes"),
    "ratio": float(compression_ratio(mean("bytes"), h, w)),
    "bpp": mean("bpp"),
    "psnr": mean("psnr"),
    "mae": mean("mae"),
    "codec_fps": n_timed / t_codec if t_codec > 0 else float("nan"),
    "total_fps": len(rows) / total,
  }
  if with_ms_ssim:
    summary["ms_ssim"] = mean("ms_ssim")
  if report_dir is not None:
    report_dir = Path(report_dir)
    write_csv(rows, report_dir / f"{name}_frames.csv")
    plot_frames(rows, report_dir / f"{name}_frames.png", f"{name}: {latent.name}")
    write_json(report_dir / f"{name}_summary.json", summary)
  return {"summary": summary, "rows": rows}


RD_CODECS = (
  LatentCodec("float32"),
  LatentCodec("float16"),
  LatentCodec("int8"),
  LatentCodec("int8", entropy="zlib"),
  LatentCodec("int4"),
  LatentCodec("int4", entropy="zlib"),
  LatentCodec("int8", channels=6),
  LatentCodec("int4", channels=5, entropy="zlib"),
  LatentCodec("int4", channels=3, entropy="zlib"),
  LatentCodec("int8", entropy="laplace"),
  LatentCodec("int4", entropy="laplace"),
  LatentCodec("int16", step=0.4, entropy="laplace", temporal=True),
)


def rd_study(
  model: OVAL,
  params,
  frames: np.ndarray,
  out_dir,
  *,
  color_space: str,
  batch_size: int,
  bits: Sequence[int],
  factors: Sequence[float],
  jpeg_qualities: Sequence[int],
  title: str = "",
) -> dict:
  """Latent codecs (`RD_CODECS`, rates = payload bytes) vs baselines on `frames`: rd.csv, rd.md,
  rd.png and a picture.

  The baselines are bit cutting to each of `bits`, resizing by each of `factors` per side, JPEG at
  each of `jpeg_qualities` and JPEG at the bytes of the float16, int8 and int4-zlib latents.
  """
  out_dir = Path(out_dir)
  rows = []
  for codec in RD_CODECS:
    s = convert_frames(
      model, params, frames, color_space=color_space, batch_size=batch_size, latent=codec, with_ms_ssim=True
    )["summary"]
    method = (
      "oval (channels dropped)"
      if codec.channels is not None
      else "oval + range coder"
      if codec.entropy in ("laplace", "gaussian")
      else "oval"
    )
    rows.append(
      {
        "method": method,
        "setting": codec.name,
        "bytes_per_frame": s["bytes_per_frame"],
        "ratio": s["ratio"],
        "bpp": s["bpp"],
        "psnr": s["psnr"],
        "ms_ssim": s["ms_ssim"],
        "mae": s["mae"],
      }
    )
  targets = [r["bytes_per_frame"] for r in rows if r["setting"] in ("float16", "int8", "int4-zlib")]
  rows += baseline_rows(
    frames,
    bits=tuple(bits),
    factors=tuple(factors),
    jpeg_qualities=tuple(jpeg_qualities),
    jpeg_targets=targets,
  )
  write_rows(rows, out_dir / "rd.csv", out_dir / "rd.md", title=f"rate-distortion: {title}")
  plot_rd(
    rows, out_dir / "rd.png", title=f"{title} ({len(frames)} frames, {frames.shape[2]}x{frames.shape[1]})"
  )
  mid = frames[len(frames) // 2 : len(frames) // 2 + 1]
  fcodec = FrameCodec(model, params, color_space, mid.shape[1:3], 1)
  zhat, nb = LatentCodec("int8").roundtrip(fcodec.encode(mid))
  oval = fcodec.decode(zhat)
  jpg, jb, jq = jpeg_at_bytes(mid, nb)
  pic = np.concatenate(
    [np.concatenate([mid[0], oval[0]], 1), np.concatenate([jpg[0], error_heatmap(mid, oval)[0]], 1)], 0
  )
  save_image(out_dir / "compare_int8_vs_jpeg.png", pic)
  return {
    "rows": len(rows),
    "table": str(out_dir / "rd.md"),
    "plot": str(out_dir / "rd.png"),
    "picture": f"{out_dir / 'compare_int8_vs_jpeg.png'} (top: original | OVAL int8 {nb[0]} B; "
    f"bottom: JPEG q{jq[0]} {jb[0]} B | OVAL error)",
  }


def _sha_frames(h, frames: np.ndarray) -> None:
  for f in frames:
    h.update(np.ascontiguousarray(f).tobytes())


def encode_video(
  model: OVAL,
  params,
  frames: Iterable[np.ndarray],
  out_path,
  *,
  color_space: str,
  batch_size: int,
  latent: LatentCodec,
  fps: float,
  model_config: dict,
  source: dict | None = None,
  recon_video=None,
  with_ms_ssim: bool = False,
  report_dir=None,
  name: str = "encode",
) -> dict:
  """Streams frames into an `.aejx` file (`aejax.codec.bitstream`), decoding as the receiver will.

  Frames are encoded in batches of `batch_size` and each payload is written as soon as it exists,
  so memory stays flat in the video's length. The reconstruction reported (quality, `recon_sha256`
  over its uint8 frames, `recon_video` if given) is what `decode_file` reproduces bit for bit on
  the same platform; `bytes` is the file's size and `bpp` = 8 bytes / (frames H W).

  Args:
    model, params: the OVAL model and its parameters.
    frames: RGB uint8 frames [H, W, 3] (any iterable, e.g. `aejax.data.video.iter_frames`).
    out_path: the `.aejx` file.
    color_space, batch_size, latent, fps: as `convert_frames`.
    model_config: the model's config dict (stored in the header, rebuilt by the decoder).
    source: where the weights came from ({"checkpoint": path} or {"weights": path}), a hint.
    recon_video: also write the reconstruction as a video (None: not written).
    with_ms_ssim: also measure MS-SSIM; report_dir, name: per-frame CSV and summary JSON.

  Returns:
    The summary (frames, bytes = file size, header bytes, bpp, ratio, PSNR, ..., recon_sha256).
  """
  import hashlib

  from aejax.codec.bitstream import BitstreamWriter, params_sha256

  rows, writer, sink, codec, sender, receiver = [], None, None, None, latent.stream(), latent.stream()
  sha = hashlib.sha256()
  t0 = time.perf_counter()
  try:
    for batch in _chunks(frames, batch_size):
      if codec is None:
        h, w = batch.shape[1:3]
        codec = FrameCodec(model, params, color_space, (h, w), batch_size)
        z_shape = latent_shape((h, w), model.features, model.kernels, model.strides)
        header = {
          "model": dict(model_config),
          "decoder_sha256": params_sha256(codec.dec_params),
          "source": source or {},
          "color_space": color_space,
          "size": [int(h), int(w)],
          "fps": float(fps),
          "latent_shape": list(z_shape),
          "codec": dataclasses.asdict(latent),
          "batch": int(batch_size),
        }
        writer = BitstreamWriter(out_path, header)
        if recon_video:
          sink = video_writer(recon_video, fps, (h, w))
      z = codec.encode(batch)
      zhat, nbytes = np.empty_like(z), []
      for j, zj in enumerate(z):
        payload = sender.encode(zj)
        nbytes.append(writer.write_frame(payload))
        zhat[j] = receiver.decode(payload, zj.shape)
      dec = codec.decode(zhat)
      _sha_frames(sha, dec)
      if sink is not None:
        for f in dec:
          sink.write(f)
      q = quality(batch, dec, with_ms_ssim=with_ms_ssim)
      for j in range(len(batch)):
        rows.append(
          {"frame": len(rows), "record_bytes": int(nbytes[j]), **{k: float(v[j]) for k, v in q.items()}}
        )
  except BaseException:
    for s in (writer, sink):
      if s is not None:
        s.abort()
    raise
  if writer is None:
    raise ValueError("encode: no frames")
  path = writer.close()
  if sink is not None:
    sink.close()
  size, n = path.stat().st_size, len(rows)
  mean = lambda k: float(np.mean([r[k] for r in rows]))
  summary = {
    "file": str(path),
    "frames": n,
    "size": [int(h), int(w)],
    "latent": latent.name,
    "bytes": size,
    "header_bytes": writer.header_bytes,
    "bytes_per_frame": size / n,
    "bpp": float(bits_per_pixel(size / n, h, w)),
    "ratio": float(compression_ratio(size / n, h, w)),
    "psnr": mean("psnr"),
    "mae": mean("mae"),
    **({"ms_ssim": mean("ms_ssim")} if with_ms_ssim else {}),
    "recon_sha256": sha.hexdigest(),
    "seconds": time.perf_counter() - t0,
  }
  if report_dir is not None:
    report_dir = Path(report_dir)
    write_csv(rows, report_dir / f"{name}_frames.csv")
    write_json(report_dir / f"{name}_summary.json", summary)
  return summary


def decode_file(path, model: OVAL, params, *, out_video=None) -> dict:
  """Decodes an `.aejx` file with `model` / `params` (checked against the header's decoder hash).

  Writes the frames to `out_video` (H.264 MP4 through PyAV; None: not written) and returns
  {"frames", "size", "fps", "bytes" (file size), "bpp", "recon_sha256", "updates"}; the hash equals
  the encoder's `recon_sha256` when the decode is bit exact.
  """
  import hashlib

  from aejax.codec.bitstream import UPDATE, iter_records, params_sha256, read_header, tree_from_bytes

  header, n_frames = read_header(path)
  _, dec_params = split_params(params)
  if params_sha256(dec_params) != header["decoder_sha256"]:
    raise ValueError(
      f"{path}: the decoder's weights differ from the encoder's (decoder_sha256 "
      f"{header['decoder_sha256'][:12]}..., these {params_sha256(dec_params)[:12]}...)"
    )
  h, w = header["size"]
  batch = int(header["batch"])
  latent = LatentCodec(**header["codec"])
  codec = FrameCodec(model, params, header["color_space"], (h, w), batch)
  receiver, z_shape = latent.stream(), tuple(header["latent_shape"])
  sink = video_writer(out_video, header["fps"], (h, w)) if out_video else None
  sha, buf, n, updates = hashlib.sha256(), [], 0, 0

  def flush():
    dec = codec.decode(np.stack(buf))
    _sha_frames(sha, dec)
    if sink is not None:
      for f in dec:
        sink.write(f)
    buf.clear()

  try:
    for kind, payload in iter_records(path):
      if kind == UPDATE:  # effective from the next frame: decode what came before with the old one
        if buf:
          flush()
        codec.dec_params = tree_from_bytes(codec.dec_params, payload, header["update_dtype"])
        updates += 1
        continue
      buf.append(receiver.decode(payload, z_shape))
      n += 1
      if len(buf) == batch:
        flush()
    if buf:
      flush()
  except BaseException:
    if sink is not None:
      sink.abort()
    raise
  if sink is not None:
    sink.close()
  if n != n_frames:
    raise ValueError(f"{path}: {n} frame records, the header says {n_frames}")
  size = Path(path).stat().st_size
  return {
    "frames": n,
    "size": [h, w],
    "fps": header["fps"],
    "bytes": size,
    "bpp": float(bits_per_pixel(size / max(n, 1), h, w)),
    "recon_sha256": sha.hexdigest(),
    "updates": updates,
    "video": str(out_video) if out_video else None,
  }
