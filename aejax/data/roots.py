"""Data roots: a raw folder or a prepared set, told apart by their layout.

Every experiment's `--config.data.root` (and `--davis_dir`) goes through here, so each one takes
either what the user has (video files, an image folder, a DAVIS root) or what
`python -m aejax.data.prepare` wrote from it (decoded once, read back fast):

- prepared videos: `ROOT/aejax_videos/1.0.0/aejax_index_train.json` + shards (`prepare videos`);
- prepared images: `ROOT/aejax_images/1.0.0/` (`prepare images`);
- prepared DAVIS: `ROOT/aejax_davis/1.0.0/` (`prepare davis`);
- anything else: a raw folder.

ROOT is the `--out` given to `prepare`; the `aejax_*` folder or its version folder (the path
`prepare` prints) are recognised too. Asking for videos from a prepared image set (or the like) is
a one-line error naming the path and the kind it holds.
"""

from __future__ import annotations

from pathlib import Path

from aejax.data import prepare as P
from aejax.data.prepare_images import PreparedDavisSource, PreparedImageSource
from aejax.data.prepare_videos import PreparedVideos
from aejax.data.sources import ArraySource, ImageFolderSource, Subset, as_videos, split_indices

__all__ = ["PREPARED", "davis_sequences", "images", "prepared", "videos"]

PREPARED = {"videos": "aejax_videos", "images": "aejax_images", "davis": "aejax_davis"}


def prepared(root: str | Path) -> tuple[str | None, Path]:
  """(kind, data_dir): kind "videos" | "images" | "davis" for a prepared set, None for a raw folder.

  `data_dir` is the `--out` folder of `prepare` (the root itself for a raw folder).
  """
  root = Path(root)
  for kind, name in PREPARED.items():
    if (root / name).is_dir():
      return kind, root
    if root.name == name and root.is_dir():
      return kind, root.parent
    if root.parent.name == name and root.is_dir():  # the version folder prepare prints
      return kind, root.parent.parent
  return None, root


def _wrong_kind(root, kind: str, want: str) -> ValueError:
  return ValueError(
    f"{root}: a prepared {kind} set, but {want} are needed here "
    f"(prepare them with `python -m aejax.data.prepare {want} --src DIR --out OUT`)"
  )


def videos(root: str | Path, **scan_kwargs):
  """The video collection of `root`: `PreparedVideos` or the scanned files of a raw folder.

  Either feeds `VideoPairSource` / `VideoClipSource`. `scan_kwargs` go to `scan_videos` (raw only).
  """
  kind, data_dir = prepared(root)
  if kind == "videos":
    return PreparedVideos(data_dir)
  if kind is not None:
    raise _wrong_kind(root, kind, "videos")
  return as_videos(root, **scan_kwargs)


def images(root: str | Path, split: str, *, valid_fraction: float = 0.2, seed: int = 42):
  """The `split` ("train" / "valid") images of `root`: elements `image`, `label`, `index`.

  A raw folder is split by (`valid_fraction`, `seed`) (`ImageFolderSource`). A prepared set keeps
  the split it was prepared with (`prepare images --valid-fraction F --seed S`); one prepared with
  `--valid-fraction 0` (a single `train` split) is split here, by the same rule as a raw folder,
  so it yields the raw folder's split image for image (up to JPEG error).
  """
  kind, data_dir = prepared(root)
  if kind is None:
    return ImageFolderSource(root, split=split, valid_fraction=valid_fraction, seed=seed)
  if kind != "images":
    raise _wrong_kind(root, kind, "images")
  folder = data_dir / PREPARED["images"] / P.VERSION
  if (folder / "aejax_index_valid.json").is_file():
    return PreparedImageSource(data_dir, split)
  whole = PreparedImageSource(data_dir, "train")
  return Subset(
    whole, split_indices(len(whole), split, valid_fraction, seed), name=f"{split}-{valid_fraction}-{seed}"
  )


def image_splits(data, fallback) -> tuple:
  """`(train, valid)` image sources of a `data` config section (`root`, `valid_fraction`,
  `split_seed`): `images(data.root, ...)` when `data.root` is set, else the uint8 images
  `fallback()` returns as `(images [N, H, W, 3], name)`, split by the same seeded rule (the
  sources are named `name` with "{split}" filled in, or `name-split`)."""
  frac, seed = data.valid_fraction, data.split_seed
  if data.root:
    return tuple(images(data.root, s, valid_fraction=frac, seed=seed) for s in ("train", "valid"))
  arr, name = fallback()  # the source's name (its Grain checkpoint identity): "{split}" or a suffix
  named = lambda s: name.format(split=s) if "{split}" in name else f"{name}-{s}"
  pick = lambda s: {"image": arr[split_indices(len(arr), s, frac, seed)]}
  return tuple(ArraySource(pick(s), name=named(s)) for s in ("train", "valid"))


def davis_sequences(root: str | Path, split: str = "val"):
  """What `aejax.labelprop.propagate_davis` takes for `root`: the path of a raw DAVIS root, or
  the sequences (dicts `name`, `video`, `masks`) of a prepared one, read one at a time."""
  kind, data_dir = prepared(root)
  if kind is None:
    return root
  if kind != "davis":
    raise _wrong_kind(root, kind, "davis")
  src = PreparedDavisSource(data_dir, split)
  return _Sequences(src)


class _Sequences:
  """A prepared DAVIS split as an iterable of `propagate_davis` sequences (lazily decoded)."""

  def __init__(self, source):
    self.source = source

  def __len__(self) -> int:
    return len(self.source)

  def __iter__(self):
    for i in range(len(self.source)):
      e = self.source[i]
      yield {"name": str(e["name"]), "video": e["video"], "masks": e["mask"]}

  def __repr__(self) -> str:
    return repr(self.source)
