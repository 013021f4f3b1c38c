"""The seeking PyAV reader, the metadata scan and its resumable cache, the H.264 writer."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest

from aejax.data import scan, synthetic, video
from aejax.data.sources import VideoClipSource, VideoPairSource
from bench.clips import kinetics_like

av = pytest.importorskip("av")


def _packets(path):
  with av.open(str(path)) as c:
    return [(p.pts, p.dts, p.is_keyframe) for p in c.demux(video=0) if p.size]


@pytest.fixture(scope="module")
def clips(realdata, tmp_path_factory):
  """Small H.264 clips cut from the real footage: B-frames, several GOPs of three kinds."""
  root = tmp_path_factory.mktemp("h264")
  tree, fps = video.read_frames(realdata / "videos" / "opencv_tree.avi")
  cube, fps2 = video.read_frames(realdata / "videos" / "visp_cube.mpeg")
  a = kinetics_like(tree, fps, seed=1, seconds=4, size=(64, 96))
  b = kinetics_like(cube, fps2, seed=2, seconds=4, size=(64, 96))
  return {
    # closed GOPs of 12 with 3 B-frames (b-pyramid: some B-frames are references)
    "gop12": video.write_video(
      root / "gop12.mp4", a, 30, codec="libx264", options={"g": 12, "bf": 3, "sc_threshold": 0}
    ),
    # open GOPs: leading B-frames after an I-frame refer back to the previous GOP
    "open": video.write_video(
      root / "open.mp4",
      b,
      30,
      codec="libx264",
      options={"x264-params": "keyint=20:min-keyint=20:open-gop=1:bframes=3"},
    ),
    # libx264's defaults, as `ffmpeg -c:v libx264`: scene-cut key frames
    "default": video.write_video(root / "default.mp4", np.concatenate([a[:50], b[:70]]), 30, codec="libx264"),
  }


def test_clips_have_b_frames_and_several_gops(clips):
  for name, path in clips.items():
    pk = _packets(path)
    assert sum(k for _, _, k in pk) >= 2, name  # several key frames
    pts = [p for p, _, _ in pk]
    assert pts != sorted(pts), name  # decode order differs from presentation order: B-frames
  assert len(_packets(clips["gop12"])) == 120


@pytest.mark.parametrize("name", ["gop12", "open", "default", "avi", "mpeg"])
def test_seek_equals_sequential(clips, realdata, name):
  path = clips.get(name) or realdata / "videos" / {"avi": "opencv_tree.avi", "mpeg": "visp_cube.mpeg"}[name]
  r = video.VideoReader(path)
  seq = np.stack([f for _, f in r.stream()])
  ix = r._ensure_index()
  assert ix is not None and len(ix.pts) == len(seq)  # these files seek (no sequential fallback)
  n = len(seq)
  rng = np.random.default_rng(0)
  keys = sorted(set(ix.start) - {-1})
  last = keys[-1]  # around the last key frame: the GOP boundary
  cases = [[n - 1, 0], list(range(n))[::-1], [last, last - 1, min(last + 1, n - 1)], [5, 5, 3, 5]]
  cases += [rng.integers(0, n, k).tolist() for k in (1, 2, 4, 7, 4, 2)]
  for idx in cases:
    np.testing.assert_array_equal(r.read(idx), seq[idx], err_msg=f"{name} {idx}")
  # increasing reads continue the open decoder; a fresh (unpickled) reader reopens it
  for i in range(0, n, 7):
    np.testing.assert_array_equal(r.read([i]), seq[[i]])
  clone = pickle.loads(pickle.dumps(r))
  np.testing.assert_array_equal(clone.read([n // 2, 1]), seq[[n // 2, 1]])
  r.close()
  np.testing.assert_array_equal(r.read([n - 2]), seq[[n - 2]])


def test_sequential_fallback_without_timestamps(clips, monkeypatch):
  monkeypatch.setattr(video._Index, "build", classmethod(lambda cls, c, s: None))
  r = video.VideoReader(clips["gop12"])
  seq = r.read_all()
  np.testing.assert_array_equal(r.read([50, 3, 119, 3]), seq[[50, 3, 119, 3]])
  with pytest.raises(video.FrameCountError, match="cannot decode frame 120"):
    r.read([120])


def test_index_disagreeing_with_the_decoder_falls_back(clips, monkeypatch):
  seq = video.VideoReader(clips["open"]).read_all()
  build = video._Index.build.__func__

  def shifted(cls, c, s):  # timestamps the decoder never reports
    ix = build(cls, c, s)
    return dataclasses.replace(ix, pts=[p + 1 for p in ix.pts])

  monkeypatch.setattr(video._Index, "build", classmethod(shifted))
  r = video.VideoReader(clips["open"])
  np.testing.assert_array_equal(r.read([70, 2]), seq[[70, 2]])
  assert r._index is None  # sequential from then on


def test_seek_skips_decoding(clips, monkeypatch):
  """A frame late in the file decodes from its key frame, not from frame 0."""
  r = video.VideoReader(clips["gop12"])
  r.read([0])
  fed = []
  orig = video.VideoReader._seek
  monkeypatch.setattr(
    video.VideoReader, "_seek", lambda self, ix, key: (fed.append(key), orig(self, ix, key))
  )
  r.read([110])
  assert fed and fed[-1] >= 96 and r._fed <= 120  # key frame at or after 96, few packets fed


def test_wrong_count_is_frame_count_error_and_a_counted_skip(clips):
  path = clips["gop12"]
  with pytest.raises(video.FrameCountError, match="cannot decode frame 500") as e:
    video.VideoReader(path).read([3, 500])
  assert isinstance(e.value, ValueError) and "\n" not in str(e.value) and str(path) in str(e.value)
  good = scan.probe_video(path)
  stale = scan.VideoInfo(**{**vars(good), "num_frames": 1000})  # a container claiming too much
  pairs = VideoPairSource([stale, good], gap=(4, 8), reference_fps=None, seed=0)
  for k in range(6):
    assert pairs[k]["frames"].shape == (2, 64, 96, 3)
  assert pairs.skipped and all("cannot decode frame" in r for _, r in pairs.skipped)
  clips_src = VideoClipSource([stale], num_frames=4, stride=1, hop=200)
  assert clips_src[0]["video"].shape == (4, 64, 96, 3)  # start 0 is inside the real file
  # starts 400, 600 and 800 lie past the real end: three counted skips, then the next clip
  assert clips_src[2]["start"] == 0 and len(clips_src.skipped) == 3
  assert all("cannot decode frame" in r for _, r in clips_src.skipped)


def test_metadata_scan_matches_exact_counts(clips, realdata, tmp_path):
  folder = tmp_path / "mixed"
  folder.mkdir()
  for name, path in clips.items():
    (folder / f"{name}.mp4").write_bytes(path.read_bytes())
  for f in (realdata / "videos").iterdir():
    (folder / f.name).write_bytes(f.read_bytes())
  fast = scan.scan_videos(folder, cache_path=False)
  exact = scan.scan_videos(folder, cache_path=False, exact_count=True)
  assert fast == exact and len(fast) == 5
  assert {i.path.split("/")[-1]: i.num_frames for i in fast} == {
    "gop12.mp4": 120,
    "open.mp4": 120,
    "default.mp4": 120,
    "opencv_tree.avi": 68,
    "visp_cube.mpeg": 79,
  }
  header = scan.scan_videos(folder, cache_path=False, exact_count=False)
  assert [i.num_frames for i in header if i.path.endswith(".avi")] == [444]  # the AVI header


def test_seek_window_starts_pairs_just_after_key_frames(clips):
  r = video.VideoReader(clips["gop12"])
  assert r.seek_points().tolist() == list(range(0, 120, 12))
  infos = scan.scan_videos(clips["gop12"], cache_path=False)
  near = VideoPairSource(infos, gap=(2, 8), reference_fps=None, repeats=4, seek_window=2, seed=0)
  uniform = VideoPairSource(infos, gap=(2, 8), reference_fps=None, repeats=4, seed=0)
  far = []
  for i in range(6):
    e = near[i]
    assert (e["frame_index"][:, 0] % 12 <= 2).all()
    assert (np.diff(e["frame_index"], axis=1)[:, 0] == e["gap"]).all()
    np.testing.assert_array_equal(e["frames"].reshape(-1, 64, 96, 3), r.read(e["frame_index"].reshape(-1)))
    far += (uniform[i]["frame_index"][:, 0] % 12 > 2).tolist()
  assert any(far)  # the default stays uniform (all 24 starts near a key frame: p = 4^-24)
  assert "seek_window=2" in repr(near) and "seek_window" not in repr(uniform)
  with pytest.raises(ValueError, match="seek_window"):
    VideoPairSource(infos, seek_window=-1)


def test_scan_cache_is_written_as_it_goes_and_resumes(clips, tmp_path, monkeypatch):
  folder = tmp_path / "vids"
  for k in range(5):
    (folder / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
    (folder / f"c{k % 2}" / f"v{k}.mp4").write_bytes(clips["gop12"].read_bytes())
  cache = tmp_path / "cache.json"
  monkeypatch.setattr(scan, "CACHE_FLUSH_SECONDS", 0.0)
  real_probe = scan.probe_video
  seen = []

  def interrupted(path, *a, **k):
    on_disk = json.loads(cache.read_text()) if cache.exists() else {}
    assert len(on_disk) == len(seen)  # every earlier probe is already on disk
    if len(seen) == 3:
      raise KeyboardInterrupt
    seen.append(path)
    return real_probe(path, *a, **k)

  monkeypatch.setattr(scan, "probe_video", interrupted)
  with pytest.raises(KeyboardInterrupt):
    scan.scan_videos(folder, cache_path=cache)
  assert len(json.loads(cache.read_text())) == 3
  assert not list(tmp_path.glob(".cache*tmp*"))  # atomic: no temporary file left behind
  resumed = []
  monkeypatch.setattr(scan, "probe_video", lambda p, *a, **k: resumed.append(p) or real_probe(p, *a, **k))
  infos = scan.scan_videos(folder, cache_path=cache)
  assert len(resumed) == 2 and not set(resumed) & set(seen)
  assert [i.label for i in infos] == ["c0", "c0", "c0", "c1", "c1"] and infos[0].num_frames == 120
  resumed.clear()
  assert scan.scan_videos(folder, cache_path=cache) == infos and not resumed
  scan.scan_videos(folder, cache_path=cache, exact_count=True)  # a stricter count re-reads
  assert len(resumed) == 5


def test_h264_writer_round_trip_and_atomic(tmp_path):
  frames = synthetic.shapes_video(10, (48, 64), seed=3)["video"]
  path = video.write_video(tmp_path / "x.mp4", frames, 25, codec="h264", options={"crf": 10})
  r = video.VideoReader(path)
  assert r.fps == 25.0 and r.size == (48, 64) and r.container_frames == 10
  err = np.abs(r.read_all().astype(np.float32) - frames).mean()
  mp4v = video.VideoReader(video.write_video(tmp_path / "z.mp4", frames, 25, codec="mp4v")).read_all()
  assert err < 8 and err < np.abs(mp4v.astype(np.float32) - frames).mean()  # better than mp4v
  with pytest.raises(RuntimeError):
    with video.VideoWriter(tmp_path / "y.mp4", 25, codec="libx264") as w:
      w.write(frames[0])
      raise RuntimeError("interrupted")
  assert not list(tmp_path.glob("*y.*")) and not list(tmp_path.glob(".y*"))


@pytest.mark.parametrize("size", [(48, 64), (47, 63)])
def test_mp4_is_browser_playable_h264_by_default(tmp_path, size):
  """.mp4 defaults to H.264 yuv420p (what browsers play); odd sizes are padded, never cropped."""
  import av
  import cv2

  from aejax.metrics import psnr

  frames = synthetic.shapes_video(8, size, seed=5)["video"]
  frames = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames])  # 4:2:0 alone: ~21 dB unblurred
  path = video.write_video(tmp_path / "x.mp4", frames, 25)
  data = path.read_bytes()
  assert 0 < data.find(b"moov") < data.find(b"mdat")  # +faststart: the index first, playable while loading
  with av.open(str(path)) as c:
    s = c.streams.video[0]
    assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
    assert (s.codec_context.height, s.codec_context.width) == (size[0] + size[0] % 2, size[1] + size[1] % 2)
    got = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(s)])
  assert len(got) == len(frames)
  assert float(psnr(got[:, : size[0], : size[1]], frames, max_val=255.0).min()) > 30
  if size[1] % 2:  # the padded column repeats the last one
    assert np.abs(got[:, : size[0], -1].astype(int) - got[:, : size[0], -2]).mean() < 4
  avi = video.write_video(tmp_path / "x.avi", frames, 25)  # other containers: OpenCV as before
  with av.open(str(avi)) as c:
    assert c.streams.video[0].codec_context.name == "mjpeg"


def test_default_scan_cache_lives_outside_the_dataset(tmp_path, monkeypatch):
  """The default metadata cache is written to $AEJAX_CACHE, never into the (maybe read-only) data."""
  folder = tmp_path / "videos"
  synthetic.write_video_folder(folder, n=2, num_frames=8, size=(32, 32))
  before = sorted(p.name for p in folder.iterdir())
  monkeypatch.setenv("AEJAX_CACHE", str(tmp_path / "cache"))
  infos = scan.scan_videos(folder)
  assert sorted(p.name for p in folder.iterdir()) == before
  cache = scan.default_cache_path(folder)
  assert cache.is_relative_to(tmp_path / "cache") and cache.is_file()
  assert scan.scan_videos(folder) == infos  # read back from the cache
  assert scan.default_cache_path(folder) != scan.default_cache_path(tmp_path)
