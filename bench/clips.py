"""Kinetics-like test clips cut from the real footage: 10 s, 30 fps, 340×256, H.264 (libx264).

    python -m bench.clips --out /tmp/kinetics_like [--clips 16] [--synthetic 0] [--gop N]
    python -m bench.clips --out /tmp/long --long 10   # one 10-minute 1080p25 video (codec RSS bench)

The real videos in `../shared/realdata/videos` are short (68 frames at 15 fps, 79 at 25 fps), so
each clip plays one of them back and forth (ping-pong) at a random speed, through a window that
zooms (1.1–1.4×) and pans linearly across the frame (sub-pixel, so every output frame differs,
as in hand-held footage), sometimes mirrored. Clips are written Kinetics-style,
`OUT/<source>/<source>_NNN.mp4`, with libx264's defaults (crf 23, preset medium, key frames at
most every 250 frames plus scene cuts, 3 B-frames), which is what a plain `ffmpeg -c:v libx264`
cut of Kinetics produces; `--gop` sets a fixed key-frame interval instead. `--synthetic N` adds N
tiny (64×48) 10 s synthetic clips under `OUT/synthetic/` for the folder-scan figure. `--long M`
instead writes one M-minute 1920×1080 25 fps H.264 video, `OUT/long_1080p_<M>min.mp4`: 4-second
shots of the same kind (alternating sources, a new zoom and pan each), streamed to the file so
that memory stays flat. Media are written where asked (use /tmp), never into the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = (256, 340)  # (H, W)


def realdata_videos() -> Path:
  """`../shared/realdata/videos` (or `$AEJAX_REALDATA/videos`)."""
  env = os.environ.get("AEJAX_REALDATA")
  return (Path(env) if env else ROOT.parent / "shared" / "realdata") / "videos"


def kinetics_like(
  frames: np.ndarray,
  src_fps: float,
  seed: int,
  seconds: float = 10.0,
  fps: float = 30.0,
  size: tuple[int, int] = SIZE,
) -> np.ndarray:
  """A [T, H, W, 3] uint8 clip of `seconds` at `fps` from the short source `frames` (see module)."""
  rng = np.random.default_rng(seed)
  n, (sh, sw) = len(frames), frames.shape[1:3]
  h, w = size
  t = np.arange(round(seconds * fps)) / fps
  pos = np.floor(t * rng.uniform(0.7, 1.3) * src_fps + rng.integers(0, n)).astype(int)
  period = max(1, 2 * (n - 1))
  pos = pos % period
  pos = np.where(pos < n, pos, period - pos)  # ping-pong
  scale = rng.uniform(1.1, 1.4) * max(w / sw, h / sh)
  room = np.array([sw * scale - w, sh * scale - h])
  a, b = rng.uniform(0, 1, 2) * room, rng.uniform(0, 1, 2) * room
  flip = rng.uniform() < 0.5
  out = np.empty((len(t), h, w, 3), np.uint8)
  for k, (i, u) in enumerate(zip(pos, np.linspace(0, 1, len(t)))):
    x, y = a + (b - a) * u
    m = np.array([[scale, 0, -x], [0, scale, -y]], np.float32)
    f = cv2.warpAffine(frames[i], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out[k] = f[:, ::-1] if flip else f
  return out


def make_clips(
  out: str | Path,
  num_clips: int = 16,
  video_dir: str | Path | None = None,
  seed: int = 0,
  seconds: float = 10.0,
  gop: int | None = None,
) -> list[Path]:
  """Writes `num_clips` Kinetics-like H.264 clips, round-robin over the real videos; returns them."""
  from aejax.data.scan import find_videos
  from aejax.data.video import read_frames, write_video

  sources = find_videos(video_dir or realdata_videos())  # video files only (no hidden caches)
  loaded = [(p.stem, *read_frames(p)) for p in sources]
  options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"} if gop else {}
  paths = []
  for k in range(num_clips):
    name, frames, fps = loaded[k % len(loaded)]
    clip = kinetics_like(frames, fps, seed=seed * 1000 + k, seconds=seconds)
    path = Path(out) / name / f"{name}_{k:03d}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.append(write_video(path, clip, 30.0, codec="libx264", options=options))
  return paths


def make_long(
  out: str | Path, minutes: float = 10.0, size=(1080, 1920), fps: float = 25.0, seed: int = 0
) -> Path:
  """Writes one long H.264 video of 4-second Kinetics-like shots (see module); returns its path."""
  from aejax.data.scan import find_videos
  from aejax.data.video import VideoWriter, read_frames

  loaded = [read_frames(p) for p in find_videos(realdata_videos())]
  shots = int(np.ceil(minutes * 60 / 4))
  path = Path(out) / f"long_{size[0]}p_{minutes:g}min.mp4"
  w = VideoWriter(path, fps, size, options={"preset": "veryfast", "crf": "23"})
  try:
    for k in range(shots):
      frames, src_fps = loaded[k % len(loaded)]
      for f in kinetics_like(frames, src_fps, seed=seed * 1000 + k, seconds=4.0, fps=fps, size=size):
        w.write(f)
      print(f"\r{path.name}: shot {k + 1}/{shots}", end="", flush=True)
  except BaseException:
    w.abort()
    raise
  print()
  return w.close()


def make_synthetic(
  out: str | Path, n: int = 300, seconds: float = 10.0, size=(48, 64), seed: int = 0
) -> list[Path]:
  """Writes `n` tiny synthetic H.264 clips (shape videos, 30 fps) under `out/synthetic/`."""
  from aejax.data import synthetic
  from aejax.data.video import write_video

  folder = Path(out) / "synthetic"
  folder.mkdir(parents=True, exist_ok=True)
  base = synthetic.shapes_video(30, size, seed=seed)["video"]
  paths = []
  for i in range(n):
    clip = np.roll(np.concatenate([base] * int(np.ceil(seconds))), i, axis=2)
    paths.append(
      write_video(folder / f"syn_{i:04d}.mp4", clip, 30.0, codec="libx264", options={"preset": "ultrafast"})
    )
  return paths


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", type=Path, required=True)
  p.add_argument("--clips", type=int, default=16)
  p.add_argument("--synthetic", type=int, default=0)
  p.add_argument("--gop", type=int, default=None, help="fixed key-frame interval (default: x264's)")
  p.add_argument("--seconds", type=float, default=10.0)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--long", type=float, default=0, help="instead: one video of this many minutes, 1080p25")
  a = p.parse_args(argv)
  if a.out.resolve().is_relative_to(ROOT):
    print(f"error: {a.out}: write clips outside the repository (e.g. /tmp)", file=sys.stderr)
    return 1
  if a.long:
    print(f"wrote {make_long(a.out, a.long, seed=a.seed)}")
    return 0
  n = len(make_clips(a.out, a.clips, seed=a.seed, seconds=a.seconds, gop=a.gop))
  if a.synthetic:
    n += len(make_synthetic(a.out, a.synthetic))
  print(f"wrote {n} clips under {a.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
