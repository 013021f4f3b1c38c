"""Rate–distortion of the 3D autoencoder's `.aejx` files against H.264 / H.265 on real MovingMNIST.

Test clips: the validation clips of the `demo` data (2 real MNIST *test* digits bouncing in 64x64,
`data.num_frames` frames; `$AEJAX_MNIST` or ../shared/realdata/mnist/mnist.npz). Every rate is a
file's size: each checkpoint's clips are written by `experiments.compressed_vision encode` into one
`.aejx` file and decoded by `decode` (the PSNR is the decoded file's); the baselines code the
same clips, back to back, as one in-memory MP4 per CRF (grey as RGB, yuv420p; every header
counted). PSNR: each clip as one image, mean over clips (as `encode` reports).

  python bench/cv_rd.py --checkpoint W [--checkpoint W2 ...] --clips 64 --out /tmp/cv_rd
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aejax.codec.baselines import video_codec  # noqa: E402
from aejax.codec.clips import clip_psnr  # noqa: E402
from aejax.data.movingmnist import load_clips  # noqa: E402
from experiments import compressed_vision as cv  # noqa: E402


def main(argv=None) -> list[dict]:
  """Encodes/decodes the test clips with each checkpoint and the codec baselines; prints a table."""
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--checkpoint", action="append", default=[], help="a compressed_vision run (repeatable)")
  ap.add_argument("--clips", type=int, default=64, help="test clips")
  ap.add_argument("--frames", type=int, default=10, help="frames per clip (the demo's 10)")
  ap.add_argument("--streams", default="temporal", help="codec.streams: temporal, channel or clip")
  ap.add_argument("--crfs", default="24,30,36,42,48", help="H.264/H.265 CRF values")
  ap.add_argument("--out", default="/tmp/cv_rd")
  args = ap.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  data = cv.demo().data
  data.update(num_frames=args.frames, num_clips=max(2, int(np.ceil(args.clips / data.valid_fraction))))
  x = load_clips(data)["valid"]["video"][: args.clips]
  np.save(out / "clips.npy", x)
  pixels, rows = x.size, []
  common = ["--compilation_cache=", "--overwrite", f"--config.codec.streams={args.streams}"]
  for i, ckpt in enumerate(args.checkpoint):
    f = out / f"ae{i}.aejx"
    s = cv.main(["encode", "--checkpoint", ckpt, "--clips", str(out / "clips.npy"), "--out", str(f)] + common)
    d = cv.main(["decode", str(f), "--out", str(out / f"ae{i}.npy"), "--workdir", str(out)] + common)
    assert d["recon_sha256"] == s["recon_sha256"] and os.path.getsize(f) == s["bytes"]
    name = f"3D AE {Path(ckpt).name} ({args.streams})"
    psnr = clip_psnr(x, np.load(out / f"ae{i}.npy")).mean()
    rows.append(dict(method=name, bytes=s["bytes"], header=s["header_bytes"], psnr=float(psnr)))
  frames = np.repeat(x.reshape(-1, *x.shape[2:4], 1), 3, axis=-1)
  for codec in ("h264", "h265"):
    for crf in map(int, args.crfs.split(",")):
      rec, nbytes = video_codec(frames, codec, crf, fps=20.0)
      psnr = clip_psnr(x, rec[..., :1].reshape(x.shape)).mean()
      nbytes = int(round(nbytes.sum()))
      rows.append(dict(method=f"{codec} crf {crf}", bytes=nbytes, header=None, psnr=float(psnr)))
  for r in rows:
    r["bpp"] = 8.0 * r["bytes"] / pixels
  (out / "rows.json").write_text(json.dumps(rows, indent=2))
  print(f"{len(x)} clips x {x.shape[1]} frames of 64x64 ({pixels} pixels)")
  print("| method | file bytes | bpp | PSNR dB |\n|---|---|---|---|")
  for r in rows:
    print(f"| {r['method']} | {r['bytes']} | {r['bpp']:.4f} | {r['psnr']:.2f} |")
  return rows


if __name__ == "__main__":
  main()
