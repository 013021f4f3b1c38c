"""`prepare images` and `prepare davis`: tensorflow-datasets builders and their readers.

- `aejax_images` (splits `train`, `valid`; everything in `train` with `valid_fraction=0`):
  `image` (encoded RGB uint8), `label`, `class_name`, `path`.
- `aejax_davis` (the splits listed in `ImageSets/2017`): one record per sequence: `frames`
  (JPEG bytes), `masks` (lossless PNG id maps), `name`, `palette` [256, 3].

Writing needs tensorflow-datasets (`pip install 'aejax[prepare]'`); reading back
(`PreparedImageSource`, `PreparedDavisSource`) uses tfds' array_record data source, no TensorFlow.
The command line is `python -m aejax.data.prepare images|davis` (see `aejax.data.prepare`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from aejax.data import sources as S
from aejax.data.prepare import VERSION, encode_frame, resize_short


def _tfds():
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise ImportError(
      "preparing images or DAVIS needs tensorflow-datasets: pip install 'aejax[prepare]'"
    ) from None
  return tfds


def _text(path) -> str:
  """A file name as valid UTF-8 text (bytes that are not UTF-8 become U+FFFD) for the records."""
  return os.fsencode(path).decode("utf-8", "replace")


_BUILDERS: dict = {}


_BUILDERS: dict = {}


def _builders() -> dict:
  """The tfds builders for images and DAVIS, defined (and registered) on first use."""
  if _BUILDERS:
    return _BUILDERS
  tfds = _tfds()
  bytes_ = tfds.features.Tensor(shape=(), dtype=np.object_)

  class _Builder(tfds.core.GeneratorBasedBuilder):
    """Shared set-up: the source and options come in through the constructor, not a download."""

    VERSION = tfds.core.Version(VERSION)
    # No checksums or package metadata live beside this module; tfds would otherwise look them
    # up through `importlib_resources`, which is not a dependency.
    code_path = None

    def __init__(self, *, src=None, options=None, **kw):
      self.src, self.options, self.index = src, dict(options or {}), {}
      super().__init__(**kw)

    def _make_info(self, features: dict):
      return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(features),
        disable_shuffling=True,
        description=__doc__.split("\n")[0],
      )

    def write_index(self) -> None:
      for split, rows in self.index.items():
        Path(self.data_dir, f"aejax_index_{split}.json").write_text(json.dumps(rows))

  class AejaxImages(_Builder):
    """Images (encoded RGB uint8) with class labels, split train / valid by seed and fraction."""

    def _info(self):
      return self._make_info(
        {
          "image": bytes_,
          "label": tfds.features.Scalar(np.int32),
          "class_name": tfds.features.Text(),
          "path": tfds.features.Text(),
        }
      )

    def _split_generators(self, dl_manager):
      o = self.options
      frac = o.get("valid_fraction", 0.2)
      src = S.ImageFolderSource(self.src, split=None, report_path=o.get("report"))
      self.classes = src.classes
      if frac <= 0:
        return {"train": self._generate_examples(src, np.arange(len(src)), "train")}
      return {
        split: self._generate_examples(src, S.split_indices(len(src), split, frac, o.get("seed", 42)), split)
        for split in ("train", "valid")
      }

    def _generate_examples(self, src, indices, split):
      o, rows = self.options, self.index.setdefault(split, [])
      for k, i in enumerate(indices):
        path, label = src.files[int(i)]
        try:
          img = resize_short(S.load_image(path), o.get("size"))
        except (ValueError, OSError):
          continue
        name = _text(self.classes[label]) if label >= 0 else ""
        rows.append({"path": _text(path), "label": int(label)})
        yield (
          f"{k:09d}",
          {
            "image": encode_frame(img, o.get("format", "jpeg"), o.get("quality", 95)),
            "label": int(label),
            "class_name": name,
            "path": _text(path),
          },
        )

  class AejaxDavis(_Builder):
    """DAVIS-2017 sequences: encoded frames, lossless id masks, the palette."""

    def _info(self):
      return self._make_info(
        {
          "frames": tfds.features.Sequence(bytes_),
          "masks": tfds.features.Sequence(bytes_),
          "name": tfds.features.Text(),
          "palette": tfds.features.Tensor(shape=(256, 3), dtype=np.uint8),
        }
      )

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
        yield f"{i:09d}", {"frames": frames, "masks": masks, "name": src.name(i), "palette": src.palette(i)}

  _BUILDERS.update(images=AejaxImages, davis=AejaxDavis)
  return _BUILDERS


def prepare_tfds(kind: str, src: str | Path, out: str | Path, **options) -> Path:
  """Prepares an image folder (`kind="images"`) or a DAVIS root (`"davis"`) under `out` with the
  tfds builders; returns the prepared folder."""
  if kind not in ("images", "davis"):
    raise ValueError(f"unknown kind {kind!r}: use 'images' or 'davis' (videos: prepare_videos)")
  src, out = Path(src), Path(out)
  if not src.exists():
    raise FileNotFoundError(f"{src}: source folder not found")
  options.setdefault("report", out / "prepare_report.json")
  tfds = _tfds()
  tfds.disable_progress_bar()
  builder = _builders()[kind](src=src, options=options, data_dir=str(out), file_format="array_record")
  builder.download_and_prepare()
  builder.write_index()
  return Path(builder.data_dir)


def _data_source(data_dir, name: str, split: str):
  data_dir = Path(data_dir)
  if not (data_dir / name).is_dir():
    raise FileNotFoundError(f"{data_dir / name}: no prepared {name!r} data set")
  _builders()
  sources = _tfds().data_source(name, data_dir=str(data_dir))
  if split not in sources:
    raise ValueError(f"{data_dir / name}: no split {split!r} (has {sorted(sources)})")
  return sources[split]


class _PreparedSplit:
  """One split of a prepared tfds set `NAME`, read through tfds' array_record data source."""

  NAME, SPLIT = "", ""  # the set's folder name and the default split

  def __init__(self, data_dir: str | Path, split: str | None = None):
    self.root, self.split = str(data_dir), split or self.SPLIT
    self.source = _data_source(data_dir, self.NAME, self.split)

  def __len__(self) -> int:
    return len(self.source)

  def __repr__(self) -> str:
    return f"{type(self).__name__}(root={self.root!r}, split={self.split!r}, n={len(self)})"


class PreparedImageSource(_PreparedSplit):
  """A prepared `aejax_images` split: elements `image` [H, W, 3] uint8, `label`, `index`."""

  NAME, SPLIT = "aejax_images", "train"

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    r = self.source[int(index)]
    return {
      "image": S.decode_image(r["image"], r["path"]),
      "label": np.int32(r["label"]),
      "index": np.int32(index),
    }


class PreparedDavisSource(_PreparedSplit):
  """A prepared `aejax_davis` split, elements as `DavisSource`'s (`video`, `mask`, `name`)."""

  NAME, SPLIT = "aejax_davis", "val"

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    r = self.source[int(index)]
    name = r["name"].decode() if isinstance(r["name"], bytes) else str(r["name"])
    video = np.stack([S.decode_image(f, name) for f in r["frames"]])
    mask = np.stack([cv2.imdecode(np.frombuffer(m, np.uint8), cv2.IMREAD_UNCHANGED) for m in r["masks"]])
    return {"video": video, "mask": mask, "name": np.asarray(name), "index": np.int32(index)}

  def palette(self, index: int) -> np.ndarray:
    """The sequence's [256, 3] uint8 palette."""
    return np.asarray(self.source[int(index)]["palette"], np.uint8)
