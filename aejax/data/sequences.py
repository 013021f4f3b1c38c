"""DAVIS-2017 sequences, in-memory videos and MovingMNIST as Grain random-access sources.

DAVIS-2017 (Pont-Tuset et al. 2017): `JPEGImages/<res>/<seq>/*.jpg` with indexed-palette
`Annotations/<res>/<seq>/*.png` and `ImageSets/2017/{train,val}.txt`. The one reader and writer
of those indexed PNGs (`read_indexed_png`, `write_indexed_png`, `DAVIS_PALETTE`) lives here;
`aejax.davis` and `aejax.data.synthetic` use it. MovingMNIST (Srivastava et al. 2015): the
original `mnist_test_seq.npy` memory-mapped, or the bouncing-digits generator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from aejax.data import digits as digits_lib
from aejax.data.images import load_image
from aejax.data.scan import VideoInfo

# ------------------------------------------------------------------ DAVIS indexed PNG files


def _pascal_palette(n: int = 256) -> np.ndarray:
  """PASCAL VOC colour map (the DAVIS annotation palette): [n, 3] uint8, id 1 = (128, 0, 0)."""
  pal = np.zeros((n, 3), np.uint8)
  for i in range(n):
    c, rgb = i, [0, 0, 0]
    for j in range(8):
      for ch in range(3):
        rgb[ch] |= ((c >> ch) & 1) << (7 - j)
      c >>= 3
    pal[i] = rgb
  return pal


DAVIS_PALETTE = _pascal_palette()  # [256, 3] uint8


def read_indexed_png(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
  """Reads an indexed (palette) or greyscale PNG without touching its indices.

  Returns:
    (mask uint8 [H, W] of object ids, palette uint8 [N, 3] or None for a greyscale PNG).
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: PNG not found")
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode == "P":
        pal = np.asarray(im.getpalette() or [], np.uint8).reshape(-1, 3)
        return np.asarray(im, np.uint8), pal
      if im.mode in ("L", "I", "I;16"):
        arr = np.asarray(im)
        if arr.max(initial=0) > 255:
          raise ValueError(f"{path}: object ids above 255")
        return arr.astype(np.uint8), None
      raise ValueError(f"{path}: not an indexed PNG (mode {im.mode}); write object ids with a palette")
  except OSError as e:
    raise ValueError(f"{path}: unreadable PNG ({e})") from None


def write_indexed_png(path: str | Path, mask: np.ndarray, palette: np.ndarray | None = None) -> Path:
  """Writes object ids [H, W] (0..255) as an indexed PNG with `palette` (default DAVIS)."""
  path = Path(path)
  mask = np.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f"{path}: mask must be [H, W], got shape {mask.shape}")
  if mask.size and (mask.min() < 0 or mask.max() > 255):
    raise ValueError(f"{path}: object ids must lie in 0..255")
  pal = DAVIS_PALETTE if palette is None else np.asarray(palette, np.uint8).reshape(-1, 3)
  im = Image.fromarray(mask.astype(np.uint8), mode="P")
  im.putpalette(pal.reshape(-1).tolist())
  path.parent.mkdir(parents=True, exist_ok=True)
  im.save(path)
  return path


# -------------------------------------------------------------------------------- DAVIS source


def stack_same_size(arrays: list, paths: list, what: str, size: tuple | None = None) -> np.ndarray:
  """Stacks per-frame arrays; a one-line error names the first file whose size differs."""
  size = tuple(size) if size is not None else arrays[0].shape[:2]
  for a, path in zip(arrays, paths):
    if a.shape[:2] != size:
      raise ValueError(f"{path}: {what} size {a.shape[:2]} differs from the sequence's frame size {size}")
  return np.stack(arrays)


class DavisSource:
  """DAVIS-2017 sequences: `JPEGImages/<res>/<seq>/*.jpg`, `Annotations/<res>/<seq>/*.png`.

  Elements (one per sequence): `video` [T, H, W, 3] uint8, `mask` [T, H, W] uint8 object ids
  (only the first frame's when `first_frame_only`), `name` (0-d str array), `index`. The palette
  of the first annotation is in `.palette(i)`. Every sequence is checked at construction: a
  missing frame folder or annotation is a one-line error naming the path.
  """

  def __init__(
    self,
    root: str | Path,
    split: str | None = "val",
    resolution: str = "480p",
    year: str = "2017",
    first_frame_only: bool = False,
  ):
    root = Path(root)
    if not root.is_dir():
      raise FileNotFoundError(f"{root}: DAVIS folder not found")
    self.root, self.split, self.resolution, self.first_frame_only = (
      root,
      split,
      resolution,
      first_frame_only,
    )
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
    """The name of sequence `i`."""
    return self.sequences[i][0]

  def palette(self, i: int) -> np.ndarray:
    """The first annotation's palette, [256, 3] uint8 (DAVIS's for a greyscale annotation)."""
    pal = read_indexed_png(self.sequences[i][2][0])[1]
    if pal is None:
      return DAVIS_PALETTE.copy()
    pal = np.asarray(pal, np.uint8).reshape(-1, 3)[:256]
    return np.concatenate([pal, np.zeros((256 - len(pal), 3), np.uint8)])

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    name, frames, annots = self.sequences[int(index)]
    video = stack_same_size([load_image(f) for f in frames], frames, "frame")
    mask = stack_same_size([read_indexed_png(a)[0] for a in annots], annots, "annotation", video.shape[1:3])
    return {"video": video, "mask": mask, "name": np.asarray(name), "index": np.int32(index)}

  def __repr__(self) -> str:
    return (
      f"DavisSource(root={str(self.root)!r}, split={self.split!r}, "
      f"resolution={self.resolution!r}, n={len(self.sequences)})"
    )


# ------------------------------------------------------------------------- in-memory videos


class ArrayVideos:
  """In-memory videos [N, T, H, W, 3] uint8 as a video collection (`VideoPairSource`, ...).

  The collection protocol of `aejax.data.sources.VideoFiles`: `len`, `info(i)` (a `VideoInfo` at
  `fps`) and `read(i, indices)`; `name` makes the `repr` stable for Grain.
  """

  def __init__(self, videos: np.ndarray, name: str, fps: float = 30.0):
    self.videos, self.name, self.root, self.fps = videos, name, name, fps

  def __len__(self) -> int:
    return len(self.videos)

  def info(self, i: int) -> VideoInfo:
    """The `VideoInfo` of video `i` (path `<name>/<i>`)."""
    _, t, h, w, _ = self.videos.shape
    return VideoInfo(path=f"{self.name}/{i}", fps=self.fps, num_frames=t, height=h, width=w)

  def read(self, i: int, indices) -> np.ndarray:
    """Frames `indices` of video `i`: [len(indices), H, W, 3] uint8."""
    return self.videos[i][np.asarray(indices)]

  def __repr__(self) -> str:
    return f"ArrayVideos({self.name!r}, shape={list(self.videos.shape)})"


# ------------------------------------------------------------------------------ MovingMNIST


class MovingMNISTSource:
  """MovingMNIST: the original `mnist_test_seq.npy` (memory-mapped) or generated sequences.

  With `path`, the file must be [T, N, H, W] uint8 (the original is (20, 10000, 64, 64)); element
  i is sequence i. Without it, sequence i is the bouncing-digits generator (Srivastava et al.
  2015) seeded by (seed, i) over `digits` (None: the embedded procedural digits; or an MNIST
  `.npz` path, using its `x_<digits_split>` / `y_<digits_split>`; or `(images, labels)`).

  Elements: `video` [T, H, W, 1] uint8, `index`, and `label` [num_digits] int32 when generated.
  """

  def __init__(
    self,
    path: str | Path | None = None,
    *,
    digits=None,
    digits_split: str = "train",
    num_sequences: int = 10000,
    num_frames: int = 20,
    size: int = 64,
    num_digits: int = 2,
    seed: int = 0,
  ):
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
    self.num_sequences, self.num_frames, self.size, self.num_digits = (
      num_sequences,
      num_frames,
      size,
      num_digits,
    )
    if isinstance(digits, (str, Path)):
      dpath = Path(digits)
      self.images, self.labels = digits_lib.load_mnist_npz(dpath, digits_split)
      self.digits_desc = f"{dpath}:{digits_split}"
    else:
      self.images, self.labels = digits_lib.load_digits(digits)
      self.digits_desc = "procedural" if digits is None else f"arrays[{len(self.images)}]"

  def __len__(self) -> int:
    return self.array.shape[1] if self.array is not None else self.num_sequences

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return self.random_getitem(index, np.random.default_rng([self.seed, int(index), 53]))

  def random_getitem(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sequence `index` (from the file, or generated with `rng`)."""
    if self.array is not None:
      return {"video": np.asarray(self.array[:, int(index)])[..., None], "index": np.int32(index)}
    video, labels = digits_lib.moving_digits_sequence(
      rng, self.images, self.labels, self.num_frames, self.size, self.num_digits
    )
    return {"video": video[..., None], "label": labels, "index": np.int32(index)}

  def __repr__(self) -> str:
    if self.array is not None:
      return f"MovingMNISTSource(path={str(self.path)!r}, shape={list(self.array.shape)})"
    return (
      f"MovingMNISTSource(digits={self.digits_desc!r}, num_sequences={self.num_sequences}, "
      f"num_frames={self.num_frames}, size={self.size}, num_digits={self.num_digits}, "
      f"seed={self.seed})"
    )
