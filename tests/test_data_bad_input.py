"""Bad input: one-line errors naming the path, or skip-and-count with a written report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aejax.data import scan, synthetic, video
from aejax.data.pipeline import make_loader
from aejax.data.sources import (
  DavisSource,
  ImageFolderSource,
  MovingMNISTSource,
  VideoClipSource,
  VideoPairSource,
  load_image,
)


def _one_line(excinfo, path):
  msg = str(excinfo.value)
  assert "\n" not in msg and str(path) in msg, msg


@pytest.mark.parametrize(
  "make",
  [
    lambda p: ImageFolderSource(p),
    lambda p: scan.scan_videos(p),
    lambda p: DavisSource(p),
    lambda p: MovingMNISTSource(p),
    lambda p: video.VideoReader(p),
    lambda p: load_image(p),
    lambda p: VideoPairSource(p),
    lambda p: MovingMNISTSource(digits=p),
  ],
)
def test_missing_path(tmp_path, make):
  path = tmp_path / "does_not_exist"
  with pytest.raises(FileNotFoundError) as e:
    make(path)
  _one_line(e, path)


def test_empty_folder_and_folder_without_media(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  other = tmp_path / "docs"
  other.mkdir()
  (other / "readme.txt").write_text("hello")
  (other / "sub").mkdir()
  (other / "sub" / "data.csv").write_text("1,2")
  for path in (empty, other):
    with pytest.raises(ValueError, match="no image files") as e:
      ImageFolderSource(path)
    _one_line(e, path)
    with pytest.raises(ValueError, match="no video files") as e:
      scan.scan_videos(path)
    _one_line(e, path)
    with pytest.raises(ValueError, match="no video files") as e:
      VideoClipSource(path)
    _one_line(e, path)


def test_zero_byte_and_truncated_videos_are_skipped_with_report(tmp_path):
  root = tmp_path / "vids"
  good = synthetic.write_video_folder(root, n=2, num_frames=16, size=(32, 32))
  (root / "zero.mp4").write_bytes(b"")
  data = good[1].read_bytes()
  (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
  with pytest.raises(ValueError, match="zero-byte") as e:
    video.VideoReader(root / "zero.mp4")
  _one_line(e, root / "zero.mp4")
  report = tmp_path / "work" / "video_report.json"
  valid, rejected = scan.scan_videos(root, report_path=report, cache_path=False, return_rejected=True)
  assert sorted(v.path.split("/")[-1] for v in valid) == ["vid_0000.mp4", "vid_0001.mp4"]
  rep = json.loads(report.read_text())
  assert rep["kept"] == 2 and rep["skipped_count"] == 2
  reasons = {s["path"].split("/")[-1]: s["reason"] for s in rep["skipped"]}
  assert "zero-byte" in reasons["zero.mp4"]
  assert set(reasons) == {"zero.mp4", "truncated.mp4"}
  # A loader over the folder runs through whole epochs without crashing.
  src = VideoPairSource(root, gap=(2, 4), cache_path=False)
  it = make_loader(src, batch_size=2, num_epochs=2, shuffle=False)
  assert sum(1 for _ in it) == 2


def test_video_truncated_after_scan_is_skipped_mid_epoch(tmp_path):
  paths = synthetic.write_video_folder(tmp_path / "v", n=2, num_frames=12, size=(32, 32))
  infos = scan.scan_videos(tmp_path / "v", cache_path=False)
  # A stale scan (or a file damaged later) claims 40 frames where 12 exist.
  stale = [scan.VideoInfo(**{**vars(infos[0]), "num_frames": 40}), infos[1]]
  src = VideoClipSource(stale, num_frames=30, stride=1, hop=10)
  with pytest.raises(ValueError, match="cannot decode frame") as e:
    video.VideoReader(paths[0]).read([30])
  _one_line(e, paths[0])
  # infos[1] is too short for a 30-frame clip, so only the stale video remains; its clips fail.
  with pytest.raises(ValueError, match="no video could be decoded"):
    src[0]
  assert src.skipped and "cannot decode frame" in src.skipped[-1][1]
  mixed = VideoPairSource(stale, gap=(20, 30), reference_fps=None)
  assert len(mixed) == 1 and mixed.skipped[0][1].startswith("shorter than the gap")


def test_video_shorter_than_gap(tmp_path):
  root = tmp_path / "short"
  synthetic.write_video_folder(root, n=2, num_frames=10, size=(32, 32), fps=30.0)
  with pytest.raises(ValueError, match="shorter than the gap") as e:
    VideoPairSource(root, gap=(12, 48), cache_path=False)
  _one_line(e, root)
  synthetic.write_video_folder(root / "long", n=1, num_frames=30, size=(32, 32), fps=30.0, seed=5)
  report = tmp_path / "pairs.json"
  src = VideoPairSource(root, gap=(12, 48), cache_path=False, report_path=report)
  assert len(src) == 1 and len(src.skipped) == 2
  assert json.loads(report.read_text())["skipped_count"] == 2
  assert 12 <= src[0]["gap"] <= 29


def test_non_image_and_zero_byte_images(tmp_path):
  (tmp_path / "a").mkdir()
  fake = tmp_path / "a" / "photo.jpg"
  fake.write_bytes(b"GIF89a but not really an image at all")
  zero = tmp_path / "a" / "zero.png"
  zero.write_bytes(b"")
  with pytest.raises(ValueError, match="not a decodable image") as e:
    load_image(fake)
  _one_line(e, fake)
  with pytest.raises(ValueError, match="zero-byte") as e:
    load_image(zero)
  _one_line(e, zero)
  with pytest.raises(ValueError, match="none of the image files is readable") as e:
    ImageFolderSource(tmp_path, split=None, report_path=tmp_path / "rep.json")
  assert json.loads((tmp_path / "rep.json").read_text())["skipped_count"] == 2
  # A file that passes the header check but fails to decode later is skipped at read time.
  synthetic_img = synthetic.textured_images(1, (16, 16))[0]
  from PIL import Image

  Image.fromarray(synthetic_img).save(tmp_path / "a" / "good.png")
  src = ImageFolderSource(tmp_path, split=None, validate=False)
  assert len(src) == 3
  images = [src[i]["image"] for i in range(3)]
  assert all(np.array_equal(im, synthetic_img) for im in images)
  assert len(src.skipped) >= 2


def test_davis_missing_annotation_and_listing(tmp_path):
  root = synthetic.write_davis_like(tmp_path / "d", num_sequences=2, num_frames=3, size=(24, 32), num_train=0)
  name = (root / "ImageSets" / "2017" / "val.txt").read_text().split()[1]
  missing = root / "Annotations" / "480p" / name / "00001.png"
  missing.unlink()
  with pytest.raises(FileNotFoundError, match="missing DAVIS annotation") as e:
    DavisSource(root, "val")
  _one_line(e, missing)
  assert len(DavisSource(root, "val", first_frame_only=True)) == 2
  with pytest.raises(FileNotFoundError) as e:
    DavisSource(root, "test-dev")
  _one_line(e, root / "ImageSets" / "2017" / "test-dev.txt")
  (root / "ImageSets" / "2017" / "train.txt").write_text("ghost\n")
  with pytest.raises(ValueError, match="no JPEG frames") as e:
    DavisSource(root, "train")
  _one_line(e, root / "JPEGImages" / "480p" / "ghost")


def test_moving_mnist_bad_file(tmp_path):
  bad = tmp_path / "seq.npy"
  np.save(bad, np.zeros((20, 3, 64), np.float32))
  with pytest.raises(ValueError, match=r"expected \[T, N, H, W\] uint8") as e:
    MovingMNISTSource(bad)
  _one_line(e, bad)
  txt = tmp_path / "notnpy.npy"
  txt.write_text("nope")
  with pytest.raises(ValueError) as e:
    MovingMNISTSource(txt)
  _one_line(e, txt)


def test_write_video_checks(tmp_path):
  frames = synthetic.shapes_video(6, (32, 48), seed=0)["video"]
  with pytest.raises(ValueError, match="cannot write extension") as e:
    video.write_video(tmp_path / "clip.xyz", frames)
  _one_line(e, tmp_path / "clip.xyz")
  with pytest.raises(ValueError, match="uint8"):
    video.write_video(tmp_path / "clip.mp4", frames.astype(np.float32))
  with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
    video.write_video(tmp_path / "clip.mp4", frames[:0])
  for ext in (".avi", ".webm"):
    path = video.write_video(tmp_path / f"clip{ext}", frames, fps=10)
    r = video.VideoReader(path)
    assert r.num_frames == 6 and r.size == (32, 48)
    assert np.abs(r.read([3])[0].astype(np.float32) - frames[3]).mean() < 15
  grey = video.write_video(tmp_path / "grey.mp4", frames[..., 0])  # [T, H, W] accepted
  assert video.VideoReader(grey).read([0]).shape == (1, 32, 48, 3)
