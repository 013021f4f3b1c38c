"""Decode-once preparation into tfds array_record files and the sources reading them back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from aejax.data import synthetic
from aejax.data.pipeline import make_loader
from aejax.data.prepare import PreparedDavisSource, PreparedImageSource, PreparedVideos, main, prepare
from aejax.data.sources import DavisSource, ImageFolderSource, VideoPairSource
from aejax.data.transforms import Resize
from aejax.data.video import VideoReader, scan_videos


def test_help_documents_formats(capsys):
  with pytest.raises(SystemExit) as e:
    main(["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  for word in ("aejax_videos", "aejax_images", "aejax_davis", "array_record", "tfds.data_source",
               "Kinetics", "Caltech-256"):
    assert word in out


def test_prepare_videos_round_trip(tmp_path):
  src = tmp_path / "vids"
  synthetic.write_video_folder(src, n=3, num_frames=14, size=(32, 40), classes=["a", "b"])
  (src / "a" / "broken.mp4").write_bytes(b"")
  assert main(["videos", "--src", str(src), "--out", str(tmp_path / "prep")]) == 0
  report = json.loads((tmp_path / "prep" / "prepare_report.json").read_text())
  assert report["kept"] == 3 and report["skipped"][0]["path"].endswith("broken.mp4")
  pv = PreparedVideos(tmp_path / "prep")
  infos = scan_videos(src, cache_path=False)
  assert [(i.path, i.label, i.num_frames) for i in pv.infos] == [
      (i.path, i.label, i.num_frames) for i in infos]
  got = pv.read(2, [0, 13, 5])
  ref = VideoReader(infos[2].path).read([0, 13, 5])
  assert got.shape == ref.shape and np.abs(got.astype(np.float32) - ref).mean() < 6  # JPEG q95, 4:2:0
  raw = tfds.data_source("aejax_videos", data_dir=str(tmp_path / "prep"))["train"]
  assert len(raw) == 3 * 14 and raw[14 + 5]["video"] == 1 and raw[14 + 5]["frame_index"] == 5
  assert [i.label for i in pv.infos] == ["a", "a", "b"] and pv.offsets == [0, 14, 28]
  pairs = VideoPairSource(pv, gap=(2, 8))
  e = pairs[4]
  np.testing.assert_array_equal(e["frames"], pv.read(pairs.keep[4 % 3], e["frame_index"]))


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
  it = make_loader(PreparedImageSource(tmp_path / "prep", "train"), batch_size=4,
                   transforms=[Resize((8, 8))], num_epochs=1)
  assert [b["image"].shape for b in it] == [(4, 8, 8, 3)] * 2
  prepare("images", root, tmp_path / "whole", valid_fraction=0, size=8)
  whole = PreparedImageSource(tmp_path / "whole", "train")
  assert len(whole) == 10 and whole[0]["image"].shape == (8, 10, 3)  # shorter side 16 -> 8


def test_prepare_davis(tmp_path):
  root = synthetic.write_davis_like(tmp_path / "davis", num_sequences=3, num_frames=4,
                                    size=(24, 32), num_train=1)
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
