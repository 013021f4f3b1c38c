"""Decode once: video folders, image folders and DAVIS into tensorflow-datasets array_record files.

    python -m aejax.data.prepare videos --src DIR --out DATA_DIR [--size 256] [--format jpeg]
    python -m aejax.data.prepare images --src DIR --out DATA_DIR [--valid-fraction 0.2 --seed 42]
    python -m aejax.data.prepare davis  --src DAVIS_ROOT --out DATA_DIR [--resolution 480p]

Formats written (one tfds builder each, `DATA_DIR/<name>/1.0.0/<name>-<split>.array_record-*`,
records in source order, with `dataset_info.json` and our `aejax_index_<split>.json`):

- `aejax_videos` (split `train`): one record per frame, videos one after another: `frame`
  (encoded JPEG or PNG bytes), `video` (index), `frame_index`. Per-video metadata (`path`,
  `label` = class folder or '', `fps`, `num_frames`, `height`, `width`, `offset` = its first
  record) is in `aejax_index_train.json`. Kinetics-style folders (`<class>/<video>`) and flat
  folders; mp4/avi/mkv/webm/mpeg.
  Corrupt, too short (`--min-frames`) or wrong-fps (`--fps`) files are skipped and listed in
  `--report` (default `DATA_DIR/prepare_report.json`).
- `aejax_images` (splits `train`, `valid`; everything in `train` with `--valid-fraction 0`): `image` (encoded
  bytes of the RGB uint8 image: grey, CMYK, palette, RGBA and 16-bit inputs are converted),
  `label` (class index), `class_name`, `path`. Caltech-256 split: `--valid-fraction 0.2 --seed 42`.
- `aejax_davis` (the splits listed in `ImageSets/2017`): one record per sequence: `frames`
  (encoded JPEG bytes), `masks` (lossless PNG bytes of the object-id maps), `name`, `palette`
  [256, 3].

Read them back with `tfds.data_source(name, data_dir=DATA_DIR)` (this module registers the
builders), or through `PreparedVideos` (a video collection for `VideoPairSource` /
`VideoClipSource`, decoding only the frames asked for), `PreparedImageSource` and
`PreparedDavisSource`. No TensorFlow is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import tensorflow_datasets as tfds

from aejax.data import sources as S
from aejax.data.video import VideoInfo, VideoReader, scan_videos

VERSION = "1.0.0"
_BYTES = tfds.features.Tensor(shape=(), dtype=np.object_)


def encode_frame(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
  """RGB (or single-channel) uint8 → encoded JPEG / PNG bytes."""
  img = rgb[..., ::-1] if rgb.ndim == 3 else rgb
  ext, params = (".png", []) if fmt == "png" else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])
  ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), params)
  if not ok:
    raise ValueError(f"cannot encode a frame of shape {rgb.shape} as {fmt}")
  return buf.tobytes()


def _resize_short(img: np.ndarray, size: int | None) -> np.ndarray:
  if not size:
    return img
  h, w = img.shape[:2]
  f = size / min(h, w)
  if f >= 1:
    return img
  return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                    interpolation=cv2.INTER_AREA)


class _Builder(tfds.core.GeneratorBasedBuilder):
  """Shared set-up: the source and options come in through the constructor, not a download."""

  VERSION = tfds.core.Version(VERSION)
  # No checksums or package metadata live beside this module; tfds would otherwise look them
  # up through `importlib_resources`, which is not a dependency.
  code_path = None

  def __init__(self, *, src=None, options=None, **kw):
    self.src, self.options, self.index = src, dict(options or {}), {}
    super().__init__(**kw)

  def _make_info(self, features: dict) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                 disable_shuffling=True, description=__doc__.split("\n")[0])

  def write_index(self) -> None:
    for split, rows in self.index.items():
      Path(self.data_dir, f"aejax_index_{split}.json").write_text(json.dumps(rows))


class AejaxVideos(_Builder):
  """Videos as encoded frames, one record per frame, in video order (random access per frame)."""

  def _info(self):
    return self._make_info({"frame": _BYTES, "video": tfds.features.Scalar(np.int32),
                            "frame_index": tfds.features.Scalar(np.int32)})

  def _split_generators(self, dl_manager):
    o = self.options
    infos = scan_videos(self.src, min_frames=o.get("min_frames", 1), fps=o.get("fps"),
                        report_path=o.get("report"), cache_path=o.get("cache_path", True))
    return {"train": self._generate_examples(infos)}

  def _generate_examples(self, infos: list[VideoInfo]):
    o, rows = self.options, self.index.setdefault("train", [])
    offset = 0
    for v, info in enumerate(infos):
      n, h, w = 0, 0, 0
      for frame in VideoReader(info.path):
        if o.get("max_frames") and n >= o["max_frames"]:
          break
        frame = _resize_short(frame, o.get("size"))
        h, w = frame.shape[:2]
        enc = encode_frame(frame, o.get("format", "jpeg"), o.get("quality", 95))
        yield f"{offset + n:012d}", {"frame": enc, "video": v, "frame_index": n}
        n += 1
      rows.append({"path": info.path, "label": info.label, "fps": info.fps, "num_frames": n,
                   "height": h, "width": w, "offset": offset})
      offset += n


class AejaxImages(_Builder):
  """Images (encoded RGB uint8) with class labels, split train / valid by seed and fraction."""

  def _info(self):
    return self._make_info({"image": _BYTES, "label": tfds.features.Scalar(np.int32),
                            "class_name": tfds.features.Text(), "path": tfds.features.Text()})

  def _split_generators(self, dl_manager):
    o = self.options
    frac = o.get("valid_fraction", 0.2)
    src = S.ImageFolderSource(self.src, split=None, report_path=o.get("report"))
    self.classes = src.classes
    if frac <= 0:
      return {"train": self._generate_examples(src, np.arange(len(src)), "train")}
    return {split: self._generate_examples(src, S.split_indices(len(src), split, frac,
                                                                o.get("seed", 42)), split)
            for split in ("train", "valid")}

  def _generate_examples(self, src, indices, split):
    o, rows = self.options, self.index.setdefault(split, [])
    for k, i in enumerate(indices):
      path, label = src.files[int(i)]
      try:
        img = _resize_short(S.load_image(path), o.get("size"))
      except (ValueError, OSError):
        continue
      name = self.classes[label] if label >= 0 else ""
      rows.append({"path": str(path), "label": int(label)})
      yield f"{k:09d}", {"image": encode_frame(img, o.get("format", "jpeg"), o.get("quality", 95)),
                         "label": int(label), "class_name": name, "path": str(path)}


class AejaxDavis(_Builder):
  """DAVIS-2017 sequences: encoded frames, lossless id masks, the palette."""

  def _info(self):
    return self._make_info({"frames": tfds.features.Sequence(_BYTES),
                            "masks": tfds.features.Sequence(_BYTES), "name": tfds.features.Text(),
                            "palette": tfds.features.Tensor(shape=(256, 3), dtype=np.uint8)})

  def _split_generators(self, dl_manager):
    sets = Path(self.src) / "ImageSets" / "2017"
    splits = sorted(p.stem for p in sets.glob("*.txt") if p.read_text().strip())
    if not splits:
      raise ValueError(f"{sets}: no non-empty split listing (train.txt / val.txt)")
    return {s: self._generate_examples(s) for s in splits}

  def _generate_examples(self, split):
    o = self.options
    src = S.DavisSource(self.src, split, resolution=o.get("resolution", "480p"))
    rows = self.index.setdefault(split, [])
    for i in range(len(src)):
      e = src[i]
      frames = [encode_frame(f, "jpeg", o.get("quality", 95)) for f in e["video"]]
      masks = [encode_frame(m, "png") for m in e["mask"]]
      rows.append({"name": src.name(i), "num_frames": len(frames)})
      yield f"{i:09d}", {"frames": frames, "masks": masks, "name": src.name(i),
                         "palette": src.palette(i)}


BUILDERS = {"videos": AejaxVideos, "images": AejaxImages, "davis": AejaxDavis}


def prepare(kind: str, src: str | Path, out: str | Path, **options) -> Path:
  """Prepares `src` as `kind` ("videos" | "images" | "davis") under `out`; returns its folder."""
  src, out = Path(src), Path(out)
  if not src.exists():
    raise FileNotFoundError(f"{src}: source folder not found")
  options.setdefault("report", out / "prepare_report.json")
  tfds.disable_progress_bar()
  builder = BUILDERS[kind](src=src, options=options, data_dir=str(out),
                           file_format="array_record")
  builder.download_and_prepare()
  builder.write_index()
  return Path(builder.data_dir)


# ------------------------------------------------------------------------------ reading back


def _data_source(data_dir, name: str, split: str):
  data_dir = Path(data_dir)
  if not (data_dir / name).is_dir():
    raise FileNotFoundError(f"{data_dir / name}: no prepared {name!r} data set")
  sources = tfds.data_source(name, data_dir=str(data_dir))
  if split not in sources:
    raise ValueError(f"{data_dir / name}: no split {split!r} (has {sorted(sources)})")
  return sources[split]


def _load_index(data_dir, name: str, split: str) -> list[dict]:
  path = Path(data_dir) / name / VERSION / f"aejax_index_{split}.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path}: prepared index missing (re-run aejax.data.prepare)")
  return json.loads(path.read_text())


class PreparedVideos:
  """A prepared `aejax_videos` split as a video collection (for `VideoPairSource` etc.).

  Frame j of video i is record `offset_i + j`; only the frames asked for are read and decoded.
  """

  def __init__(self, data_dir: str | Path, split: str = "train"):
    self.root, self.split = str(data_dir), split
    self.source = _data_source(data_dir, "aejax_videos", split)
    rows = _load_index(data_dir, "aejax_videos", split)
    total = sum(r["num_frames"] for r in rows)
    if total != len(self.source):
      raise ValueError(f"{data_dir}: index lists {total} frames, data has {len(self.source)}")
    self.infos = [VideoInfo(r["path"], r["fps"], r["num_frames"], r["height"], r["width"],
                            r["label"]) for r in rows]
    self.offsets = [r["offset"] for r in rows]
    if rows:  # the records must be in index order
      last = self.source[len(self.source) - 1]
      if int(last["video"]) != len(rows) - 1:
        raise ValueError(f"{data_dir}: records are not in video order (re-run prepare)")

  def __len__(self) -> int:
    return len(self.infos)

  def info(self, i: int) -> VideoInfo:
    return self.infos[i]

  def read(self, i: int, indices) -> np.ndarray:
    out = []
    for j in np.asarray(indices).reshape(-1):
      if not 0 <= j < self.infos[i].num_frames:
        raise ValueError(f"{self.infos[i].path}: frame {j} out of range "
                         f"[0, {self.infos[i].num_frames})")
      out.append(S.decode_image(self.source[self.offsets[i] + int(j)]["frame"],
                                f"{self.infos[i].path}[{j}]"))
    return np.stack(out)

  def __repr__(self) -> str:
    return f"PreparedVideos(root={self.root!r}, split={self.split!r}, n={len(self.infos)})"


class PreparedImageSource:
  """A prepared `aejax_images` split: elements `image` [H, W, 3] uint8, `label`, `index`."""

  def __init__(self, data_dir: str | Path, split: str = "train"):
    self.root, self.split = str(data_dir), split
    self.source = _data_source(data_dir, "aejax_images", split)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    r = self.source[int(index)]
    return {"image": S.decode_image(r["image"], r["path"]), "label": np.int32(r["label"]),
            "index": np.int32(index)}

  def __repr__(self) -> str:
    return f"PreparedImageSource(root={self.root!r}, split={self.split!r}, n={len(self)})"


class PreparedDavisSource:
  """A prepared `aejax_davis` split, elements as `DavisSource`'s (`video`, `mask`, `name`)."""

  def __init__(self, data_dir: str | Path, split: str = "val"):
    self.root, self.split = str(data_dir), split
    self.source = _data_source(data_dir, "aejax_davis", split)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    r = self.source[int(index)]
    name = r["name"].decode() if isinstance(r["name"], bytes) else str(r["name"])
    video = np.stack([S.decode_image(f, name) for f in r["frames"]])
    mask = np.stack([cv2.imdecode(np.frombuffer(m, np.uint8), cv2.IMREAD_UNCHANGED)
                     for m in r["masks"]])
    return {"video": video, "mask": mask, "name": np.asarray(name), "index": np.int32(index)}

  def palette(self, index: int) -> np.ndarray:
    return np.asarray(self.source[int(index)]["palette"], np.uint8)

  def __repr__(self) -> str:
    return f"PreparedDavisSource(root={self.root!r}, split={self.split!r}, n={len(self)})"


# -------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m aejax.data.prepare", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("kind", choices=sorted(BUILDERS), help="what --src holds")
  parser.add_argument("--src", required=True, help="the video folder, image folder or DAVIS root")
  parser.add_argument("--out", required=True, help="tfds data_dir to write into")
  parser.add_argument("--format", choices=("jpeg", "png"), default="jpeg",
                      help="frame/image encoding (DAVIS masks are always PNG)")
  parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
  parser.add_argument("--size", type=int, default=None,
                      help="downscale so the shorter side is at most this (videos, images)")
  parser.add_argument("--max-frames", type=int, default=None, help="keep the first N frames")
  parser.add_argument("--min-frames", type=int, default=1, help="skip shorter videos")
  parser.add_argument("--fps", type=float, default=None, help="skip videos at another fps")
  parser.add_argument("--valid-fraction", type=float, default=0.2, help="images: valid share")
  parser.add_argument("--seed", type=int, default=42, help="images: split seed")
  parser.add_argument("--resolution", default="480p", help="DAVIS resolution folder")
  parser.add_argument("--report", default=None, help="skip report path (JSON)")
  a = parser.parse_args(argv)
  opts = {"format": a.format, "quality": a.quality, "size": a.size, "max_frames": a.max_frames,
          "min_frames": a.min_frames, "fps": a.fps, "valid_fraction": a.valid_fraction,
          "seed": a.seed, "resolution": a.resolution}
  if a.report:
    opts["report"] = Path(a.report)
  try:
    path = prepare(a.kind, a.src, a.out, **opts)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"prepared {a.kind} from {a.src} into {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
