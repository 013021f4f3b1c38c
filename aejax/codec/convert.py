"""Video conversion with a learned frame codec (OVAL): encoder → latent bytes → decoder.

`convert_frames` streams a video through a `FrameCodec` (`aejax.codec.frames`) and a
`LatentCodec`, writing the decoded (or side-by-side) video, per-frame CSV, plot and summary;
`rd_study` compares latent codecs with the classic baselines at matched bytes. Files (`.aejx`)
are `aejax.codec.files`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from aejax.codec.baselines import baseline_rows, jpeg_at_bytes
from aejax.codec.frames import FrameCodec, FrameProgress, chunks, peek, video_sink
from aejax.codec.latent import LatentCodec, bits_per_pixel, compression_ratio
from aejax.codec.report import error_heatmap, plot_frames, plot_rd, quality, rd_row, write_csv, write_rows
from aejax.io import write_json
from aejax.models.oval import OVAL
from aejax.viz import save_image


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
  total_frames: int = 0,
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
    total_frames: the expected frame count, for the progress line's ETA (0: unknown).

  Returns:
    {"summary": means and timings, "rows": per-frame dicts}.
  """
  first, frames = peek(frames, "convert: the video")
  h, w = first.shape[:2]
  codec = FrameCodec(model, params, color_space, (h, w), batch_size)
  rows, sender, receiver = [], latent.stream(), latent.stream()  # temporal prediction runs across batches
  t_codec, t_all, n_timed = 0.0, time.perf_counter(), 0
  progress, sent, psnr_sum = FrameProgress(name, (h, w), total_frames), 0, 0.0
  with video_sink(out_video, fps, (h, w * 3) if side_by_side else (h, w)) as sink:
    for bi, batch in enumerate(chunks(frames, batch_size)):
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
      rows += [
        {
          "frame": len(rows) + j,
          "bytes": int(nbytes[j]),
          "ratio": float(compression_ratio(nbytes[j], h, w)),
          "bpp": float(bits_per_pixel(nbytes[j], h, w)),
          **{k: float(v[j]) for k, v in q.items()},
        }
        for j in range(len(batch))
      ]
      sent, psnr_sum = sent + int(np.sum(nbytes)), psnr_sum + float(q["psnr"].sum())
      progress.update(len(rows), sent, psnr_sum)
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


RD_CHUNK = 64  # frames per batch of the baselines in `rd_study`
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


def _rd_method(codec: LatentCodec) -> str:
  if codec.channels is not None:
    return "oval (channels dropped)"
  return "oval + range coder" if codec.entropy in ("laplace", "gaussian") else "oval"


def rd_study(
  model: OVAL,
  params,
  frames,
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
  `frames`: uint8 [N, H, W, 3], or a function returning a fresh iterator over the frames (e.g.
  `lambda: iter_frames(path)`): every pass then reads the video again, in batches, so memory
  stays flat in its length.
  """
  out_dir = Path(out_dir)
  passes = frames if callable(frames) else (lambda: iter(frames))
  rows, n = [], 0
  for codec in RD_CODECS:
    s = convert_frames(
      model, params, passes(), color_space=color_space, batch_size=batch_size, latent=codec, with_ms_ssim=True
    )["summary"]
    rows.append(rd_row(_rd_method(codec), codec.name, s))
    n, (h, w) = s["frames"], s["size"]
  targets = [r["bytes_per_frame"] for r in rows if r["setting"] in ("float16", "int8", "int4-zlib")]
  mid = []  # the middle frame, for the picture

  def batches():
    for i, batch in enumerate(chunks(passes(), RD_CHUNK)):
      if i * RD_CHUNK <= n // 2 < i * RD_CHUNK + len(batch):
        mid.append(batch[n // 2 - i * RD_CHUNK][None])
      yield batch

  rows += baseline_rows(
    batches(),
    bits=tuple(bits),
    factors=tuple(factors),
    jpeg_qualities=tuple(jpeg_qualities),
    jpeg_targets=targets,
  )
  write_rows(rows, out_dir / "rd.csv", out_dir / "rd.md", title=f"rate-distortion: {title}")
  plot_rd(rows, out_dir / "rd.png", title=f"{title} ({n} frames, {w}x{h})")
  mid = mid[0]
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
