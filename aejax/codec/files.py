"""`.aejx` files of a learned frame codec (OVAL): streamed encode, bit-exact decode.

The container itself is `aejax.codec.bitstream`; this module fills it: `file_header` (model
identity, geometry, latent codec), `encode_video` (frames in, one record per frame, the rate is
the file's size) and `decode_file` (the receiver, decoder updates installed in-stream).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from aejax.codec.bitstream import (
  UPDATE,
  BitstreamWriter,
  iter_records,
  params_sha256,
  read_header,
  tree_from_bytes,
)
from aejax.codec.entropy import cdf_table, pack_table
from aejax.codec.frames import FrameCodec, FrameProgress, chunks, peek, video_sink
from aejax.codec.latent import LatentCodec, bits_per_pixel, compression_ratio
from aejax.codec.report import quality, write_csv
from aejax.io import write_json
from aejax.models.oval import OVAL, split_params


def file_header(
  model_config: dict, dec_params, latent: LatentCodec, *, color_space: str, size, fps: float, z_shape, **extra
) -> dict:
  """The `.aejx` header of a frame codec's stream: the model's config and decoder hash, colour space,
  frame size, fps, latent shape and codec, plus `extra` (e.g. `batch`, `source`, `update_dtype`)."""
  return {
    "model": dict(model_config or {}),
    "decoder_sha256": params_sha256(dec_params),
    "color_space": color_space,
    "size": [int(size[0]), int(size[1])],
    "fps": float(fps),
    "latent_shape": [int(v) for v in z_shape],
    "codec": dataclasses.asdict(latent),
    **extra,
  }


def learned_codec(latent: LatentCodec, model: OVAL, params) -> LatentCodec:
  """`latent` with entropy "learned" and no table: its table filled from the model's learned density
  (`OVAL.latent_pmf` at the codec's step, `aejax.codec.entropy.cdf_table`); any other codec as is."""
  if latent.entropy != "learned" or latent.table:
    return latent
  if not model.density_filters:
    raise ValueError("entropy 'learned' needs a model with a learned density (density_filters)")
  pmf, below, above = model.apply({"params": params}, float(latent.step), method=OVAL.latent_pmf)
  table = pack_table(*cdf_table(np.asarray(pmf), np.asarray(below), np.asarray(above)))
  return dataclasses.replace(latent, table=table)


def _hash_frames(sha, frames: np.ndarray) -> None:
  for f in frames:
    sha.update(np.ascontiguousarray(f).tobytes())


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
  total_frames: int = 0,
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
    color_space, batch_size, latent, fps: as `aejax.codec.convert.convert_frames` (a "learned"
      latent codec without a table gets the model's, `learned_codec`).
    model_config: the model's config dict (stored in the header, rebuilt by the decoder).
    source: where the weights came from ({"checkpoint": path} or {"weights": path}), a hint.
    recon_video: also write the reconstruction as a video (None: not written).
    with_ms_ssim: also measure MS-SSIM; report_dir, name: per-frame CSV and summary JSON.
    total_frames: the expected frame count, for the progress line's ETA (0: unknown).

  Returns:
    The summary (frames, bytes = file size, header bytes, bpp, ratio, PSNR, ..., recon_sha256).
  """
  first, frames = peek(frames, "encode: the video")
  h, w = first.shape[:2]
  latent = learned_codec(latent, model, params)
  codec = FrameCodec(model, params, color_space, (h, w), batch_size)
  header = file_header(
    model_config,
    codec.dec_params,
    latent,
    color_space=color_space,
    size=(h, w),
    fps=fps,
    z_shape=codec.latent_shape,
    source=source or {},
    batch=int(batch_size),
  )
  rows, sender, receiver, sha = [], latent.stream(), latent.stream(), hashlib.sha256()
  t0 = time.perf_counter()
  progress, psnr_sum = FrameProgress(f"encode {Path(out_path).name}", (h, w), total_frames), 0.0
  writer = BitstreamWriter(out_path, header)
  try:
    with video_sink(recon_video, fps, (h, w)) as sink:
      for batch in chunks(frames, batch_size):
        z = codec.encode(batch)
        zhat, nbytes = np.empty_like(z), []
        for j, zj in enumerate(z):
          payload = sender.encode(zj)
          nbytes.append(writer.write_frame(payload))
          zhat[j] = receiver.decode(payload, zj.shape)
        dec = codec.decode(zhat)
        _hash_frames(sha, dec)
        for f in dec if sink is not None else ():
          sink.write(f)
        q = quality(batch, dec, with_ms_ssim=with_ms_ssim)
        rows += [
          {"frame": len(rows) + j, "record_bytes": int(nbytes[j]), **{k: float(v[j]) for k, v in q.items()}}
          for j in range(len(batch))
        ]
        psnr_sum += float(q["psnr"].sum())
        progress.update(len(rows), writer.nbytes, psnr_sum)
  except BaseException:
    writer.abort()
    raise
  path = writer.close()
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
    write_csv(rows, Path(report_dir) / f"{name}_frames.csv")
    write_json(Path(report_dir) / f"{name}_summary.json", summary)
  return summary


def decode_file(path, model: OVAL, params, *, out_video=None) -> dict:
  """Decodes an `.aejx` file with `model` / `params` (checked against the header's decoder hash).

  Writes the frames to `out_video` (H.264 MP4 through PyAV; None: not written) and returns
  {"frames", "size", "fps", "bytes" (file size), "bpp", "recon_sha256", "updates"}; the hash equals
  the encoder's `recon_sha256` when the decode is bit exact.
  """
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
  sha, buf, n, updates = hashlib.sha256(), [], 0, 0
  with video_sink(out_video, header["fps"], (h, w)) as sink:

    def flush():
      dec = codec.decode(np.stack(buf))
      _hash_frames(sha, dec)
      for f in dec if sink is not None else ():
        sink.write(f)
      buf.clear()

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
