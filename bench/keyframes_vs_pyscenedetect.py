"""Whole-process speed of `python -m experiments.keyframes extract` against PySceneDetect on the same
video (issue 15's target: extract within 3x PySceneDetect's wall time).

The video: one minute of real footage, 640x360 30 fps H.264, 24 shots cut from
../shared/realdata (`aejax.keyframes.cutset.make_real_set(..., num_videos=1, shots_per_video=24,
seed=7, formats=((360, 640, 30.0),))`), made once under `--dir`. A: the extract command (its extra
arguments after `--`, e.g. `--weights MS_SSIM_L1-epoch-50.pth`), B: `detect(video, ContentDetector())`
of PySceneDetect in a fresh interpreter. They run in turn (one untimed warm-up each, then A B A B
...), each a child process timed from outside: wall (monotonic clock around the child) and CPU
(the child's user + system time from `resource.getrusage(RUSAGE_CHILDREN)`). Ratios are taken
pair by pair, then the median, so a machine that speeds up or slows down during the run moves
both sides of a pair. Needs `pip install scenedetect` (and opencv, which it uses).

  python bench/keyframes_vs_pyscenedetect.py -n 5 -- --weights MS_SSIM_L1-epoch-50.pth
  python bench/keyframes_vs_pyscenedetect.py -n 5 -- --checkpoint WORKDIR
  python bench/keyframes_vs_pyscenedetect.py -n 5                      # raw pixels, no model
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
VIDEO = dict(num_videos=1, shots_per_video=24, seed=7, formats=((360, 640, 30.0),))  # `make_real_set`
PEER = """import sys
from scenedetect import ContentDetector, detect
print(len(detect(sys.argv[1], ContentDetector())))
"""


def make_video(folder: Path) -> Path:
  """The one-minute 640x360 30 fps test video (made once)."""
  path = folder / "real_00_640x360_30fps.mp4"
  if not path.is_file():
    sys.path.insert(0, str(ROOT))
    from aejax.keyframes.cutset import make_real_set

    make_real_set(folder, REALDATA / "photos", REALDATA / "videos", **VIDEO)
  return path


def timed(cmd: list[str]) -> tuple[float, float]:
  """(wall, CPU) seconds of one child process; its output is discarded, a failure raises."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  t0 = time.monotonic()
  subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
  wall = time.monotonic() - t0
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> dict:
  """Runs the comparison and prints medians and paired ratios (see the module docstring)."""
  args = sys.argv[1:] if argv is None else list(argv)
  extra = args[args.index("--") + 1 :] if "--" in args else []
  args = args[: args.index("--")] if "--" in args else args
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("-n", type=int, default=5, help="timed runs of each command")
  ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "aejax_kf_speed"), help="work folder")
  opts = ap.parse_args(args)
  folder = Path(opts.dir)
  folder.mkdir(parents=True, exist_ok=True)
  video = make_video(folder)
  (folder / "peer.py").write_text(PEER)
  a = [sys.executable, "-m", "experiments.keyframes", "extract", "--video", str(video)]
  a += ["--out", str(folder / "out"), "--workdir", str(folder / "work"), "--overwrite", *extra]
  b = [sys.executable, str(folder / "peer.py"), str(video)]
  timed(a), timed(b)  # warm-up: file cache, compilation cache
  runs = []
  for _ in range(opts.n):
    runs.append((*timed(a), *timed(b), os.getloadavg()[0]))
  med = lambda xs: round(statistics.median(xs), 3)
  res = {
    "a_wall": med(r[0] for r in runs),
    "a_cpu": med(r[1] for r in runs),
    "b_wall": med(r[2] for r in runs),
    "b_cpu": med(r[3] for r in runs),
    "wall_ratio": med(r[0] / r[2] for r in runs),
    "cpu_ratio": med(r[1] / r[3] for r in runs),
    "load": med(r[4] for r in runs),
    "extract_args": extra,
  }
  print(res)
  return res


if __name__ == "__main__":
  main()
