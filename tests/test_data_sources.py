"""Sources: image folders (formats, Caltech split), arrays, video pairs/clips, DAVIS, MovingMNIST."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from aejax.data import scan, synthetic, video
from aejax.data.sources import (
  ArraySource,
  DavisSource,
  ImageFolderSource,
  MovingMNISTSource,
  VideoClipSource,
  VideoPairSource,
  load_image,
)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
  """A Caltech-256-style tree with every awkward image format, and two unreadable files."""
  root = tmp_path_factory.mktemp("caltech")
  cats = root / "256_ObjectCategories"
  a, b = cats / "001.ak47", cats / "002.american-flag"
  a.mkdir(parents=True)
  b.mkdir(parents=True)
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)
  expect = {}
  Image.fromarray(rgb).save(a / "rgb.png")
  expect["rgb.png"] = rgb
  grey = rgb[..., 0]
  Image.fromarray(grey, "L").save(a / "grey.png")
  expect["grey.png"] = np.repeat(grey[..., None], 3, -1)
  pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
  pal.save(a / "palette.png")
  expect["palette.png"] = np.asarray(pal.convert("RGB"))
  rgba = np.concatenate([rgb, rng.integers(0, 256, (20, 24, 1)).astype(np.uint8)], -1)
  Image.fromarray(rgba, "RGBA").save(b / "rgba.png")
  expect["rgba.png"] = rgb
  g16 = rng.integers(0, 65536, (20, 24)).astype(np.uint16)
  cv2.imwrite(str(b / "grey16.png"), g16)
  expect["grey16.png"] = np.repeat(np.rint(g16 / 257.0).astype(np.uint8)[..., None], 3, -1)
  c16 = rng.integers(0, 65536, (20, 24, 3)).astype(np.uint16)
  cv2.imwrite(str(b / "rgb16.png"), c16[..., ::-1])
  expect["rgb16.png"] = np.rint(c16 / 257.0).astype(np.uint8)
  Image.fromarray(rgb).convert("CMYK").save(b / "cmyk.jpg", quality=100)
  expect["cmyk.jpg"] = np.asarray(Image.open(b / "cmyk.jpg").convert("RGB"))
  for k in range(3):
    Image.fromarray(rgb // (k + 2)).save(b / f"extra{k}.jpg", quality=95)
  (a / "zero.jpg").write_bytes(b"")
  (b / "notes.png").write_text("not an image")
  return root, expect


def test_image_folder_formats_become_rgb_uint8(image_tree, tmp_path):
  root, expect = image_tree
  report = tmp_path / "skipped.json"
  src = ImageFolderSource(root, split=None, report_path=report)
  assert src.root.name == "256_ObjectCategories"
  assert src.classes == ["001.ak47", "002.american-flag"]
  assert len(src) == 10 and len(src.skipped) == 2
  rep = json.loads(report.read_text())
  assert rep["kept"] == 10 and {p["path"].split("/")[-1] for p in rep["skipped"]} == {"zero.jpg", "notes.png"}
  by_name = {p.name: (i, lab) for i, (p, lab) in enumerate(src.files)}
  for name, ref in expect.items():
    i, lab = by_name[name]
    e = src[i]
    assert e["image"].dtype == np.uint8 and e["image"].shape == (20, 24, 3), name
    assert int(e["label"]) == lab == (0 if name in ("rgb.png", "grey.png", "palette.png") else 1)
    tol = 3 if name == "cmyk.jpg" else 0
    assert np.abs(e["image"].astype(int) - ref).max() <= tol, name


def test_image_folder_caltech_split_deterministic(image_tree):
  root, _ = image_tree
  tr = ImageFolderSource.caltech256(root, "train")
  va = ImageFolderSource.caltech256(root, "valid")
  assert len(tr) == 8 and len(va) == 2  # 80 / 20 of 10
  names = lambda s: {str(p) for p, _ in s.files}
  assert names(tr).isdisjoint(names(va)) and len(names(tr) | names(va)) == 10
  assert names(ImageFolderSource(root, "valid", seed=42)) == names(va)
  others = [names(ImageFolderSource(root, "valid", seed=s)) for s in range(5)]
  assert any(o != names(va) for o in others)
  assert repr(tr) == repr(ImageFolderSource.caltech256(root, "train"))
  assert "split='train'" in repr(tr) and "seed=42" in repr(tr)


def test_image_folder_flat_real_photos(realdata):
  src = ImageFolderSource(realdata / "photos", split=None)
  assert len(src) == 26 and src.classes == [] and not src.skipped
  for i in range(len(src)):
    e = src[i]
    assert e["image"].ndim == 3 and e["image"].shape[-1] == 3 and e["label"] == -1
  path = next(p for p, _ in src.files if p.name == "opencv_baboon.jpg")
  ref = np.asarray(Image.open(path).convert("RGB")).astype(int)
  assert np.abs(load_image(path).astype(int) - ref).mean() < 1.0


def test_array_source():
  x = np.arange(5 * 4).reshape(5, 2, 2).astype(np.uint8)
  src = ArraySource({"image": x, "label": np.arange(5)}, name="toy")
  assert len(src) == 5
  e = src[3]
  np.testing.assert_array_equal(e["image"], x[3])
  assert e["label"] == 3 and e["index"] == 3
  assert repr(src) == "ArraySource('toy', image=uint8[5, 2, 2], label=int64[5])"
  with pytest.raises(ValueError, match="differ in length"):
    ArraySource({"a": np.zeros(3), "b": np.zeros(4)})


@pytest.fixture(scope="module")
def video_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("videos")
  synthetic.write_video_folder(
    root / "v30", n=2, num_frames=40, size=(32, 40), fps=30.0, classes=["run", "swim"]
  )
  synthetic.write_video_folder(root / "v15", n=2, num_frames=30, size=(32, 40), fps=15.0, seed=1)
  return root


def test_video_pair_source_gap_fps_and_frames(video_dirs):
  s30 = VideoPairSource(video_dirs / "v30", gap=(4, 12), seed=0, cache_path=False)
  s15 = VideoPairSource(video_dirs / "v15", gap=(4, 12), seed=0, cache_path=False)
  assert len(s30) == 2 and "gap=(4, 12)" in repr(s30)
  g30 = [int(s30.random_getitem(0, np.random.default_rng(k))["gap"]) for k in range(60)]
  g15 = [int(s15.random_getitem(0, np.random.default_rng(k))["gap"]) for k in range(60)]
  assert min(g30) == 4 and max(g30) == 12
  assert min(g15) == 2 and max(g15) == 6  # 4..12 frames at 30 fps = 2..6 frames at 15 fps
  e = s30[1]
  assert e["frames"].shape == (2, 32, 40, 3) and e["frames"].dtype == np.uint8
  fi = e["frame_index"]
  assert fi[1] - fi[0] == e["gap"] and 0 <= fi[0] and fi[1] < 40
  ref = video.VideoReader(s30.videos.info(1).path).read(fi)
  np.testing.assert_array_equal(e["frames"], ref)
  np.testing.assert_array_equal(s30[1]["frames"], e["frames"])  # a function of (seed, index)
  rep = VideoPairSource(video_dirs / "v30", gap=(4, 12), repeats=3, cache_path=False)[0]
  assert rep["frames"].shape == (3, 2, 32, 40, 3) and rep["frame_index"].shape == (3, 2)
  np.testing.assert_array_equal(rep["frame_index"][:, 1] - rep["frame_index"][:, 0], rep["gap"])


def test_video_clip_source_hop_stride_labels(video_dirs):
  src = VideoClipSource(video_dirs / "v30", num_frames=4, stride=3, hop=5, cache_path=False)
  span = 3 * 3 + 1
  assert len(src) == 2 * len(range(0, 40 - span + 1, 5))
  assert src.labels == {"run": 0, "swim": 1}
  e = src[len(src) - 1]
  start = int(e["start"])
  assert start == 30 and e["label"] == 1
  ref = video.VideoReader(src.videos.info(1).path).read(start + 3 * np.arange(4))
  np.testing.assert_array_equal(e["video"], ref)
  rnd = VideoClipSource(video_dirs / "v15", num_frames=4, stride=4, reference_fps=30.0, cache_path=False)
  assert len(rnd) == 2 and rnd._stride(rnd.videos.info(0)) == 2  # stride halves at 15 fps
  starts = {int(rnd.random_getitem(0, np.random.default_rng(k))["start"]) for k in range(40)}
  assert min(starts) >= 0 and max(starts) <= 30 - 7 and len(starts) > 5
  assert rnd[0]["label"] == -1


def test_real_videos_scan_counts_and_cache(realdata, tmp_path, monkeypatch):
  cache = tmp_path / "index.json"
  infos = scan.scan_videos(realdata / "videos", cache_path=cache)
  got = {i.path.split("/")[-1]: (i.num_frames, i.width, i.height, round(i.fps)) for i in infos}
  # The decodable counts, not CAP_PROP_FRAME_COUNT (which says 444 and 1 for these files).
  assert got == {"opencv_tree.avi": (68, 320, 240, 15), "visp_cube.mpeg": (79, 384, 288, 25)}
  monkeypatch.setattr(scan, "probe_video", lambda *a, **k: pytest.fail("cache not used"))
  assert scan.scan_videos(realdata / "videos", cache_path=cache) == infos
  monkeypatch.undo()
  wrong_fps = scan.scan_videos(realdata / "videos", fps=25.0, cache_path=cache, return_rejected=True)
  assert [i.path.split("/")[-1] for i in wrong_fps[0]] == ["visp_cube.mpeg"]
  assert wrong_fps[1][0].reason == "fps 15 != 25"
  fast = scan.scan_videos(realdata / "videos", cache_path=False, exact_count=False)
  assert [i.num_frames for i in fast] == [444, 79]  # trusts the AVI header; MPEG-1 has none
  src = VideoPairSource(realdata / "videos" / "opencv_tree.avi", gap=(4, 48), cache_path=cache)
  e = src[0]
  assert e["frames"].shape == (2, 240, 320, 3) and 2 <= e["gap"] <= 24


def test_video_reader_random_access_real(realdata):
  r = video.VideoReader(realdata / "videos" / "visp_cube.mpeg")
  assert r.size == (288, 384) and r.fps == 25.0 and r.num_frames == 79
  seq = r.read_all()
  np.testing.assert_array_equal(r.read([50, 3, 50, 78]), seq[[50, 3, 50, 78]])
  # The MPEG-1 frames are close to the pristine grey originals.
  png = cv2.imread(str(realdata / "frames" / "visp_cube" / "00010.png"), cv2.IMREAD_GRAYSCALE)
  assert np.abs(seq[10].mean(-1) - png).mean() < 8


def test_davis_source(tmp_path):
  root = synthetic.write_davis_like(tmp_path / "d", num_sequences=3, num_frames=5, size=(40, 56), num_train=1)
  seqs = synthetic.davis_like(3, 5, (40, 56))
  val = DavisSource(root, "val")
  assert len(val) == 2 and [val.name(i) for i in range(2)] == [s["name"] for s in seqs[1:]]
  e = val[0]
  assert e["video"].shape == (5, 40, 56, 3) and e["mask"].shape == (5, 40, 56)
  np.testing.assert_array_equal(e["mask"], seqs[1]["masks"])
  assert np.abs(e["video"].astype(np.float32) - seqs[1]["video"]).mean() < 12
  assert str(e["name"]) == seqs[1]["name"]
  np.testing.assert_array_equal(val.palette(0), synthetic.DAVIS_PALETTE)
  assert len(DavisSource(root, "train")) == 1 and len(DavisSource(root, None)) == 3
  first = DavisSource(root, "val", first_frame_only=True)[1]
  assert first["mask"].shape == (1, 40, 56)
  assert repr(val) == f"DavisSource(root='{root}', split='val', resolution='480p', n=2)"


def test_davis_writer_preserves_ids_and_custom_palette(tmp_path):
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (3, 16, 24, 3)).astype(np.uint8)
  masks = rng.integers(0, 6, (3, 16, 24)).astype(np.uint8)
  palette = rng.integers(0, 256, (256, 3)).astype(np.uint8)
  synthetic.write_davis_sequence(tmp_path, "seqA", video, masks, palette)
  (tmp_path / "ImageSets" / "2017").mkdir(parents=True)
  (tmp_path / "ImageSets" / "2017" / "val.txt").write_text("seqA\n")
  src = DavisSource(tmp_path, "val")
  e = src[0]
  np.testing.assert_array_equal(e["mask"], masks)
  np.testing.assert_array_equal(src.palette(0), palette)
  assert e["video"].shape == (3, 16, 24, 3)
  synthetic.write_davis_sequence(tmp_path / "pred", "seqA", masks=masks, resolution="")
  with Image.open(tmp_path / "pred" / "seqA" / "00002.png") as im:
    assert im.mode == "P"
    np.testing.assert_array_equal(np.asarray(im), masks[2])


def test_moving_mnist_file_memmap(tmp_path):
  arr = np.random.default_rng(0).integers(0, 256, (20, 6, 64, 64)).astype(np.uint8)
  np.save(tmp_path / "mnist_test_seq.npy", arr)
  src = MovingMNISTSource(tmp_path / "mnist_test_seq.npy")
  assert isinstance(src.array, np.memmap) and len(src) == 6
  e = src[4]
  assert e["video"].shape == (20, 64, 64, 1)
  np.testing.assert_array_equal(e["video"][..., 0], arr[:, 4])


def test_moving_mnist_generated_real_digits(realdata):
  npz = realdata / "mnist" / "mnist.npz"
  src = MovingMNISTSource(digits=npz, num_sequences=8, seed=3)
  assert len(src) == 8 and "mnist.npz:train" in repr(src)
  e = src[5]
  assert e["video"].shape == (20, 64, 64, 1) and e["label"].shape == (2,)
  with np.load(npz) as d:
    ref = synthetic.moving_digits(6, seed=3, digits=(d["x_train"], d["y_train"]))
  np.testing.assert_array_equal(e["video"], ref["video"][5])
  np.testing.assert_array_equal(e["label"], ref["labels"][5])
  emb = MovingMNISTSource(num_sequences=4)
  np.testing.assert_array_equal(emb[2]["video"], synthetic.moving_digits(3)["video"][2])
  a = src.random_getitem(0, np.random.default_rng(1))["video"]
  b = src.random_getitem(0, np.random.default_rng(2))["video"]
  assert not np.array_equal(a, b)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decode_image_applies_every_exif_orientation_like_pil(fmt):
  """All eight EXIF orientations come out upright, as PIL.ImageOps.exif_transpose shows them."""
  import io

  from PIL import Image, ImageOps

  from aejax.data.images import decode_image

  a = np.zeros((30, 50, 3), np.uint8)
  a[:10, :20] = 255
  a[20:, 30:, 1] = 200
  for orientation in range(1, 9):
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, fmt, exif=exif.tobytes())
    ref = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).convert("RGB"))
    got = decode_image(buf.getvalue())
    assert got.shape == ref.shape, orientation
    assert np.abs(got.astype(int) - ref.astype(int)).mean() < 3, orientation
