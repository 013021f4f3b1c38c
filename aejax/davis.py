"""DAVIS-2017 reader and the semi-supervised J / F metrics of the official toolkit.

Pont-Tuset et al., "The 2017 DAVIS Challenge on Video Object Segmentation", arXiv 1704.00675.
The metrics are a faithful NumPy/OpenCV port of `davisvideochallenge/davis2017-evaluation`
(`davis2017/metrics.py`, `utils.py`, `evaluation.py`, `evaluation_method.py`, semi-supervised
task):

- J: region IoU per object and frame on boolean masks, 1 when the union is empty.
- F: boundary F-measure; boundaries from Martin's `seg2bmap` (a pixel differs from its E, S or SE
  neighbour), both maps dilated with `skimage.morphology.disk(ceil(0.008 * diagonal))` through
  `cv2.dilate`; P/R edge cases as the toolkit (no prediction boundary: P=1, R=0; no GT boundary:
  P=0, R=1; neither: P=R=1); F = 2PR/(P+R), 0 when P+R=0.
- The first and last frame of every sequence are not scored. GT void pixels (255) become
  background and are not excluded (the toolkit passes no void mask in semi-supervised mode).
- Objects are 1..max(id in the first GT frame). A prediction missing an object is zero-padded; a
  predicted id above the number of objects is an error.
- Per object: Mean (nanmean), Recall (share of frames > 0.5), Decay (mean of the first of 4 bins
  minus mean of the last, bin edges round(linspace(1, N, 5)) - 1, bins include both edges).
- Global: every statistic averaged over all objects of all sequences; J&F-Mean = (J-Mean+F-Mean)/2.

Command line (prints the toolkit's tables, writes its CSVs into `--out` when given):
  python -m aejax.davis --pred RESULTS_DIR --gt DAVIS_ROOT [--split val] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from aejax.data.sequences import DAVIS_PALETTE, read_indexed_png, stack_same_size, write_indexed_png

__all__ = [
  "DAVIS_PALETTE",
  "GLOBAL_KEYS",
  "DavisDataset",
  "db_eval_boundary",
  "db_eval_iou",
  "db_statistics",
  "disk",
  "evaluate",
  "evaluate_objects",
  "evaluate_sequence",
  "f_measure",
  "format_tables",
  "global_scores",
  "read_indexed_png",
  "seg2bmap",
  "write_csvs",
  "write_indexed_png",
]

GLOBAL_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
VOID_LABEL = 255


# -------------------------------------------------------------------------------- the dataset


class DavisDataset:
  """A DAVIS-2017 folder: `JPEGImages/<res>/<seq>/*.jpg`, `Annotations/<res>/<seq>/*.png`,
  `ImageSets/2017/<split>.txt`.

  Args:
    root: the DAVIS root.
    split: "train" | "val" (any `ImageSets/2017/<split>.txt`); ignored when `sequences` is given.
    sequences: explicit sequence names.
    resolution: "480p" or "Full-Resolution".
    require_all_annotations: every frame must have its PNG (needed to score); when False only the
      first frame's annotation is required (propagation on test-dev style sets).
  """

  def __init__(
    self,
    root: str | Path,
    split: str = "val",
    sequences: Sequence[str] | None = None,
    resolution: str = "480p",
    require_all_annotations: bool = True,
  ):
    self.root = Path(root)
    self.img_dir = self.root / "JPEGImages" / resolution
    self.ann_dir = self.root / "Annotations" / resolution
    if not self.root.is_dir():
      raise FileNotFoundError(f"{self.root}: DAVIS root not found")
    if not self.ann_dir.is_dir():
      raise FileNotFoundError(f"{self.ann_dir}: annotation folder not found")
    if sequences is None:
      list_path = self.root / "ImageSets" / "2017" / f"{split}.txt"
      if not list_path.is_file():
        raise FileNotFoundError(f"{list_path}: sequence list not found")
      sequences = [s.strip() for s in list_path.read_text().splitlines() if s.strip()]
      if not sequences:
        raise ValueError(f"{list_path}: no sequences listed")
    self.sequences = list(sequences)
    self.require_all_annotations = require_all_annotations

  def __repr__(self) -> str:
    return f"DavisDataset({str(self.root)!r}, sequences={len(self.sequences)})"

  def __len__(self) -> int:
    return len(self.sequences)

  def frame_paths(self, seq: str) -> list[Path]:
    """The JPEG frames of sequence `seq`, sorted; an error when there are none."""
    d = self.img_dir / seq
    paths = sorted(d.glob("*.jpg"))
    if not paths:
      raise FileNotFoundError(f"{d}: no JPEG frames for sequence {seq!r}")
    return paths

  def annotation_paths(self, seq: str) -> list[Path]:
    """The PNG of every frame (or only the first's); errors name the missing or extra file."""
    frames = self.frame_paths(seq)
    d = self.ann_dir / seq
    if not d.is_dir():
      raise FileNotFoundError(f"{d}: annotation folder of sequence {seq!r} not found")
    anns = sorted(d.glob("*.png"))
    want = [d / (f.stem + ".png") for f in frames]
    if not self.require_all_annotations:
      if not want[0].is_file():
        raise FileNotFoundError(f"{want[0]}: first-frame annotation not found")
      return [want[0]]
    missing = [p for p in want if not p.is_file()]
    if missing:
      raise FileNotFoundError(
        f"{missing[0]}: annotation missing ({len(missing)} of {len(want)} frames of {seq!r} have none)"
      )
    if len(anns) != len(frames):
      extra = sorted(set(anns) - set(want))
      raise ValueError(
        f"{d}: {len(anns)} annotations for {len(frames)} frames (no frame for {extra[0].name})"
      )
    return want

  def read_frames(self, seq: str) -> np.ndarray:
    """RGB frames uint8 [T, H, W, 3]."""
    out = []
    for p in self.frame_paths(seq):
      img = cv2.imread(str(p), cv2.IMREAD_COLOR)
      if img is None:
        raise ValueError(f"{p}: unreadable JPEG")
      if out and img.shape != out[0].shape:
        raise ValueError(f"{p}: size {img.shape[:2]} differs from the first frame's")
      out.append(img[..., ::-1])
    return np.stack(out)

  def read_annotations(self, seq: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Object ids uint8 [T, H, W] (void 255 kept) and the first PNG's palette."""
    masks, palette = [], None
    for i, p in enumerate(self.annotation_paths(seq)):
      m, pal = read_indexed_png(p)
      if i == 0:
        palette = pal
      elif m.shape != masks[0].shape:
        raise ValueError(f"{p}: size {m.shape} differs from the first annotation's")
      masks.append(m)
    return np.stack(masks), palette


# ------------------------------------------------------------------------------------ metrics


def db_eval_iou(annotation: np.ndarray, segmentation: np.ndarray) -> np.ndarray:
  """J over the last two axes: |M ∩ G| / |M ∪ G| on boolean masks, 1 where the union is empty."""
  a = np.asarray(annotation).astype(bool)
  s = np.asarray(segmentation).astype(bool)
  if a.shape != s.shape:
    raise ValueError(f"annotation {a.shape} and segmentation {s.shape} shapes differ")
  inters = np.sum(a & s, axis=(-2, -1))
  union = np.sum(a | s, axis=(-2, -1))
  with np.errstate(invalid="ignore", divide="ignore"):
    j = inters / union
  return np.where(union == 0, 1.0, j)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
  """Martin's 1-pixel boundary map (offset half a pixel towards the origin): bool [H, W]."""
  seg = np.asarray(seg).astype(bool)
  e = np.zeros_like(seg)
  s = np.zeros_like(seg)
  se = np.zeros_like(seg)
  e[:, :-1] = seg[:, 1:]
  s[:-1, :] = seg[1:, :]
  se[:-1, :-1] = seg[1:, 1:]
  b = (seg ^ e) | (seg ^ s) | (seg ^ se)
  b[-1, :] = seg[-1, :] ^ e[-1, :]
  b[:, -1] = seg[:, -1] ^ s[:, -1]
  b[-1, -1] = False
  return b


def disk(radius: float) -> np.ndarray:
  """`skimage.morphology.disk(radius)`: uint8 [2r+1, 2r+1], 1 where x² + y² <= r²."""
  grid = np.arange(-radius, radius + 1)
  x, y = np.meshgrid(grid, grid)
  return ((x**2 + y**2) <= radius**2).astype(np.uint8)


def f_measure(foreground_mask: np.ndarray, gt_mask: np.ndarray, bound_th: float = 0.008) -> float:
  """Boundary F-measure of one prediction against one GT mask (both [H, W], any dtype)."""
  fg = np.asarray(foreground_mask)
  bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * np.linalg.norm(fg.shape))
  fg_b = seg2bmap(fg)
  gt_b = seg2bmap(gt_mask)
  se = disk(bound_pix)
  fg_dil = cv2.dilate(fg_b.astype(np.uint8), se)
  gt_dil = cv2.dilate(gt_b.astype(np.uint8), se)
  n_fg, n_gt = int(fg_b.sum()), int(gt_b.sum())
  if n_fg == 0 and n_gt > 0:
    precision, recall = 1.0, 0.0
  elif n_fg > 0 and n_gt == 0:
    precision, recall = 0.0, 1.0
  elif n_fg == 0 and n_gt == 0:
    precision, recall = 1.0, 1.0
  else:
    precision = float(np.sum(fg_b & (gt_dil > 0))) / n_fg
    recall = float(np.sum(gt_b & (fg_dil > 0))) / n_gt
  if precision + recall == 0:
    return 0.0
  return 2 * precision * recall / (precision + recall)


def db_eval_boundary(
  annotation: np.ndarray, segmentation: np.ndarray, bound_th: float = 0.008
) -> np.ndarray | float:
  """F per frame for [T, H, W] inputs (or a float for [H, W])."""
  a, s = np.asarray(annotation), np.asarray(segmentation)
  if a.shape != s.shape:
    raise ValueError(f"annotation {a.shape} and segmentation {s.shape} shapes differ")
  if a.ndim == 2:
    return f_measure(s, a, bound_th)
  if a.ndim != 3:
    raise ValueError(f"db_eval_boundary takes [H, W] or [T, H, W], got {a.ndim} dimensions")
  return np.array([f_measure(s[t], a[t], bound_th) for t in range(a.shape[0])])


def db_statistics(per_frame_values: np.ndarray) -> tuple[float, float, float]:
  """(Mean, Recall, Decay) of one object's per-frame J or F values, as the toolkit."""
  v = np.asarray(per_frame_values, np.float64)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=RuntimeWarning)
    mean = float(np.nanmean(v))
    recall = float(np.nanmean(v > 0.5))
    # Bin edges round(linspace(1, N, 5)) - 1 (the +1e-10 rounds halves up, as the toolkit);
    # each bin spans [ids[i], ids[i+1]] inclusive, so neighbouring bins share a frame.
    ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.int64)
    bins = [v[ids[i] : ids[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3])) if len(v) else float("nan")
  return mean, recall, decay


def evaluate_sequence(
  gt: np.ndarray, pred: np.ndarray, name: str = "sequence", bound_th: float = 0.008
) -> tuple[np.ndarray, np.ndarray]:
  """Per-object, per-scored-frame J and F of one sequence (semi-supervised).

  Args:
    gt: GT object ids [T, H, W] of the whole sequence (255 = void, treated as background).
    pred: predicted ids, [T, H, W] for all frames or [T - 2, H, W] for the scored ones.
    name: for error messages.

  Returns:
    (J [num_objects, T - 2], F [num_objects, T - 2]).
  """
  gt = np.asarray(gt).copy()
  gt[gt == VOID_LABEL] = 0
  num_objects = int(gt[0].max())
  gt = gt[1:-1]
  pred = np.asarray(pred)
  if pred.shape[0] == gt.shape[0] + 2:
    pred = pred[1:-1]
  if pred.shape != gt.shape:
    raise ValueError(f"{name}: prediction shape {pred.shape} differs from the annotations' {gt.shape}")
  pred_objects = int(pred.max(initial=0))
  if pred_objects > num_objects:
    raise ValueError(
      f"{name}: predicted id {pred_objects} is higher than the number of objects "
      f"({num_objects}) in the sequence"
    )
  j = np.zeros((num_objects, gt.shape[0]))
  f = np.zeros((num_objects, gt.shape[0]))
  for k in range(num_objects):  # ids above pred_objects are all-background: the zero padding
    g, p = gt == k + 1, pred == k + 1
    j[k] = db_eval_iou(g, p)
    f[k] = db_eval_boundary(g, p, bound_th)
  return j, f


def evaluate_objects(
  pred_root: str | Path,
  gt_root: str | Path,
  sequences: Sequence[str] | None = None,
  *,
  split: str = "val",
  resolution: str = "480p",
) -> dict[str, dict[str, tuple[float, float, float]]]:
  """Per-object statistics: {"<seq>_<k>": {"J": (M, R, D), "F": (M, R, D)}} in toolkit order."""
  ds = DavisDataset(gt_root, split, sequences, resolution)
  pred_root = Path(pred_root)
  out = {}
  for seq in ds.sequences:
    paths = ds.annotation_paths(seq)
    gt = stack_same_size([read_indexed_png(p)[0] for p in paths], paths, "annotation")
    preds = []
    for p in paths[1:-1]:  # the toolkit reads only the scored frames
      m, _ = read_indexed_png(pred_root / seq / p.name)
      if m.shape != gt.shape[1:]:
        raise ValueError(
          f"{pred_root / seq / p.name}: size {m.shape} differs from the annotation's {gt.shape[1:]}"
        )
      preds.append(m)
    pred = np.stack(preds) if preds else np.zeros((0, *gt.shape[1:]), np.uint8)
    j, f = evaluate_sequence(gt, pred, str(pred_root / seq))
    for k in range(j.shape[0]):
      out[f"{seq}_{k + 1}"] = {"J": db_statistics(j[k]), "F": db_statistics(f[k])}
  return out


def global_scores(per_object: dict) -> dict[str, float]:
  """Toolkit global scores: every statistic averaged over all objects of all sequences."""
  if not per_object:
    raise ValueError("no objects to score")
  stat = lambda m, i: float(np.mean([o[m][i] for o in per_object.values()]))
  jm, fm = stat("J", 0), stat("F", 0)
  return {
    "J&F-Mean": (jm + fm) / 2,
    "J-Mean": jm,
    "J-Recall": stat("J", 1),
    "J-Decay": stat("J", 2),
    "F-Mean": fm,
    "F-Recall": stat("F", 1),
    "F-Decay": stat("F", 2),
  }


def _fmt(x: float) -> str:
  return "" if np.isnan(x) else f"{x:.3f}"


def write_csvs(out_dir: str | Path, results: dict, per_object: dict, split: str = "val"):
  """`global_results-<split>.csv` and `per-sequence_results-<split>.csv` as the toolkit writes."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  g = out_dir / f"global_results-{split}.csv"
  g.write_text(",".join(GLOBAL_KEYS) + "\n" + ",".join(_fmt(results[k]) for k in GLOBAL_KEYS) + "\n")
  s = out_dir / f"per-sequence_results-{split}.csv"
  rows = [f"{n},{_fmt(o['J'][0])},{_fmt(o['F'][0])}" for n, o in per_object.items()]
  s.write_text("Sequence,J-Mean,F-Mean\n" + "".join(r + "\n" for r in rows))
  return g, s


def evaluate(
  pred_root: str | Path,
  gt_root: str | Path,
  sequences: Sequence[str] | None = None,
  *,
  split: str = "val",
  out_dir: str | Path | None = None,
  resolution: str = "480p",
) -> dict[str, float]:
  """Semi-supervised DAVIS-2017 scores of the indexed PNGs under `pred_root/<seq>/`.

  Args:
    pred_root: one folder per sequence with PNGs named as the GT annotations (00000.png, ...).
    gt_root: the DAVIS root (with `Annotations/<resolution>/` and `ImageSets/2017/`).
    sequences: names to score; default: those of `ImageSets/2017/<split>.txt`.
    split: the sequence list (and the CSV suffix).
    out_dir: when given, writes `global_results-<split>.csv` and
      `per-sequence_results-<split>.csv` there.

  Returns:
    {"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"} as floats in
    [0, 1] (decays may be negative).
  """
  per_object = evaluate_objects(pred_root, gt_root, sequences, split=split, resolution=resolution)
  results = global_scores(per_object)
  if out_dir is not None:
    write_csvs(out_dir, results, per_object, split)
  return results


def format_tables(results: dict, per_object: dict | None = None, split: str = "val") -> str:
  """The global (and per-object) tables that the toolkit's `evaluation_method.py` prints."""
  w = [max(len(k), 8) for k in GLOBAL_KEYS]
  lines = [
    f"{'-' * 27} Global results for {split} {'-' * 27}",
    " ".join(k.rjust(n) for k, n in zip(GLOBAL_KEYS, w)),
    " ".join(f"{results[k]:.3f}".rjust(n) for k, n in zip(GLOBAL_KEYS, w)),
  ]
  if per_object:
    nw = max(len("Sequence"), *(len(n) for n in per_object))
    lines += [
      "",
      f"{'-' * 10} Per sequence results for {split} {'-' * 10}",
      f"{'Sequence'.rjust(nw)}  J-Mean  F-Mean",
    ]
    lines += [f"{n.rjust(nw)}  {o['J'][0]:6.3f}  {o['F'][0]:6.3f}" for n, o in per_object.items()]
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m aejax.davis --pred DIR --gt DIR`: prints the toolkit's tables; exit code 0 or 1."""
  p = argparse.ArgumentParser(prog="python -m aejax.davis", description=__doc__.split("\n")[0])
  p.add_argument("--pred", required=True, help="folder with one subfolder of PNGs per sequence")
  p.add_argument("--gt", required=True, help="DAVIS root (Annotations/480p, ImageSets/2017)")
  p.add_argument("--split", default="val")
  p.add_argument("--sequences", default=None, help="comma-separated names (default: the split)")
  p.add_argument("--resolution", default="480p")
  p.add_argument("--out", default=None, help="write the toolkit's two CSV files here")
  args = p.parse_args(argv)
  seqs = args.sequences.split(",") if args.sequences else None
  try:
    per_object = evaluate_objects(args.pred, args.gt, seqs, split=args.split, resolution=args.resolution)
    results = global_scores(per_object)
    if args.out:
      write_csvs(args.out, results, per_object, args.split)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(format_tables(results, per_object, args.split))
  return 0


if __name__ == "__main__":
  sys.exit(main())
