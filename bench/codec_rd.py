"""Rate–distortion of OVAL files against JPEG, H.264, H.265 and AV1 on real video, with BD-rates.

For each video: OVAL with the authors' released `offline8.pt` (faithful model, RGB) written as
`.aejx` files (`aejax.codec.files.encode_video`; every OVAL rate is a file's size, header
included) with the original float16 latent, zlib over int8/int4/fixed-step latents, and the range
coder with a per-channel Laplace model (intra, and temporal: symbols predicted from the previous
frame); optionally the same for a trained checkpoint (`--checkpoint DIR --label NAME`; a model with
a learned latent density, the v2 preset, is range coded under that density at quantiser steps
1-5.6, `LEARNED_SETTINGS`); per-frame
JPEG (OpenCV, whole files), H.264 (libx264), H.265 (libx265) and AV1 (SVT-AV1) at a CRF sweep
through PyAV (whole MP4 files). PSNR and MS-SSIM are RGB, per frame, averaged. Writes per video
`rd_<video>.csv/.md/.png` and `bd.md`: BD-rate (%; negative = fewer bits at equal quality) and
BD-PSNR (dB at equal rate) of every method against JPEG and H.264 (Pareto fronts; "n/a" where
the ranges do not overlap), plus the entropy coder against zlib.

  python bench/codec_rd.py --weights /tmp/orig_weights/offline8.pt --out /tmp/codec_rd \\
      [--checkpoint /tmp/ovalv2 --label "OVAL v2"] [--videos A.avi B.mpeg] [--max-frames N]
  python bench/codec_rd.py --reuse /tmp/codec_rd --checkpoint /tmp/ovalv2 --label "OVAL v2" \\
      --out /tmp/codec_rd_v2

`--reuse DIR` takes every other method's rows (faithful model, JPEG, H.264, H.265, AV1) from an
earlier run's `DIR/rd_<video>.csv` (same videos, same frames) and only encodes the checkpoint.

`--online` instead tests OVAL's online claim (`aejax.codec.online_study.online_vs_frozen`): starting
from the released weights (or `--checkpoint`: our own trained model), online adaptation on each
video (buffer 20 of which the newest `--holdout` 4 judge the send rule and are not trained on,
Adam 2.5e-3, BCE, one step per 9 frames as the original managed, send threshold 1 %, decoder
updates charged at float16) against the frozen model at equal total bytes (its curve over finer
quantiser steps); writes `online.md` and `online.json`. `--rss N` instead encodes N synthetic 1080p frames and
prints the resident memory as the stream goes (flat in the length) and its peak; `--rss-video V`
runs the user's command `python -m experiments.oval encode --video V` and samples its memory
(make a 10-minute 1080p input with `python -m bench.clips --out /tmp/long --long 10`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aejax.codec.baselines import jpeg_codec, video_codec_rows  # noqa: E402
from aejax.codec.files import encode_video  # noqa: E402
from aejax.codec.latent import LatentCodec  # noqa: E402
from aejax.codec.report import (  # noqa: E402
  bd_quality,
  bd_rate,
  plot_rd,
  quality_at_rate,
  rd_row,
  read_rows,
  summarize,
  write_rows,
)
from aejax.data.video import read_frames  # noqa: E402

VIDEOS = ("opencv_tree.avi", "visp_cube.mpeg")
OVAL_SETTINGS = {
  "float16 (original)": [LatentCodec("float16")],
  "zlib": [
    LatentCodec("int8", entropy="zlib"),
    LatentCodec("int4", entropy="zlib"),
    LatentCodec("int16", step=0.8, entropy="zlib"),
  ],
  "Laplace": [
    LatentCodec("int8", entropy="laplace"),
    LatentCodec("int4", entropy="laplace"),
    LatentCodec("int16", step=0.8, entropy="laplace"),
  ],
  "Laplace temporal": [
    LatentCodec("int16", step=s, entropy="laplace", temporal=True) for s in (0.1, 0.4, 1.6)
  ],
}
# a trained model (`--checkpoint`): a denser step sweep (its latent's scale is its own)
TRAINED_SETTINGS = {
  "float16": [LatentCodec("float16")],
  "Laplace": [LatentCodec("int16", step=s, entropy="laplace") for s in (0.4, 1.6)],
  "Laplace temporal": [
    LatentCodec("int16", step=s, entropy="laplace", temporal=True) for s in (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
  ],
}
# a trained model with a learned latent density (the v2 preset): the range coder under that density
# (its table in the file header) at a few quantiser steps (1: the step it was trained for)
LEARNED_SETTINGS = {
  "learned": [LatentCodec("int16", step=s, entropy="learned") for s in (1.0, 1.5, 2.0, 2.8, 4.0, 5.6)]
}
JPEG_QUALITIES = (1, 2, 3, 5, 8, 12, 20, 30, 50, 75, 90)


def oval_rows(label, model, params, model_config, frames, fps, color_space="rgb", batch=16, settings=None):
  """R–D rows of `label` + each family of `settings` (default `OVAL_SETTINGS`), rates from the
  written .aejx files."""
  rows = []
  kw = dict(color_space=color_space, batch_size=batch, fps=fps, model_config=model_config, with_ms_ssim=True)
  with tempfile.TemporaryDirectory() as tmp:
    for family, codecs in (settings or OVAL_SETTINGS).items():
      for codec in codecs:
        s = encode_video(model, params, iter(frames), Path(tmp) / "v.aejx", latent=codec, **kw)
        rows.append(rd_row(f"{label} {family}", codec.name, s))
        print(
          f"  {rows[-1]['method']:<40} {codec.name:<28} {s['bpp']:.4f} bpp {s['psnr']:.2f} dB", flush=True
        )
  return rows


def bd_table(rows: list[dict], anchors=("jpeg", "h264")) -> list[str]:
  """Markdown lines: BD-rate / BD-PSNR of every method against each anchor (Pareto fronts)."""
  methods = list(dict.fromkeys(r["method"] for r in rows))
  fmt = lambda v, unit: "n/a" if not np.isfinite(v) else f"{v:+.1f}{unit}"
  head = (
    "| method | "
    + " | ".join(f"BD-rate vs {a} (PSNR) | BD-rate vs {a} (MS-SSIM) | BD-PSNR vs {a}" for a in anchors)
    + " |"
  )
  lines = [head, "|" + "---|" * (1 + 3 * len(anchors))]
  for m in methods:
    mine = [r for r in rows if r["method"] == m]
    cells = []
    for a in anchors:
      ref = [r for r in rows if r["method"] == a]
      cells += [
        fmt(bd_rate(ref, mine), " %"),
        fmt(bd_rate(ref, mine, "ms_ssim"), " %"),
        fmt(bd_quality(ref, mine), " dB"),
      ]
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  return lines


def equal_rate_lines(rows: list[dict], label: str, anchors=("jpeg", "h264")) -> list[str]:
  """Markdown lines: each `label` row's PSNR beside each anchor's at the same bpp (its Pareto
  front interpolated in log bpp; n/a outside its range)."""
  lines = [
    f"| {label} setting | bpp | PSNR | "
    + " | ".join(f"{a} PSNR at that bpp | difference" for a in anchors)
    + " |",
    "|" + "---|" * (3 + 2 * len(anchors)),
  ]
  for r in sorted((r for r in rows if r["method"].startswith(label)), key=lambda r: r["bpp"]):
    cells = []
    for a in anchors:
      q = quality_at_rate([x for x in rows if x["method"] == a], r["bpp"])
      cells += ["n/a", "n/a"] if not np.isfinite(q) else [f"{q:.2f}", f"{r['psnr'] - q:+.2f} dB"]
    lines.append(f"| {r['setting']} | {r['bpp']:.4f} | {r['psnr']:.2f} | " + " | ".join(cells) + " |")
  return lines + [""]


ONLINE_LATENT = LatentCodec("int16", step=0.4, entropy="laplace", temporal=True)
FROZEN_CURVE = [
  LatentCodec("int16", step=s, entropy="laplace", temporal=True) for s in (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
] + [LatentCodec("float16")]


def online_study(args) -> None:
  """Online vs frozen at equal total bytes on each video (see the module docstring)."""
  import json

  from aejax.codec.online import OnlineConfig
  from aejax.codec.online_study import online_vs_frozen
  from experiments import oval

  model, params, config, _ = oval.load(
    oval.get_config(), None, argparse.Namespace(weights=args.weights, checkpoint=args.checkpoint)
  )
  cfg = OnlineConfig(
    buffer_size=20,
    holdout=args.holdout,
    lr=2.5e-3,
    loss="bce",
    threshold=args.threshold,
    train_every=args.train_every,
    update_dtype="float16",
    color_space=config.data.color_space,
    ms_ssim=False,
  )
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  res, lines = (
    {},
    [
      "| video | frames | updates | online PSNR | online bpp (latents + updates) | ratio | "
      "frozen PSNR, same quantiser | frozen bpp | frozen PSNR at the online bpp | gain |",
      "|" + "---|" * 10,
    ],
  )
  for video in args.videos:
    frames, fps = read_frames(video, args.max_frames)
    r = online_vs_frozen(
      model, params, frames, fps=fps, cfg=cfg, latent=ONLINE_LATENT, frozen_codecs=FROZEN_CURVE
    )
    res[Path(video).name] = r
    lines.append(
      f"| {Path(video).name} | {r['frames']} | {r['updates']} | {r['psnr']:.2f} | "
      f"{r['bpp']:.4f} | "
      f"{r['ratio']:.1f} | {r['frozen_psnr']:.2f} | {r['frozen_bpp']:.4f} | "
      f"{r['frozen_psnr_at_equal_bytes']:.2f} | {r['gain_db']:+.2f} dB |"
    )
    print(lines[-1], flush=True)
  start = args.checkpoint or args.weights
  lines.append(
    f"\nstart {start}, train_every {args.train_every}, holdout {args.holdout}, threshold {args.threshold}, "
    f"latent {ONLINE_LATENT.name}"
  )
  (out / "online.json").write_text(json.dumps(res, indent=2))
  (out / "online.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


def rss_study(args) -> None:
  """Peak RSS of `encode_video` on a synthetic 1080p stream of `--rss` frames (released weights,
  Laplace temporal), sampled as it goes: memory must stay flat in the stream's length."""
  import resource
  import time

  from experiments import oval

  model, params, config, _ = oval.load(
    oval.get_config(), None, argparse.Namespace(weights=args.weights, checkpoint=None)
  )
  h, w, n = 1080, 1920, args.rss
  yy, xx = np.mgrid[0:h, 0:w]
  samples, t0 = [], time.perf_counter()

  def stream():
    for i in range(n):
      if i % max(1, n // 10) == 0 or i == n - 1:
        with open("/proc/self/statm") as f:
          samples.append((i, int(f.read().split()[1]) * 4096 / 2**20))
      v = ((xx + 7 * i) % 256 + (yy // 4) % 64).astype(np.uint8)
      yield np.stack([v, v[::-1], np.roll(v, i, 1)], -1)

  s = encode_video(
    model,
    params,
    stream(),
    Path(args.out) / "rss_1080p.aejx",
    color_space="rgb",
    batch_size=8,
    latent=LatentCodec("int16", step=0.4, entropy="laplace", temporal=True),
    fps=25.0,
    model_config=config.model.to_dict(),
  )
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(
    f"1080p, {n} frames ({n / 25:.0f} s at 25 fps) in {time.perf_counter() - t0:.0f} s: "
    f"file {s['bytes']} B; RSS (MiB) at frame "
    + ", ".join(f"{i}: {r:.0f}" for i, r in samples)
    + f"; peak {peak:.0f} MiB"
  )


def rss_cli_study(args) -> None:
  """Peak RSS of the user's command, `experiments.oval encode --video V` (a child process, sampled
  from /proc every `--rss-every` seconds; the peak is the child's `ru_maxrss`)."""
  import resource
  import shlex
  import subprocess
  import sys
  import time

  out = Path(args.out)
  aejx = out / (Path(args.rss_video).stem + ".aejx")
  src = ["--weights", args.weights] if args.weights else ["--checkpoint", args.checkpoint]
  cmd = [sys.executable, "-m", "experiments.oval", "encode", *src, "--video", args.rss_video]
  cmd += ["--out", str(aejx), *shlex.split(args.encode_args)]
  print(" ".join(cmd), flush=True)
  t0, samples = time.perf_counter(), []
  child = subprocess.Popen([*cmd, "--overwrite"])
  while child.poll() is None:
    try:
      with open(f"/proc/{child.pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
      samples.append((time.perf_counter() - t0, rss / 1024))
    except (OSError, StopIteration):
      pass
    time.sleep(args.rss_every)
  code, peak = child.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
  lines = [
    f"`{' '.join(cmd)}`: exit {code}, {time.perf_counter() - t0:.0f} s, peak RSS {peak:.0f} MiB",
    "RSS (MiB) over time: "
    + ", ".join(f"{t:.0f}s {r:.0f}" for t, r in samples[:: max(1, len(samples) // 20)]),
  ]
  (out / "rss_cli.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


def main(argv=None) -> None:
  """Runs the study (see the module docstring)."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--weights", default=None, help="the released offline8.pt")
  p.add_argument("--checkpoint", default=None, help="a trained OVAL run to add (--online: to start from)")
  p.add_argument("--label", default="OVAL trained")
  root = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "videos"
  p.add_argument("--videos", nargs="+", default=[str(root / v) for v in VIDEOS])
  p.add_argument("--max-frames", type=int, default=0)
  p.add_argument("--out", default="/tmp/codec_rd")
  p.add_argument("--online", action="store_true", help="the online-vs-frozen study instead")
  p.add_argument("--train-every", type=int, default=9, help="online: one trainer step per N frames")
  p.add_argument("--threshold", type=float, default=0.01, help="online: send threshold")
  p.add_argument("--holdout", type=int, default=4, help="online: newest frames that judge the send rule")
  p.add_argument("--rss", type=int, default=0, help="instead: peak RSS encoding this many 1080p frames")
  p.add_argument("--rss-video", default=None, help="instead: peak RSS of `experiments.oval encode` on it")
  p.add_argument("--encode-args", default="", help="--rss-video: more encode flags, e.g. config overrides")
  p.add_argument("--rss-every", type=float, default=5.0, help="--rss-video: seconds between RSS samples")
  p.add_argument("--reuse", default=None, help="the other methods' rows from this earlier --out")
  args = p.parse_args(argv)
  if not args.weights and not (args.checkpoint and (args.online or args.reuse)):
    p.error("--weights is needed (--online and --reuse also work from --checkpoint alone)")
  if args.rss or args.rss_video:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return rss_cli_study(args) if args.rss_video else rss_study(args)
  if args.online:
    return online_study(args)
  from experiments import oval

  models = []
  if not args.reuse:
    config = oval.get_config()
    model, params, _, _ = oval.load(config, None, argparse.Namespace(weights=args.weights, checkpoint=None))
    models.append(("OVAL faithful", model, params, config.model.to_dict(), "rgb", OVAL_SETTINGS))
  if args.checkpoint:
    m2, p2, c2, _ = oval.load(
      oval.get_config(), None, argparse.Namespace(weights=None, checkpoint=args.checkpoint)
    )
    settings = LEARNED_SETTINGS if m2.density_filters else TRAINED_SETTINGS
    models.append((args.label, m2, p2, c2.model.to_dict(), c2.data.color_space, settings))
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  report = ["# Learned-codec files vs classic codecs (bench/codec_rd.py)", ""]
  for video in args.videos:
    frames, fps = read_frames(video, args.max_frames)
    name = Path(video).stem
    print(f"{name}: {frames.shape}", flush=True)
    rows = []
    for label, m, prm, mc, cs, settings in models:
      rows += oval_rows(label, m, prm, mc, frames, fps, cs, settings=settings)
    if args.reuse:
      old = read_rows(Path(args.reuse) / f"rd_{name}.csv")
      rows += [r for r in old if not r["method"].startswith(args.label)]
    else:
      for q in JPEG_QUALITIES:
        rows.append(summarize("jpeg", f"q{q}", frames, *jpeg_codec(frames, q)))
      rows += video_codec_rows(frames, fps=fps)
    write_rows(rows, out / f"rd_{name}.csv", out / f"rd_{name}.md", title=name)
    plot_rd(
      rows,
      out / f"rd_{name}.png",
      title=f"{name} ({len(frames)} frames, {frames.shape[2]}x{frames.shape[1]})",
    )
    ent = [r for r in rows if r["method"] == "OVAL faithful Laplace"]
    tmp = [r for r in rows if r["method"] == "OVAL faithful Laplace temporal"]
    zl = [r for r in rows if r["method"] == "OVAL faithful zlib"]
    report += [
      f"## {name} ({len(frames)} frames, {frames.shape[2]}x{frames.shape[1]}, {fps:g} fps)",
      "",
      *bd_table(rows),
      "",
      f"Entropy coder vs zlib (OVAL faithful, BD-rate on PSNR, Pareto fronts): Laplace "
      f"{bd_rate(zl, ent):+.1f} %, Laplace temporal {bd_rate(zl, tmp):+.1f} %; "
      "same quantiser (step 0.8): "
      + ", ".join(
        f"{r['method'].removeprefix('OVAL faithful ')} {r['bytes_per_frame']:.0f} B/frame"
        for r in zl + ent + tmp
        if r["setting"].startswith("int16-step0.8")
      ),
      "",
      *(equal_rate_lines(rows, args.label) if args.checkpoint else []),
      f"Plot: {out / f'rd_{name}.png'}; table: {out / f'rd_{name}.md'}",
      "",
    ]
  (out / "bd.md").write_text("\n".join(report) + "\n")
  print("\n".join(report))


if __name__ == "__main__":
  main()
