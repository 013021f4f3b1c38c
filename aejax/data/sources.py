"""Grain random-access sources: image folders, arrays, video pairs and clips, DAVIS-2017, MovingMNIST.

Every source has `__len__`, `__getitem__` and a deterministic `__repr__` (Grain compares it when
restoring an iterator). Sources whose elements are random draws (video pairs, clips, generated
MovingMNIST) also have `random_getitem(index, rng)`: `make_loader` uses it so each epoch draws new
pairs, while `source[i]` stays a fixed function of (seed, i).

Bad files are skipped and counted (`.skipped`, and a JSON report when `report_path` is given);
a missing or empty dataset is a one-line error naming the path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from aejax.data import synthetic
from aejax.data.video import VideoInfo, VideoReader, scan_videos, write_report

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm")


# ---------------------------------------------------------------------------------- images


def to_rgb_uint8(arr: np.ndarray, bgr: bool = False) -> np.ndarray:
  """Any decoded image (grey, grey+alpha, RGB(A)/BGR(A), 8/16-bit, float) → RGB uint8 [H, W, 3]."""
  arr = np.asarray(arr)
  if arr.dtype == np.uint16:
    arr = ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
  elif arr.dtype.kind == "f":
    arr = np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8)
  elif arr.dtype != np.uint8:
    arr = np.clip(arr, 0, 255).astype(np.uint8)
  if arr.ndim == 2:
    arr = arr[..., None]
  c = arr.shape[-1]
  if c in (1, 2):  # grey, grey + alpha
    return np.repeat(arr[..., :1], 3, axis=-1)
  if bgr:  # cvtColor is much faster than a strided channel flip
    return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB if c == 4 else cv2.COLOR_BGR2RGB)
  return np.ascontiguousarray(arr[..., :3])  # drop alpha


def decode_image(data: bytes, name: str | Path = "<bytes>") -> np.ndarray:
  """Encoded image bytes → RGB uint8 [H, W, 3] (OpenCV, falling back to PIL for GIF etc.)."""
  if not data:
    raise ValueError(f"{name}: empty (zero-byte) image file")
  arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  if arr is not None:
    return to_rgb_uint8(arr, bgr=True)
  import io

  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(io.BytesIO(data)) as im:
      if im.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
      return to_rgb_uint8(np.asarray(im))
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise ValueError(f"{name}: not a decodable image ({type(e).__name__})") from None


def load_image(path: str | Path) -> np.ndarray:
  """Reads an image file as RGB uint8 [H, W, 3]; one-line errors naming the path."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: image file not found")
  return decode_image(path.read_bytes(), path)


def _check_image_header(path: Path) -> str | None:
  """A cheap validity check (size and header); returns the reason when unusable."""
  from PIL import Image
  try:
    if path.stat().st_size == 0:
      return "zero-byte file"
    with Image.open(path) as im:
      im.verify()
  except Exception as e:  # noqa: BLE001 - any failure means "skip this file"
    return f"not a readable image ({type(e).__name__})"
  return None


def split_indices(n: int, split: str | None, valid_fraction: float, seed: int) -> np.ndarray:
  """Deterministic train/valid split of range(n): a seeded permutation, valid = the first part."""
  if split is None:
    return np.arange(n)
  if split not in ("train", "valid"):
    raise ValueError(f"split must be 'train', 'valid' or None, got {split!r}")
  perm = np.random.default_rng(seed).permutation(n)
  n_valid = int(round(n * valid_fraction))
  return np.sort(perm[:n_valid] if split == "valid" else perm[n_valid:])


class ImageFolderSource:
  """Images from a folder: class sub-folders (ImageNet / Caltech-256 layout) or flat.

  Caltech-256 (`256_ObjectCategories/<nnn>.<name>/*.jpg`) is found when `root` is the folder or
  its parent. Labels are the sorted class-folder index (-1 for a flat folder). Unreadable files
  (zero-byte, not an image) are skipped and counted at construction; a file that fails to decode
  later is replaced by the next good one and counted in `.skipped` of that process.

  Elements: `image` [H, W, 3] uint8 (RGB, from grey / CMYK / palette / RGBA / 16-bit too),
  `label` int32, `index` int32.
  """

  def __init__(self, root: str | Path, split: str | None = "train", valid_fraction: float = 0.2,
               seed: int = 42, extensions: Sequence[str] = IMAGE_EXTENSIONS,
               validate: bool = True, report_path: str | Path | None = None):
    root = Path(root)
    if not root.exists():
      raise FileNotFoundError(f"{root}: image folder not found")
    if not root.is_dir():
      raise ValueError(f"{root}: not a folder")
    if (root / "256_ObjectCategories").is_dir():
      root = root / "256_ObjectCategories"
    self.root, self.split, self.valid_fraction, self.seed = root, split, valid_fraction, seed
    exts = {e.lower() for e in extensions}
    is_img = lambda p: p.is_file() and p.suffix.lower() in exts
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and any(map(is_img, d.rglob("*"))))
    if class_dirs:
      self.classes = [d.name for d in class_dirs]
      files = [(p, c) for c, d in enumerate(class_dirs) for p in sorted(filter(is_img,
                                                                               d.rglob("*")))]
    else:
      self.classes = []
      files = [(p, -1) for p in sorted(filter(is_img, root.iterdir()))]
    if not files:
      raise ValueError(f"{root}: no image files ({', '.join(sorted(exts))}) found")
    self.skipped: list[tuple[str, str]] = []
    if validate:
      good = []
      for p, c in files:
        reason = _check_image_header(p)
        if reason is None:
          good.append((p, c))
        else:
          log.warning("skipping %s: %s", p, reason)
          self.skipped.append((str(p), reason))
      files = good
    if report_path is not None:
      write_report(report_path, root, len(files), self.skipped)
    if not files:
      raise ValueError(f"{root}: none of the image files is readable")
    keep = split_indices(len(files), split, valid_fraction, seed)
    self.files = [files[i] for i in keep]

  @classmethod
  def caltech256(cls, root: str | Path, split: str | None = "train", **kw) -> ImageFolderSource:
    """Caltech-256 with the key-frame paper's 80/20 split, seed 42."""
    return cls(root, split=split, valid_fraction=0.2, seed=42, **kw)

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    n = len(self.files)
    for k in range(n):
      path, label = self.files[(int(index) + k) % n]
      try:
        image = load_image(path)
      except (ValueError, OSError) as e:
        log.warning("skipping %s", e)
        self.skipped.append((str(path), str(e)))
        continue
      return {"image": image, "label": np.int32(label), "index": np.int32(index)}
    raise ValueError(f"{self.root}: no file of the split could be decoded")

  def __repr__(self) -> str:
    return (f"ImageFolderSource(root={str(self.root)!r}, split={self.split!r}, "
            f"valid_fraction={self.valid_fraction}, seed={self.seed}, n={len(self.files)})")


class ArraySource:
  """In-memory arrays as a source: element i is `{k: v[i]}` (plus `index`)."""

  def __init__(self, arrays: dict[str, np.ndarray], name: str = ""):
    if not arrays:
      raise ValueError("ArraySource: no arrays given")
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    lens = {k: len(v) for k, v in self.arrays.items()}
    if len(set(lens.values())) != 1:
      raise ValueError(f"ArraySource: arrays differ in length: {lens}")
    self._n, self.name = next(iter(lens.values())), name

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    out = {k: v[int(index)] for k, v in self.arrays.items()}
    out.setdefault("index", np.int32(index))
    return out

  def __repr__(self) -> str:
    fields = ", ".join(f"{k}={v.dtype}{list(v.shape)}" for k, v in self.arrays.items())
    return f"ArraySource({self.name!r}, {fields})"


# ---------------------------------------------------------------------------------- videos


class VideoFiles:
  """A list of scanned video files with frame access: the collection behind pair/clip sources.

  Each thread keeps its own open `VideoReader` (FFmpeg decoders must not be shared between the
  threads Grain reads with).
  """

  def __init__(self, infos: Sequence[VideoInfo], root: str | Path = ""):
    self.infos, self.root = list(infos), str(root)
    self._local = threading.local()

  def __len__(self) -> int:
    return len(self.infos)

  def info(self, i: int) -> VideoInfo:
    return self.infos[i]

  def read(self, i: int, indices: Sequence[int]) -> np.ndarray:
    info = self.infos[i]
    reader = getattr(self._local, "reader", None)
    if reader is None or str(reader.path) != info.path:
      if reader is not None:
        reader.close()
      reader = self._local.reader = VideoReader(info.path, num_frames=info.num_frames)
    return reader.read(indices)

  def __getstate__(self):
    return {k: v for k, v in self.__dict__.items() if k != "_local"}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._local = threading.local()

  def __repr__(self) -> str:
    return f"VideoFiles(root={self.root!r}, n={len(self.infos)})"


def as_videos(videos, **scan_kwargs):
  """A folder / file path, a list of `VideoInfo`, or a collection (`VideoFiles`, prepared)."""
  if isinstance(videos, (str, Path)):
    return VideoFiles(scan_videos(videos, **scan_kwargs), root=videos)
  if isinstance(videos, (list, tuple)):
    return VideoFiles(videos)
  return videos


def _fps_scale(fps: float, reference_fps: float | None) -> float:
  return 1.0 if not reference_fps or fps <= 0 else fps / reference_fps


class _VideoSampler:
  """Shared machinery: a video collection, per-video limits, skip-and-count, repeatable draws."""

  def _setup(self, videos, seed, report_path, need, scan_kwargs):
    self.videos = as_videos(videos, **scan_kwargs)
    self.seed = seed
    self.skipped: list[tuple[str, str]] = []
    self.keep = []
    for i in range(len(self.videos)):
      info = self.videos.info(i)
      reason = need(info)
      if reason:
        self.skipped.append((info.path, reason))
        log.warning("skipping %s: %s", info.path, reason)
      else:
        self.keep.append(i)
    if report_path is not None:
      write_report(report_path, getattr(self.videos, "root", ""), len(self.keep), self.skipped)
    if not self.keep:
      raise ValueError(f"{getattr(self.videos, 'root', '') or 'videos'}: no usable video "
                       f"({self.skipped[0][1] if self.skipped else 'empty list'})")

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return self.random_getitem(index, np.random.default_rng([self.seed, int(index)]))

  def random_getitem(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(self.keep)
    base = self._video_of(int(index))
    for k in range(n):
      v = self.keep[(base + k) % n]
      try:
        out = self._sample(v, rng)
      except (ValueError, OSError) as e:  # truncated / corrupt despite the scan: skip it
        log.warning("skipping %s", e)
        self.skipped.append((self.videos.info(v).path, str(e)))
        continue
      out["index"] = np.int32(index)
      return out
    raise ValueError(f"{getattr(self.videos, 'root', '') or 'videos'}: no video could be decoded")


class VideoPairSource(_VideoSampler):
  """Frame pairs (f1, f2) with f2 - f1 = gap drawn uniformly from `gap` frames at `reference_fps`.

  SiamMAE samples gaps of 4–48 frames at 30 fps; for a video at another fps the range is scaled
  by fps / 30. Videos not longer than the (scaled) minimum gap are skipped and counted.

  Elements: `frames` [2, H, W, 3] uint8 (or [R, 2, H, W, 3] with `repeats=R`: R pairs from one
  decoded video, the repeated sampling of MAE-ST/SiamMAE), `gap` int32 (or [R]), `frame_index`
  [2] int32 (or [R, 2]), `index`.
  """

  def __init__(self, videos, *, gap: tuple[int, int] = (4, 48), reference_fps: float | None = 30.0,
               repeats: int = 1, seed: int = 0, report_path: str | Path | None = None,
               **scan_kwargs):
    if not 1 <= gap[0] <= gap[1]:
      raise ValueError(f"gap must satisfy 1 <= min <= max, got {gap}")
    self.gap, self.reference_fps, self.repeats = tuple(gap), reference_fps, repeats

    def need(info: VideoInfo) -> str:
      gmin = self._gaps(info)[0]
      if info.num_frames <= gmin:
        return f"shorter than the gap: {info.num_frames} frames <= gap {gmin}"
      return ""
    self._setup(videos, seed, report_path, need, scan_kwargs)

  def _gaps(self, info: VideoInfo) -> tuple[int, int]:
    s = _fps_scale(info.fps, self.reference_fps)
    gmin = max(1, int(round(self.gap[0] * s)))
    gmax = max(gmin, int(round(self.gap[1] * s)))
    return gmin, min(gmax, max(gmin, info.num_frames - 1))

  def __len__(self) -> int:
    return len(self.keep)

  def _video_of(self, index: int) -> int:
    return index % len(self.keep)

  def _sample(self, v: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    info = self.videos.info(v)
    gmin, gmax = self._gaps(info)
    gaps = rng.integers(gmin, gmax + 1, self.repeats)
    starts = rng.integers(0, info.num_frames - gaps)
    idx = np.stack([starts, starts + gaps], -1)  # [R, 2]
    frames = self.videos.read(v, idx.reshape(-1))  # [R * 2, H, W, 3]
    frames = frames.reshape(*idx.shape, *frames.shape[1:])  # [R, 2, H, W, 3]
    if self.repeats == 1:
      return {"frames": frames[0], "gap": np.int32(gaps[0]), "frame_index": idx[0].astype(np.int32)}
    return {"frames": frames, "gap": gaps.astype(np.int32), "frame_index": idx.astype(np.int32)}

  def __repr__(self) -> str:
    return (f"VideoPairSource({self.videos!r}, gap={self.gap}, reference_fps={self.reference_fps}"
            f", repeats={self.repeats}, seed={self.seed}, n={len(self.keep)})")


class VideoClipSource(_VideoSampler):
  """Clips of `num_frames` frames taken every `stride` frames.

  With `hop=None` each element is one clip at a random start in one video (len = number of
  videos); with `hop=k` the source enumerates every clip start 0, k, 2k, ... of every video.
  With `reference_fps`, the stride is scaled by fps / reference_fps (at least 1).

  Elements: `video` [T, H, W, 3] uint8, `label` int32 (class-folder index, -1 when flat),
  `start` int32, `index`.
  """

  def __init__(self, videos, *, num_frames: int = 16, stride: int = 1, hop: int | None = None,
               reference_fps: float | None = None, seed: int = 0,
               report_path: str | Path | None = None, **scan_kwargs):
    if num_frames < 1 or stride < 1:
      raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
    self.num_frames, self.stride, self.hop, self.reference_fps = num_frames, stride, hop, \
        reference_fps

    def need(info: VideoInfo) -> str:
      span = self._span(info)
      return f"too short for a clip: {info.num_frames} < {span} frames" if info.num_frames < span \
          else ""
    self._setup(videos, seed, report_path, need, scan_kwargs)
    labels = sorted({self.videos.info(i).label for i in self.keep} - {""})
    self.labels = {name: c for c, name in enumerate(labels)}
    if hop is not None:
      self.clips = [(v, s) for v in self.keep
                    for s in range(0, self.videos.info(v).num_frames - self._span(
                        self.videos.info(v)) + 1, hop)]

  def _stride(self, info: VideoInfo) -> int:
    return max(1, int(round(self.stride * _fps_scale(info.fps, self.reference_fps))))

  def _span(self, info: VideoInfo) -> int:
    return (self.num_frames - 1) * self._stride(info) + 1

  def __len__(self) -> int:
    return len(self.clips) if self.hop is not None else len(self.keep)

  def _video_of(self, index: int) -> int:
    if self.hop is not None:
      return self.keep.index(self.clips[index][0])
    return index % len(self.keep)

  def _sample(self, v: int, rng: np.random.Generator, start: int | None = None) -> dict:
    info = self.videos.info(v)
    if start is None:
      start = int(rng.integers(0, info.num_frames - self._span(info) + 1))
    idx = start + self._stride(info) * np.arange(self.num_frames)
    return {"video": self.videos.read(v, idx), "start": np.int32(start),
            "label": np.int32(self.labels.get(info.label, -1))}

  def random_getitem(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if self.hop is None:
      return super().random_getitem(index, rng)
    n = len(self.clips)
    for k in range(n):
      v, s = self.clips[(int(index) + k) % n]
      try:
        return {**self._sample(v, rng, start=s), "index": np.int32(index)}
      except (ValueError, OSError) as e:  # truncated / corrupt despite the scan: skip it
        log.warning("skipping %s", e)
        self.skipped.append((self.videos.info(v).path, str(e)))
    raise ValueError(f"{getattr(self.videos, 'root', '') or 'videos'}: no video could be decoded")

  def __repr__(self) -> str:
    return (f"VideoClipSource({self.videos!r}, num_frames={self.num_frames}, stride={self.stride}"
            f", hop={self.hop}, reference_fps={self.reference_fps}, seed={self.seed}, "
            f"n={len(self)})")


# ----------------------------------------------------------------------------------- DAVIS


def read_indexed_png(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
  """An indexed (palette) PNG → (ids [H, W] uint8, palette [256, 3] uint8)."""
  try:
    from aejax.davis import read_indexed_png as davis_read
  except ImportError:
    davis_read = None
  if davis_read is not None:
    return davis_read(path)
  from PIL import Image
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: annotation not found")
  with Image.open(path) as im:
    if im.mode != "P":
      raise ValueError(f"{path}: annotation is not an indexed (palette) PNG (mode {im.mode})")
    pal = np.asarray(im.getpalette() or [], np.uint8)
    pal = np.pad(pal, (0, 768 - len(pal)))[:768].reshape(256, 3)
    return np.asarray(im, np.uint8), pal


class DavisSource:
  """DAVIS-2017 sequences: `JPEGImages/<res>/<seq>/*.jpg`, `Annotations/<res>/<seq>/*.png`.

  Elements (one per sequence): `video` [T, H, W, 3] uint8, `mask` [T, H, W] uint8 object ids
  (only the first frame's when `first_frame_only`), `name` (0-d str array), `index`. The palette
  of the first annotation is in `.palette(i)`. Every sequence is checked at construction: a
  missing frame folder or annotation is a one-line error naming the path.
  """

  def __init__(self, root: str | Path, split: str | None = "val", resolution: str = "480p",
               year: str = "2017", first_frame_only: bool = False):
    root = Path(root)
    if not root.is_dir():
      raise FileNotFoundError(f"{root}: DAVIS folder not found")
    self.root, self.split, self.resolution, self.first_frame_only = (root, split, resolution,
                                                                     first_frame_only)
    jroot, aroot = root / "JPEGImages" / resolution, root / "Annotations" / resolution
    if not jroot.is_dir():
      raise FileNotFoundError(f"{jroot}: DAVIS JPEGImages folder not found")
    if split is None:
      names = sorted(d.name for d in jroot.iterdir() if d.is_dir())
    else:
      listing = root / "ImageSets" / year / f"{split}.txt"
      if not listing.is_file():
        raise FileNotFoundError(f"{listing}: DAVIS split listing not found")
      names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    if not names:
      raise ValueError(f"{root}: DAVIS split {split!r} lists no sequence")
    self.sequences = []
    for name in names:
      frames = sorted((jroot / name).glob("*.jpg"))
      if not frames:
        raise ValueError(f"{jroot / name}: no JPEG frames for sequence {name!r}")
      needed = frames[:1] if first_frame_only else frames
      annots = [aroot / name / (f.stem + ".png") for f in needed]
      for a in annots:
        if not a.is_file():
          raise FileNotFoundError(f"{a}: missing DAVIS annotation for sequence {name!r}")
      self.sequences.append((name, frames, annots))

  def __len__(self) -> int:
    return len(self.sequences)

  def name(self, i: int) -> str:
    return self.sequences[i][0]

  def palette(self, i: int) -> np.ndarray:
    """The first annotation's palette, [256, 3] uint8 (DAVIS's for a greyscale annotation)."""
    pal = read_indexed_png(self.sequences[i][2][0])[1]
    if pal is None:
      return synthetic.DAVIS_PALETTE.copy()
    pal = np.asarray(pal, np.uint8).reshape(-1, 3)[:256]
    return np.concatenate([pal, np.zeros((256 - len(pal), 3), np.uint8)])

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    name, frames, annots = self.sequences[int(index)]
    video = np.stack([load_image(f) for f in frames])
    mask = np.stack([read_indexed_png(a)[0] for a in annots])
    if mask.shape[1:] != video.shape[1:3]:
      raise ValueError(f"{annots[0]}: annotation size {mask.shape[1:]} != frame size "
                       f"{video.shape[1:3]}")
    return {"video": video, "mask": mask, "name": np.asarray(name), "index": np.int32(index)}

  def __repr__(self) -> str:
    return (f"DavisSource(root={str(self.root)!r}, split={self.split!r}, "
            f"resolution={self.resolution!r}, n={len(self.sequences)})")


# ------------------------------------------------------------------------------ MovingMNIST


class MovingMNISTSource:
  """MovingMNIST: the original `mnist_test_seq.npy` (memory-mapped) or generated sequences.

  With `path`, the file must be [T, N, H, W] uint8 (the original is (20, 10000, 64, 64)); element
  i is sequence i. Without it, sequence i is the bouncing-digits generator (Srivastava et al.
  2015) seeded by (seed, i) over `digits` (None: the embedded procedural digits; or an MNIST
  `.npz` path, using its `x_<digits_split>` / `y_<digits_split>`; or `(images, labels)`).

  Elements: `video` [T, H, W, 1] uint8, `index`, and `label` [num_digits] int32 when generated.
  """

  def __init__(self, path: str | Path | None = None, *, digits=None, digits_split: str = "train",
               num_sequences: int = 10000, num_frames: int = 20, size: int = 64,
               num_digits: int = 2, seed: int = 0):
    self.path, self.seed = path, seed
    if path is not None:
      path = Path(path)
      if not path.is_file():
        raise FileNotFoundError(f"{path}: MovingMNIST file not found")
      try:
        arr = np.load(path, mmap_mode="r")
      except ValueError as e:
        raise ValueError(f"{path}: not a .npy array ({e})") from None
      if arr.ndim != 4 or arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected [T, N, H, W] uint8, got {arr.dtype}{list(arr.shape)}")
      self.array, self.digits_desc = arr, ""
      return
    self.array = None
    self.num_sequences, self.num_frames, self.size, self.num_digits = (num_sequences, num_frames,
                                                                       size, num_digits)
    if isinstance(digits, (str, Path)):
      dpath = Path(digits)
      if not dpath.is_file():
        raise FileNotFoundError(f"{dpath}: MNIST-format digits file not found")
      with np.load(dpath) as d:
        key = f"x_{digits_split}"
        if key not in d:
          raise ValueError(f"{dpath}: no array {key!r} (MNIST .npz format expected)")
        self.images, self.labels = d[key], d[f"y_{digits_split}"]
      self.digits_desc = f"{dpath}:{digits_split}"
    else:
      self.images, self.labels = synthetic._load_digits(digits)
      self.digits_desc = "procedural" if digits is None else f"arrays[{len(self.images)}]"

  def __len__(self) -> int:
    return self.array.shape[1] if self.array is not None else self.num_sequences

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return self.random_getitem(index, np.random.default_rng([self.seed, int(index), 53]))

  def random_getitem(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if self.array is not None:
      return {"video": np.asarray(self.array[:, int(index)])[..., None],
              "index": np.int32(index)}
    video, labels = synthetic.moving_digits_sequence(rng, self.images, self.labels,
                                                     self.num_frames, self.size, self.num_digits)
    return {"video": video[..., None], "label": labels, "index": np.int32(index)}

  def __repr__(self) -> str:
    if self.array is not None:
      return f"MovingMNISTSource(path={str(self.path)!r}, shape={list(self.array.shape)})"
    return (f"MovingMNISTSource(digits={self.digits_desc!r}, num_sequences={self.num_sequences}, "
            f"num_frames={self.num_frames}, size={self.size}, num_digits={self.num_digits}, "
            f"seed={self.seed})")
