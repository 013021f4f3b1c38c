"""Decode-once preparation into array_record files and the sources reading them back.

Videos: sharded, resumable (an injected failure and a killed process both end, after a rerun, with
the set an uninterrupted run writes), skips listed, a non-zero exit when nothing survives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import grain
import numpy as np
import pytest
from PIL import Image

from aejax.data import prepare as P
from aejax.data import prepare_videos as PV
from aejax.data import synthetic
from aejax.data.images import decode_image
from aejax.data.pipeline import make_loader
from aejax.data.prepare import main, prepare
from aejax.data.prepare_images import PreparedDavisSource, PreparedImageSource
from aejax.data.prepare_videos import PreparedVideos, prepare_videos, video_folder
from aejax.data.scan import scan_videos
from aejax.data.sources import DavisSource, ImageFolderSource, VideoPairSource
from aejax.data.transforms import Resize
from aejax.data.video import VideoReader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_help_documents_formats(capsys):
  with pytest.raises(SystemExit) as e:
    main(["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  for word in (
    "aejax_videos",
    "aejax_images",
    "aejax_davis",
    "array_record",
    "tfds.data_source",
    "Kinetics",
    "Caltech-256",
  ):
    assert word in out


def _prepared(out):
  """Everything a prepared video set holds: index rows, shard names, every record's bytes."""
  folder = video_folder(out)
  rows = json.loads((folder / "aejax_index_train.json").read_text())
  pv = PreparedVideos(out)
  shards = sorted(p.name for p in folder.iterdir() if ".array_record-" in p.name)
  return rows, shards, [pv.source[k] for k in range(len(pv.source))]


def test_prepare_videos_round_trip(tmp_path):
  src = tmp_path / "vids"
  synthetic.write_video_folder(src, n=3, num_frames=14, size=(32, 40), classes=["a", "b"])
  (src / "a" / "broken.mp4").write_bytes(b"")
  assert (
    main(["videos", "--src", str(src), "--out", str(tmp_path / "prep"), "--workers", "1", "--quality", "95"])
    == 0
  )
  report = json.loads((tmp_path / "prep" / "prepare_report.json").read_text())
  assert report["kept"] == 3 and report["skipped"][0]["path"].endswith("broken.mp4")
  pv = PreparedVideos(tmp_path / "prep")
  infos = scan_videos(src, cache_path=False)
  assert [(i.path, i.label, i.num_frames) for i in pv.infos] == [
    (i.path, i.label, i.num_frames) for i in infos
  ]
  got = pv.read(2, [0, 13, 5])
  ref = VideoReader(infos[2].path).read([0, 13, 5])
  assert got.shape == ref.shape and np.abs(got.astype(np.float32) - ref).mean() < 6  # JPEG q95, 4:2:0
  # The shards hold one JPEG per record, videos one after another; no tensorflow-datasets needed.
  raw = grain.sources.ArrayRecordDataSource(
    sorted(
      str(p) for p in video_folder(tmp_path / "prep").glob("*.array_record-*-of-*") if p.suffix != ".json"
    )
  )
  assert len(raw) == 3 * 14
  np.testing.assert_array_equal(decode_image(raw[14 + 5]), pv.read(1, [5])[0])
  assert [i.label for i in pv.infos] == ["a", "a", "b"] and pv.offsets == [0, 14, 28]
  pairs = VideoPairSource(pv, gap=(2, 8))
  e = pairs[4]
  np.testing.assert_array_equal(e["frames"], pv.read(pairs.keep[4 % 3], e["frame_index"]))
  raw_pairs = VideoPairSource(src, gap=(2, 8), cache_path=False)  # the same draws, up to JPEG
  for k in range(5):
    a, b = pairs[k], raw_pairs[k]
    np.testing.assert_array_equal(a["frame_index"], b["frame_index"])
    assert np.abs(a["frames"].astype(np.float32) - b["frames"]).mean() < 6


def test_prepare_videos_resizes_and_reports_progress(tmp_path, capsys):
  src = tmp_path / "vids"
  synthetic.write_video_folder(src, n=2, num_frames=12, size=(48, 64), fps=25.0)
  prepare_videos(src, tmp_path / "prep", workers=1, size=24, max_frames=10, progress=0.0)
  pv = PreparedVideos(tmp_path / "prep")
  assert [(i.height, i.width, i.num_frames, i.fps) for i in pv.infos] == [(24, 32, 10, 25.0)] * 2
  cap = capsys.readouterr()
  assert "prepare videos: 2/2 (0 skipped)" in cap.err and "videos/s, ETA" in cap.err
  assert "prepared 2 videos (0 skipped" in cap.out and "20 frames" in cap.out
  assert "h of video" in cap.out and "kB/frame" in cap.out and "CPU-ms/frame" in cap.out


@pytest.fixture
def video_src(tmp_path):
  """Eight good videos in class folders, one corrupt, one too short, one at the wrong fps."""
  src = tmp_path / "src"
  synthetic.write_video_folder(src, n=8, num_frames=20, size=(32, 40), classes=["run", "swim"])
  (src / "run" / "corrupt.mp4").write_bytes(b"\x00" * 1000)
  synthetic.write_video_folder(src / "short", n=1, num_frames=5, size=(32, 40), seed=3)
  synthetic.write_video_folder(src / "slow", n=1, num_frames=20, size=(32, 40), fps=15.0, seed=4)
  return src


OPTS = dict(videos_per_shard=2, min_frames=10, fps=30.0, progress=None)


def test_prepare_videos_skips_are_listed(video_src, tmp_path):
  prepare_videos(video_src, tmp_path / "out", workers=1, **OPTS)
  rep = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
  reasons = {s["path"].split("src/")[-1]: s["reason"] for s in rep["skipped"]}
  assert rep["kept"] == 8 and rep["skipped_count"] == 3
  assert "cannot open this video" in reasons["run/corrupt.mp4"]
  assert reasons["short/vid_0000.mp4"] == "too short: 5 < 10 frames"
  assert reasons["slow/vid_0000.mp4"] == "fps 15 != 30"
  pv = PreparedVideos(tmp_path / "out")
  assert len(pv) == 8 and {i.label for i in pv.infos} == {"run", "swim"}


def test_prepare_videos_resumes_after_an_injected_failure(video_src, tmp_path, monkeypatch):
  prepare_videos(video_src, tmp_path / "whole", workers=1, **OPTS)
  calls = []
  real = PV.encode_video

  def failing(path, options):
    if len(calls) == 5:
      raise KeyboardInterrupt  # as Ctrl-C in the middle of the third shard
    calls.append(path)
    return real(path, options)

  monkeypatch.setattr(PV, "encode_video", failing)
  with pytest.raises(KeyboardInterrupt):
    prepare_videos(video_src, tmp_path / "resumed", workers=1, **OPTS)
  folder = video_folder(tmp_path / "resumed")
  done = sorted(p.name for p in folder.glob("*.json") if ".array_record-" in p.name)
  assert len(done) == 2 and not list(folder.glob(".*tmp*"))  # two shards finished, no leftovers
  assert not (folder / "aejax_index_train.json").exists()
  with pytest.raises(FileNotFoundError, match="did not finish"):
    PreparedVideos(tmp_path / "resumed")
  redone = []
  monkeypatch.setattr(PV, "encode_video", lambda path, o: redone.append(path) or real(path, o))
  prepare_videos(video_src, tmp_path / "resumed", workers=1, **OPTS)
  assert len(redone) == 11 - 4 and not set(redone) & set(calls[:4])  # finished shards kept
  assert _prepared(tmp_path / "resumed") == _prepared(tmp_path / "whole")
  with pytest.raises(ValueError, match="other options"):
    prepare_videos(video_src, tmp_path / "resumed", workers=1, **{**OPTS, "min_frames": 2})
  with pytest.raises(ValueError, match="prepared from"):
    prepare_videos(video_src / "run", tmp_path / "resumed", workers=1, **OPTS)


def test_prepare_videos_killed_process_resumes(video_src, tmp_path):
  """SIGKILL a 2-worker `python -m aejax.data.prepare` mid-run; the same command completes it."""
  prepare_videos(video_src, tmp_path / "whole", workers=1, **OPTS)
  out = tmp_path / "killed"
  cmd = [
    sys.executable,
    "-m",
    "aejax.data.prepare",
    "videos",
    "--src",
    str(video_src),
    "--out",
    str(out),
    "--workers",
    "2",
    "--videos-per-shard",
    "1",
    "--min-frames",
    "10",
    "--fps",
    "30",
  ]
  env = {**os.environ, "PYTHONPATH": ROOT}
  # One video per shard this time: another plan, compared with an uninterrupted run of its own.
  proc = subprocess.Popen(
    cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  folder = video_folder(out)
  deadline = time.time() + 120
  while time.time() < deadline and not list(folder.glob("*.array_record-*.json")):
    time.sleep(0.01)
  os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker processes
  proc.wait()
  done_at_kill = len(list(folder.glob("*.array_record-*.json")))
  assert 1 <= done_at_kill < 11 and not (folder / "aejax_index_train.json").exists()
  assert subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True).returncode == 0
  ref = subprocess.run([*cmd[:7], str(tmp_path / "ref"), *cmd[8:]], cwd=ROOT, env=env, capture_output=True)
  assert ref.returncode == 0
  assert _prepared(out) == _prepared(tmp_path / "ref")
  # The same frames as the 2-video-per-shard set: only the shard boundaries differ.
  rows, _, records = _prepared(out)
  whole_rows, _, whole_records = _prepared(tmp_path / "whole")
  assert records == whole_records
  assert [{k: v for k, v in r.items() if k != "shard"} for r in rows] == [
    {k: v for k, v in r.items() if k != "shard"} for r in whole_rows
  ]


def test_prepare_videos_nothing_survives(tmp_path, capsys):
  src = tmp_path / "bad"
  src.mkdir()
  (src / "a.mp4").write_bytes(b"")
  synthetic.write_video_folder(src, n=1, num_frames=4, size=(32, 32))
  code = main(
    ["videos", "--src", str(src), "--out", str(tmp_path / "out"), "--workers", "1", "--min-frames", "8"]
  )
  err = capsys.readouterr().err
  assert code == 1 and "none of 2 video files is usable" in err and "\n" not in err.strip()
  assert "empty (zero-byte) video file" in err and "too short: 4 < 8 frames" in err
  rep = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
  assert rep["kept"] == 0 and rep["skipped_count"] == 2


def test_tensorflow_datasets_is_optional(tmp_path, monkeypatch):
  code = (
    "import sys, aejax.data.prepare, aejax.data.sources, aejax.data.video; "
    "sys.exit('tensorflow_datasets' in sys.modules)"
  )
  assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
  with pytest.raises(ImportError, match=r"pip install 'aejax\[prepare\]'"):
    prepare("images", tmp_path, tmp_path / "out")


def test_prepare_images_png_exact_and_split(tmp_path):
  root = tmp_path / "imgs"
  imgs = synthetic.textured_images(10, (16, 20), seed=1)
  for k, im in enumerate(imgs):
    (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
    Image.fromarray(im).save(root / f"c{k % 2}" / f"{k}.png")
  out = prepare("images", root, tmp_path / "prep", format="png", valid_fraction=0.2, seed=42)
  assert out.is_dir()
  for split in ("train", "valid"):
    ref = ImageFolderSource(root, split=split)
    got = PreparedImageSource(tmp_path / "prep", split)
    assert len(got) == len(ref) == (8 if split == "train" else 2)
    for i in range(len(ref)):
      np.testing.assert_array_equal(got[i]["image"], ref[i]["image"])  # PNG is lossless
      assert got[i]["label"] == ref[i]["label"]
  it = make_loader(
    PreparedImageSource(tmp_path / "prep", "train"), batch_size=4, transforms=[Resize((8, 8))], num_epochs=1
  )
  assert [b["image"].shape for b in it] == [(4, 8, 8, 3)] * 2
  prepare("images", root, tmp_path / "whole", valid_fraction=0, size=8)
  whole = PreparedImageSource(tmp_path / "whole", "train")
  assert len(whole) == 10 and whole[0]["image"].shape == (8, 10, 3)  # shorter side 16 -> 8


def test_prepare_davis(tmp_path):
  root = synthetic.write_davis_like(
    tmp_path / "davis", num_sequences=3, num_frames=4, size=(24, 32), num_train=1
  )
  prepare("davis", root, tmp_path / "prep")
  for split, n in (("train", 1), ("val", 2)):
    ref, got = DavisSource(root, split), PreparedDavisSource(tmp_path / "prep", split)
    assert len(got) == n
    for i in range(n):
      a, b = ref[i], got[i]
      assert str(a["name"]) == str(b["name"])
      np.testing.assert_array_equal(a["mask"], b["mask"])
      assert np.abs(a["video"].astype(np.float32) - b["video"]).mean() < 4
      np.testing.assert_array_equal(got.palette(i), ref.palette(i))


def test_prepare_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="source folder not found"):
    prepare("videos", tmp_path / "nothing", tmp_path / "out")
  assert main(["images", "--src", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 1
  with pytest.raises(FileNotFoundError, match="no prepared 'aejax_videos'"):
    PreparedVideos(tmp_path / "out")


def test_prepare_videos_on_a_full_disk_is_one_line_and_resumes(video_src, tmp_path, capsys):
  """A real full disk (a small tmpfs; skipped where mounting is not allowed): one line, exit 1,
  finished shards kept, and the same command completes once space is free."""
  mnt = tmp_path / "mnt"
  mnt.mkdir()
  mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)]
  if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
    pytest.skip("cannot mount a tmpfs here")
  try:
    out = mnt / "prep"
    argv = ["videos", "--src", str(video_src), "--out", str(out), "--workers", "1"]
    argv += ["--videos-per-shard", "2", "--min-frames", "10", "--fps", "30", "--format", "png"]
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    (mnt / "filler").write_bytes(b"\0" * (free - 150_000))
    assert P.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and "run the same command again" in err
    (mnt / "filler").unlink()
    assert P.main(argv) == 0
    assert len(PreparedVideos(out).infos) == 8
  finally:
    subprocess.run(["umount", str(mnt)], check=False)
