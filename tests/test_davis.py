"""DAVIS-2017 metrics on hand-made masks, with the hand working in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aejax import davis


def square(size, r0, r1, c0, c1, value=1, base=None):
  m = np.zeros(size, np.uint8) if base is None else base.copy()
  m[r0 : r1 + 1, c0 : c1 + 1] = value
  return m


# ------------------------------------------------------------------------------------------ J


def test_iou_hand_values():
  # GT: 2x2 square (4 px) at rows 0-1, cols 0-1. Prediction: 2x3 block rows 0-1, cols 0-2 (6 px).
  # Intersection 4, union 6 -> J = 4/6.
  gt = square((4, 4), 0, 1, 0, 1)
  pred = square((4, 4), 0, 1, 0, 2)
  assert davis.db_eval_iou(gt, pred) == pytest.approx(4 / 6)
  # Both empty: union 0 -> J = 1 by the toolkit's rule. Prediction empty, GT not: 0/4 = 0.
  z = np.zeros((4, 4), np.uint8)
  assert davis.db_eval_iou(z, z) == 1.0
  assert davis.db_eval_iou(gt, z) == 0.0
  # Frames on the leading axis are scored independently: [4/6, 1, 0].
  np.testing.assert_allclose(davis.db_eval_iou(np.stack([gt, z, gt]), np.stack([pred, z, z])), [4 / 6, 1, 0])


# ------------------------------------------------------------------------------------------ F


def test_seg2bmap_hand_values():
  # A pixel is a boundary if it differs from its E, S or SE neighbour; the last row compares
  # with E only, the last column with S only, and the corner is 0. For the 2x2 square at
  # rows/cols 1-2 of a 4x4 image, e.g. (0,0) differs from SE (1,1); (1,1) equals E, S, SE -> 0;
  # (1,2) differs from E (1,3); the last column and last row are background next to background.
  seg = square((4, 4), 1, 2, 1, 2)
  want = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
  np.testing.assert_array_equal(davis.seg2bmap(seg), want)
  # Object touching the last row/column: seg = 1 at (3, 3) only. Row 2: (2,2) differs from SE;
  # (2,3) is in the last column and differs from S. Row 3: (3,2) differs from E. (3,3) is the
  # corner, forced to 0.
  seg = np.zeros((4, 4), np.uint8)
  seg[3, 3] = 1
  want = np.zeros((4, 4), bool)
  want[2, 2] = want[2, 3] = want[3, 2] = True
  np.testing.assert_array_equal(davis.seg2bmap(seg), want)


def test_disk_matches_skimage_definition():
  # disk(1) is the 4-neighbour cross; disk(2): rows y = -2..2 keep x with x² + y² <= 4.
  np.testing.assert_array_equal(davis.disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
  np.testing.assert_array_equal(
    davis.disk(2), [[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]]
  )
  # Gauss circle counts N(r) = #{x² + y² <= r²}: 5, 13, 29, 49, 81, 113, 149, 197 for r = 1..8.
  for r, n in zip(range(1, 9), [5, 13, 29, 49, 81, 113, 149, 197]):
    d = davis.disk(r)
    assert d.shape == (2 * r + 1, 2 * r + 1) and d.sum() == n and d.dtype == np.uint8
  # The toolkit passes a float radius (np.ceil returns 8.0): same 17x17 element.
  np.testing.assert_array_equal(davis.disk(8.0), davis.disk(8))
  skm = pytest.importorskip("skimage.morphology", reason="skimage only cross-checks the port")
  for r in range(0, 10):
    np.testing.assert_array_equal(davis.disk(r), skm.disk(r))


def test_f_measure_hand_values():
  # 10x10 images: bound_pix = ceil(0.008 * sqrt(200)) = ceil(0.113) = 1 -> dilation by the cross.
  # GT: 4x4 square rows/cols 2-5 -> boundary ring = outline of the box rows 1-5, cols 1-5 (16 px).
  # Prediction shifted right by 2 (cols 4-7) -> ring rows 1-5, cols 3-7 (16 px).
  # Precision (pred boundary px with a GT boundary px at distance <= 1 in the cross):
  #   rows 1 and 5, cols 3-5 lie on the GT ring (3+3), cols 6 touch GT (r,5) (1+1), cols 7 not;
  #   col 3 rows 2 and 4 touch GT (1,3) / (5,3) (2), col 3 row 3 does not; col 7 rows 2-4 do not.
  #   -> 6 + 2 + 2 = 10 of 16. Recall is the mirror image: 10 of 16. F = 0.625.
  gt = square((10, 10), 2, 5, 2, 5)
  pred = square((10, 10), 2, 5, 4, 7)
  assert davis.f_measure(pred, gt) == pytest.approx(0.625)
  # Shift by 1: every boundary pixel has a partner one step left/right -> P = R = F = 1.
  assert davis.f_measure(square((10, 10), 2, 5, 3, 6), gt) == 1.0
  # Shift by 2 vertically is the transpose of the first case: F = 0.625 again.
  assert davis.f_measure(square((10, 10), 4, 7, 2, 5), gt) == pytest.approx(0.625)


def test_f_measure_edge_cases():
  z = np.zeros((10, 10), np.uint8)
  gt = square((10, 10), 2, 5, 2, 5)
  assert davis.f_measure(z, gt) == 0.0  # no prediction boundary: P = 1, R = 0 -> F = 0
  assert davis.f_measure(gt, z) == 0.0  # no GT boundary: P = 0, R = 1 -> F = 0
  assert davis.f_measure(z, z) == 1.0  # neither: P = R = 1 -> F = 1
  # Boundaries far apart: P = R = 0 -> F = 0 (not NaN).
  far = square((100, 100), 80, 90, 80, 90)
  assert davis.f_measure(far, square((100, 100), 2, 5, 2, 5)) == 0.0


def test_tolerance_is_eight_pixels_at_480p():
  # 854x480: diagonal 979.65 -> 0.008 * 979.65 = 7.84 -> 8 px. A vertical edge shifted by 8
  # columns is still matched everywhere (F = 1); by 9 it is not (F < 1).
  assert math.ceil(0.008 * math.hypot(480, 854)) == 8
  gt = np.zeros((480, 854), np.uint8)
  gt[:, :400] = 1
  p8 = np.zeros_like(gt)
  p8[:, :408] = 1
  p9 = np.zeros_like(gt)
  p9[:, :409] = 1
  assert davis.f_measure(p8, gt) == 1.0
  # Shift 9: the only boundary pixels are the edge columns (399 and 408; the last row's come from
  # the same E-neighbour test), 9 apart, so none is matched -> P = R = 0 -> F = 0.
  assert davis.f_measure(p9, gt) == 0.0


# ---------------------------------------------------------------------------------- statistics


def test_db_statistics_hand_values():
  # v = [1, .8, .6, .4, .2, 0]: mean 0.5; recall: 3 of 6 values > 0.5 -> 0.5.
  # Decay: linspace(1, 6, 5) = [1, 2.25, 3.5, 4.75, 6] -> round (halves up) [1, 2, 4, 5, 6] - 1
  # = [0, 1, 3, 4, 5]; bin 1 = v[0:2] = [1, .8] (mean .9), bin 4 = v[4:6] = [.2, 0] (mean .1);
  # decay = .9 - .1 = .8.
  m, r, d = davis.db_statistics([1, 0.8, 0.6, 0.4, 0.2, 0.0])
  assert (m, r, d) == pytest.approx((0.5, 0.5, 0.8))
  # N = 2: linspace(1, 2, 5) = [1, 1.25, 1.5, 1.75, 2] -> [1, 1, 2, 2, 2] - 1 = [0, 0, 1, 1, 1]:
  # bin 1 = v[0:1], bin 4 = v[1:2] -> decay = v0 - v1. A value of exactly 0.5 is not recalled.
  assert davis.db_statistics([0.9, 0.5]) == pytest.approx((0.7, 0.5, 0.4))
  # N = 1: every edge is 0, both bins are v[0:1] -> decay 0.
  assert davis.db_statistics([0.3]) == pytest.approx((0.3, 0.0, 0.0))


# ------------------------------------------------------------------------------- whole folders


def _write_seq(root, name, gt, pred=None):
  for t, m in enumerate(gt):
    davis.write_indexed_png(root / "gt" / "Annotations" / "480p" / name / f"{t:05d}.png", m)
    jpg = root / "gt" / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
    jpg.parent.mkdir(parents=True, exist_ok=True)
    jpg.write_bytes(b"")  # only the names are read when scoring
  if pred is not None:
    for t, m in enumerate(pred):
      davis.write_indexed_png(root / "pred" / name / f"{t:05d}.png", m)


def _hand_dataset(tmp_path):
  # Sequence "a": 4 frames of 10x10 (2 scored), object 1 = square rows/cols 2-5, object 2 =
  # square rows/cols 7-8. Prediction: frame 1 object 1 exact; frame 2 object 1 shifted right by
  # 2 (J = overlap 4x2 = 8 / union 24 = 1/3, F = 0.625 as above); object 2 never predicted
  # (zero-padded: J = 0, F = 0). Frames 0 and 3 hold an invalid id 3: they are not scored.
  o1 = square((10, 10), 2, 5, 2, 5)
  gt_a = square((10, 10), 7, 8, 7, 8, 2, base=o1)
  bad = np.full((10, 10), 3, np.uint8)
  pred_a = [bad, o1, square((10, 10), 2, 5, 4, 7), bad]
  _write_seq(tmp_path, "a", [gt_a] * 4, pred_a)
  # Sequence "b": 3 frames (1 scored), one object predicted exactly: J = F = 1.
  _write_seq(tmp_path, "b", [o1] * 3, [o1] * 3)
  sets = tmp_path / "gt" / "ImageSets" / "2017"
  sets.mkdir(parents=True)
  (sets / "val.txt").write_text("a\nb\n")
  return tmp_path


def test_evaluate_hand_dataset(tmp_path, capsys):
  root = _hand_dataset(tmp_path)
  # Per object: a_1 J = [1, 1/3] -> M 2/3, R 1/2, D (N=2) 1 - 1/3 = 2/3;
  #             a_1 F = [1, .625] -> M .8125, R 1, D .375;  a_2: all zeros;  b_1: M = R = 1, D 0.
  # Global means over the 3 objects (not over sequences):
  #   J-Mean = (2/3 + 0 + 1)/3 = 5/9, J-Recall = 1.5/3, J-Decay = (2/3)/3,
  #   F-Mean = (.8125 + 0 + 1)/3, F-Recall = 2/3, F-Decay = .375/3, J&F = (J-Mean + F-Mean)/2.
  want = {
    "J-Mean": 5 / 9,
    "J-Recall": 0.5,
    "J-Decay": 2 / 9,
    "F-Mean": 1.8125 / 3,
    "F-Recall": 2 / 3,
    "F-Decay": 0.125,
  }
  want["J&F-Mean"] = (want["J-Mean"] + want["F-Mean"]) / 2
  res = davis.evaluate(root / "pred", root / "gt", out_dir=root / "csv")
  assert list(res) == list(davis.GLOBAL_KEYS)
  for k, v in want.items():
    assert res[k] == pytest.approx(v), k
  # The toolkit's CSVs: 3 decimals, objects named <seq>_<k>.
  g = (root / "csv" / "global_results-val.csv").read_text().splitlines()
  assert g[0] == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"
  assert g[1] == "0.580,0.556,0.500,0.222,0.604,0.667,0.125"
  s = (root / "csv" / "per-sequence_results-val.csv").read_text().splitlines()
  assert s == ["Sequence,J-Mean,F-Mean", "a_1,0.667,0.812", "a_2,0.000,0.000", "b_1,1.000,1.000"]
  # A sequence subset, and the command line printing the same numbers.
  assert davis.evaluate(root / "pred", root / "gt", ["b"])["J&F-Mean"] == 1.0
  assert davis.main(["--pred", str(root / "pred"), "--gt", str(root / "gt")]) == 0
  out = capsys.readouterr().out
  assert "0.580" in out and "a_2" in out and "J&F-Mean" in out


def test_void_is_background_and_ids_from_first_frame(tmp_path):
  # GT frame: object 1 at rows/cols 2-5 and a void (255) band at row 0. Void becomes background
  # and is not excluded: predicting the band as object 1 adds 10 false-positive pixels
  # (J = 16 / 26). Object 2 appears only after frame 0 -> not an object (num_objects = 1), so a
  # prediction must not use id 2.
  o1 = square((10, 10), 2, 5, 2, 5)
  g = o1.copy()
  g[0] = 255
  later = square((10, 10), 8, 9, 8, 9, 2, base=g)
  pred = o1.copy()
  pred[0] = 1
  j, _ = davis.evaluate_sequence(np.stack([g, later, later]), np.stack([o1, pred, o1]))
  assert j.shape == (1, 1) and j[0, 0] == pytest.approx(16 / 26)
  with pytest.raises(ValueError, match="predicted id 2 is higher than the number of objects"):
    davis.evaluate_sequence(
      np.stack([g, later, later]), np.stack([o1, square((10, 10), 8, 9, 8, 9, 2, base=o1), o1])
    )


def test_errors_name_the_path(tmp_path):
  root = _hand_dataset(tmp_path)
  (root / "pred" / "a" / "00002.png").unlink()
  with pytest.raises(FileNotFoundError, match=r"pred/a/00002\.png"):
    davis.evaluate(root / "pred", root / "gt")
  (root / "gt" / "Annotations" / "480p" / "b" / "00001.png").unlink()
  with pytest.raises(FileNotFoundError, match=r"Annotations/480p/b/00001\.png: annotation missing"):
    davis.DavisDataset(root / "gt").annotation_paths("b")
  davis.write_indexed_png(root / "gt" / "Annotations" / "480p" / "b" / "00001.png", np.zeros((10, 10)))
  davis.write_indexed_png(root / "gt" / "Annotations" / "480p" / "b" / "00007.png", np.zeros((10, 10)))
  with pytest.raises(ValueError, match=r"480p/b: 4 annotations for 3 frames"):
    davis.DavisDataset(root / "gt").annotation_paths("b")
  with pytest.raises(FileNotFoundError, match="ImageSets/2017/test.txt"):
    davis.DavisDataset(root / "gt", split="test")
  assert davis.main(["--pred", str(root / "nowhere"), "--gt", str(root / "gt"), "--sequences", "a"]) == 1


def test_png_round_trip_keeps_ids_and_palette(tmp_path):
  # DAVIS palette = PASCAL VOC colour map: id 1 (128,0,0), 2 (0,128,0), 3 (128,128,0),
  # 4 (0,0,128), 255 (224,224,192).
  np.testing.assert_array_equal(
    davis.DAVIS_PALETTE[[0, 1, 2, 3, 4, 255]],
    [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [224, 224, 192]],
  )
  m = np.arange(60, dtype=np.uint8).reshape(6, 10) % 7
  m[0, 0] = 255
  davis.write_indexed_png(tmp_path / "m.png", m)
  got, pal = davis.read_indexed_png(tmp_path / "m.png")
  np.testing.assert_array_equal(got, m)
  np.testing.assert_array_equal(pal[:8], davis.DAVIS_PALETTE[:8])
  custom = np.tile(np.arange(256, dtype=np.uint8)[:, None], (1, 3))
  davis.write_indexed_png(tmp_path / "c.png", m, custom)
  np.testing.assert_array_equal(davis.read_indexed_png(tmp_path / "c.png")[1][:7], custom[:7])
  import cv2

  cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((4, 4, 3), np.uint8))
  with pytest.raises(ValueError, match="rgb.png: not an indexed PNG"):
    davis.read_indexed_png(tmp_path / "rgb.png")
