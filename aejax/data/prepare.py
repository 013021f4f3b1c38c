"""Decode once: video folders, image folders and DAVIS into array_record files.

    python -m aejax.data.prepare videos --src DIR --out DATA_DIR [--workers N] [--size 256] [--quality 75]
    python -m aejax.data.prepare images --src DIR --out DATA_DIR [--valid-fraction 0.2 --seed 42]
    python -m aejax.data.prepare davis  --src DAVIS_ROOT --out DATA_DIR [--resolution 480p]

Videos (Kinetics-style `<class>/<video>` folders or flat ones; mp4/avi/mkv/webm/mpeg) go to
`DATA_DIR/aejax_videos/1.0.0/`: shards `aejax_videos-train.array_record-NNNNN-of-NNNNN`, each
record one frame as JPEG (or PNG) bytes, videos one after another, and `aejax_index_train.json`
(per video: `path`, `label` = class folder or '', `fps`, `num_frames`, `height`, `width`,
`offset` = its first record over the shards in order, `shard`). `--workers` processes (default:
all cores) each take a shard of `--videos-per-shard` videos and decode each video exactly once,
scaling it so its shorter side is `--size` (default 256; never up). The run is resumable: the
plan (file list and options) and each finished shard (array_record, then its JSON, both renamed
into place) are kept, so killing it and running the same command again redoes only unfinished
shards; other options on the same `--out` are an error. Corrupt files, files shorter than
`--min-frames` and files whose fps is not `--fps` are skipped and listed in `--report` (default
`DATA_DIR/prepare_report.json`); when nothing survives the command fails with the reasons. A
progress line (videos/s, ETA) and a final summary (kept, skipped, frames, bytes, hours) go to
stderr / stdout. Reading needs no tensorflow-datasets: `PreparedVideos` (a collection for
`VideoPairSource` / `VideoClipSource`) reads the shards with `grain.sources.ArrayRecordDataSource`.

JPEG quality 75 (default), measured on 32 Kinetics-like 340×256 H.264 clips cut from the real
footage (`python -m bench.prepare_videos`, table in `bench/RESULTS.md`, 2026-12-02): 16.7 kB per
frame at 37.5 dB PSNR against the decoded H.264 frame (q95: 36.4 kB, 44.3 dB; q60: 13.3 kB,
35.6 dB). Kinetics-400 is ~240k clips × 10 s × 30 fps = 72M frames, so 1 TB is 13.9 kB per frame:
q75 gives 1.2 TB at these clips' rate and ~0.96 TB at the issue's (29 kB per frame at q95).
1.0–1.2 CPU-ms per frame (decode, YUV→BGR, JPEG); 2 workers run 1.94× faster than 1.

Images and DAVIS still use tensorflow-datasets builders (`pip install 'aejax[prepare]'`):
- `aejax_images` (splits `train`, `valid`; everything in `train` with `--valid-fraction 0`): `image`
  (encoded bytes of the RGB uint8 image: grey, CMYK, palette, RGBA and 16-bit inputs are
  converted), `label` (class index), `class_name`, `path`. Caltech-256 split: `--valid-fraction
  0.2 --seed 42`.
- `aejax_davis` (the splits listed in `ImageSets/2017`): one record per sequence: `frames`
  (encoded JPEG bytes), `masks` (lossless PNG bytes of the object-id maps), `name`, `palette`
  [256, 3].
Read them back with `tfds.data_source(name, data_dir=DATA_DIR)` (`aejax.data.prepare_images`
registers the builders), `PreparedImageSource` or `PreparedDavisSource`. No TensorFlow is needed.

This module is the command line and what both kinds share (`encode_frame`, `resize_short`,
`VERSION`); videos are `aejax.data.prepare_videos`, images and DAVIS `aejax.data.prepare_images`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from aejax.io import check_output

VERSION = "1.0.0"
QUALITY = 75  # see the module docstring and bench/RESULTS.md


def encode_frame(rgb: np.ndarray, fmt: str = "jpeg", quality: int = QUALITY, *, bgr: bool = False) -> bytes:
  """RGB (BGR with `bgr=True`, or single-channel) uint8 → encoded JPEG / PNG bytes."""
  img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 and rgb.shape[-1] == 3 and not bgr else rgb
  ext, params = (".png", []) if fmt == "png" else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])
  ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), params)
  if not ok:
    raise ValueError(f"cannot encode a frame of shape {rgb.shape} as {fmt}")
  return buf.tobytes()


def resize_short(img: np.ndarray, size: int | None) -> np.ndarray:
  """`img` scaled (INTER_AREA) so its shorter side is `size`; never up; unchanged for None/0."""
  if not size:
    return img
  h, w = img.shape[:2]
  f = size / min(h, w)
  if f >= 1:
    return img
  return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


KINDS = ("davis", "images", "videos")


def prepare(kind: str, src: str | Path, out: str | Path, **options) -> Path:
  """Prepares `src` as `kind` ("videos" | "images" | "davis") under `out`; returns its folder."""
  if kind == "videos":
    from aejax.data.prepare_videos import prepare_videos

    return prepare_videos(src, out, **options)
  from aejax.data.prepare_images import prepare_tfds

  return prepare_tfds(kind, src, out, **options)


# -------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
  """The command line (see the module docstring); returns the exit status."""
  parser = argparse.ArgumentParser(
    prog="python -m aejax.data.prepare",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("kind", choices=KINDS, help="what --src holds")
  parser.add_argument("--src", required=True, help="the video folder, image folder or DAVIS root")
  parser.add_argument("--out", required=True, help="data_dir to write into")
  parser.add_argument("--workers", type=int, default=None, help="videos: processes (all cores)")
  parser.add_argument("--videos-per-shard", type=int, default=64, help="videos: shard size")
  parser.add_argument(
    "--format",
    choices=("jpeg", "png"),
    default="jpeg",
    help="frame/image encoding (DAVIS masks are always PNG)",
  )
  parser.add_argument(
    "--quality", type=int, default=None, help=f"JPEG quality (videos {QUALITY}, images and DAVIS 95)"
  )
  parser.add_argument(
    "--size",
    type=int,
    default=None,
    help="downscale so the shorter side is at most this (videos: 256, images: none)",
  )
  parser.add_argument("--max-frames", type=int, default=None, help="keep the first N frames")
  parser.add_argument("--min-frames", type=int, default=1, help="skip shorter videos")
  parser.add_argument("--fps", type=float, default=None, help="skip videos at another fps")
  parser.add_argument("--valid-fraction", type=float, default=0.2, help="images: valid share")
  parser.add_argument("--seed", type=int, default=42, help="images: split seed")
  parser.add_argument("--resolution", default="480p", help="DAVIS resolution folder")
  parser.add_argument("--report", default=None, help="skip report path (JSON)")
  a = parser.parse_args(argv)
  if a.kind == "videos":
    opts = {
      "workers": a.workers,
      "videos_per_shard": a.videos_per_shard,
      "format": a.format,
      "quality": a.quality or QUALITY,
      "size": 256 if a.size is None else a.size,
      "max_frames": a.max_frames,
      "min_frames": a.min_frames,
      "fps": a.fps,
    }
  else:
    opts = {
      "format": a.format,
      "quality": a.quality or 95,
      "size": a.size,
      "valid_fraction": a.valid_fraction,
      "seed": a.seed,
      "resolution": a.resolution,
    }
  if a.report:
    opts["report"] = Path(a.report)
  try:
    check_output(a.out, inputs=[a.src], overwrite=True, folder=True, what="--out")
    path = prepare(a.kind, a.src, a.out, **opts)
  except (FileNotFoundError, ValueError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("interrupted: finished shards are kept; run the same command again to resume", file=sys.stderr)
    return 130
  except OSError as e:  # a full disk or an I/O error while writing: finished shards are complete
    where = e.filename or a.out
    print(
      f"error: {where}: cannot write ({e.strerror or type(e).__name__}); finished shards are kept; "
      "free space and run the same command again to resume",
      file=sys.stderr,
    )
    return 1
  print(f"prepared {a.kind} from {a.src} into {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
