"""Image files → RGB uint8, and image-folder sources (ImageNet / Caltech-256 layouts, flat).

Grey, grey + alpha, palette, CMYK, RGBA and 16-bit images all become RGB uint8 [H, W, 3];
unreadable files are skipped and counted with a written report. Caltech-256's 80/20 split with
seed 42 (the key-frame autoencoder paper's) is `ImageFolderSource.caltech256`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from aejax.data.scan import write_report

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


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


# EXIF orientation (tag 0x0112) -> the array operation that shows the image upright (as
# PIL.ImageOps.exif_transpose: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
# 7 transverse, 8 rotate 90 counter-clockwise).
_ORIENT = {
  2: lambda a: a[:, ::-1],
  3: lambda a: a[::-1, ::-1],
  4: lambda a: a[::-1],
  5: lambda a: a.swapaxes(0, 1),
  6: lambda a: np.rot90(a, -1),
  7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
  8: lambda a: np.rot90(a, 1),
}


def _exif_orientation(data: bytes) -> int:
  """The EXIF orientation of encoded image bytes (1 when there is none or it cannot be read)."""
  head = data[:65536]
  if b"Exif\x00\x00" not in head and b"eXIf" not in head:
    return 1
  import io

  from PIL import Image

  try:
    with Image.open(io.BytesIO(data)) as im:
      return int(im.getexif().get(0x0112, 1))
  except Exception:  # noqa: BLE001 - unreadable EXIF: keep the stored orientation
    return 1


def decode_image(data: bytes, name: str | Path = "<bytes>") -> np.ndarray:
  """Encoded image bytes → RGB uint8 [H, W, 3], upright per EXIF (OpenCV, else PIL for GIF etc.)."""
  if not data:
    raise ValueError(f"{name}: empty (zero-byte) image file")
  arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  if arr is not None:
    out = to_rgb_uint8(arr, bgr=True)
  else:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
      with Image.open(io.BytesIO(data)) as im:
        if im.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV", "1"):
          im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        out = to_rgb_uint8(np.asarray(im))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
      raise ValueError(f"{name}: not a decodable image ({type(e).__name__})") from None
  fix = _ORIENT.get(_exif_orientation(data))
  return np.ascontiguousarray(fix(out)) if fix else out


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

  def __init__(
    self,
    root: str | Path,
    split: str | None = "train",
    valid_fraction: float = 0.2,
    seed: int = 42,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    validate: bool = True,
    report_path: str | Path | None = None,
  ):
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
      files = [(p, c) for c, d in enumerate(class_dirs) for p in sorted(filter(is_img, d.rglob("*")))]
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
    return (
      f"ImageFolderSource(root={str(self.root)!r}, split={self.split!r}, "
      f"valid_fraction={self.valid_fraction}, seed={self.seed}, n={len(self.files)})"
    )
