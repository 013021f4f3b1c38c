"""The classic codecs a learned one must beat, on uint8 RGB frames [N, H, W, 3].

Each returns (reconstruction uint8 [N, H, W, 3], bytes per frame [N]): keeping the k most
significant bits of every channel (bin centres restored), down/up-scaling (INTER_AREA down,
INTER_CUBIC up; the rate is the 8-bit small frame, labelled by its pixel ratio, not the per-side
factor the original OVAL report used), and per-frame JPEG (OpenCV) at a given quality or at the
quality whose size is nearest a byte budget (`jpeg_at_bytes`), which is what a user would pick
instead. `baseline_rows` turns them into rate–distortion rows (`aejax.codec.report`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from aejax.codec.latent import bits_per_pixel, compression_ratio
from aejax.codec.report import summarize


def bit_cut(frames: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
  """Keeps the `bits` most significant bits per channel (restored at bin centres).

  Returns (reconstruction uint8 [N, H, W, 3], bytes per frame [N]) with bytes = ceil(3 H W bits / 8).
  """
  if not 1 <= bits <= 8:
    raise ValueError(f"bit_cut: bits must be in 1..8, got {bits}")
  frames = np.asarray(frames, np.uint8)
  cut = 8 - bits
  rec = (frames >> cut) << cut
  if cut:
    rec = rec + np.uint8(1 << (cut - 1))
  n, h, w, _ = frames.shape
  return rec.astype(np.uint8), np.full(n, math.ceil(3 * h * w * bits / 8), np.int64)


def resize_codec(frames: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
  """Down-scales by `factor` per side (INTER_AREA), sends the 8-bit small frame, up-scales back
  (INTER_CUBIC). The pixel ratio is about factor²; bytes are exactly 3 h' w'."""
  frames = np.asarray(frames, np.uint8)
  n, h, w, _ = frames.shape
  sh, sw = max(1, int(round(h / factor))), max(1, int(round(w / factor)))
  rec = np.stack(
    [
      cv2.resize(cv2.resize(f, (sw, sh), interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_CUBIC)
      for f in frames
    ]
  )
  return rec, np.full(n, 3 * sh * sw, np.int64)


def _jpeg(frame: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
  ok, buf = cv2.imencode(
    ".jpg", np.ascontiguousarray(frame[..., ::-1]), [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
  )
  if not ok:
    raise ValueError("OpenCV could not encode a JPEG")
  return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1], int(buf.size)


def jpeg_codec(frames: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-frame JPEG (OpenCV, 4:2:0) at `quality` (1..100): (reconstruction, bytes per frame)."""
  out = [_jpeg(f, quality) for f in np.asarray(frames, np.uint8)]
  return np.stack([o[0] for o in out]), np.array([o[1] for o in out], np.int64)


def jpeg_at_bytes(frames: np.ndarray, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-frame JPEG at the quality whose size is nearest `target` bytes (a scalar or [N]).

  Returns (reconstruction, bytes per frame, quality per frame).
  """
  frames = np.asarray(frames, np.uint8)
  targets = np.broadcast_to(np.asarray(target, np.float64), (len(frames),))
  recs, sizes, quals = [], [], []
  for f, t in zip(frames, targets):
    lo, hi = 1, 100
    while lo < hi:  # smallest quality whose size reaches the target (size grows with quality)
      mid = (lo + hi) // 2
      if _jpeg(f, mid)[1] >= t:
        hi = mid
      else:
        lo = mid + 1
    cands = [(abs(_jpeg(f, q)[1] - t), q) for q in {max(1, lo - 1), lo}]
    q = min(cands)[1]
    rec, size = _jpeg(f, q)
    recs.append(rec)
    sizes.append(size)
    quals.append(q)
  return np.stack(recs), np.array(sizes, np.int64), np.array(quals, np.int64)


def baseline_rows(
  frames,
  *,
  bits=(1, 2, 3, 4, 6),
  factors=(2, 3, 4, 6, 8),
  jpeg_qualities=(5, 10, 25, 50, 75, 90),
  jpeg_targets: Sequence[float] = (),
  with_ms_ssim: bool = True,
) -> list[dict]:
  """R–D rows for every baseline on uint8 RGB frames (JPEG also at each byte target).

  `frames`: [N, H, W, 3], or an iterable of such batches (a long video chunk by chunk: memory stays
  flat in its length); each row is the mean over all the frames either way.
  """
  totals: dict = {}  # row key -> [first row, frames, weighted sums]
  qrange: dict = {}  # jpeg@bytes target -> (lowest, highest) quality used
  for batch in [frames] if isinstance(frames, np.ndarray) else frames:
    batch = np.asarray(batch, np.uint8)
    h, w = batch.shape[1:3]

    def add(key, method, setting, rec, nb, batch=batch):
      row = summarize(method, setting, batch, rec, nb, with_ms_ssim)
      t = totals.setdefault(key, [row, 0, dict.fromkeys(_MEANS, 0.0)])
      t[1] += len(batch)
      for k in _MEANS:
        if k in row:
          t[2][k] += row[k] * len(batch)

    for b in bits:
      add(("bit", b), "bit_cut", f"{b} bits", *bit_cut(batch, b))
    for f in factors:
      rec, nb = resize_codec(batch, f)
      add(("resize", f), "resize", f"1/{f:g} per side ({h * w / (nb[0] / 3):.1f}x fewer pixels)", rec, nb)
    for q in jpeg_qualities:
      add(("jpeg", q), "jpeg", f"q{q}", *jpeg_codec(batch, q))
    for t in jpeg_targets:
      rec, nb, qs = jpeg_at_bytes(batch, t)
      lo, hi = qrange.get(t, (qs.min(), qs.max()))
      qrange[t] = (min(lo, qs.min()), max(hi, qs.max()))
      add(("jpeg@bytes", t), "jpeg@bytes", "", rec, nb)
  rows = []
  for key, (row, n, sums) in totals.items():
    row = {**row, **{k: v / n for k, v in sums.items() if k in row}}
    row["ratio"] = float(compression_ratio(row["bytes_per_frame"], h, w))
    row["bpp"] = float(bits_per_pixel(row["bytes_per_frame"], h, w))
    if key[0] == "jpeg@bytes":
      row["setting"] = f"~{key[1]:.0f} B (q {qrange[key[1]][0]}-{qrange[key[1]][1]})"
    rows.append(row)
  return rows


_MEANS = ("bytes_per_frame", "psnr", "mae", "ms_ssim")  # summarize's per-frame means


# Inter-frame codecs through PyAV (FFmpeg): name -> (encoder, options besides the CRF).
VIDEO_CODECS = {
  "h264": ("libx264", {"preset": "medium"}),
  "h265": ("libx265", {"preset": "medium", "x265-params": "log-level=error"}),
  "av1": ("libsvtav1", {"preset": "8"}),
}
# A CRF sweep per codec (libx264/libx265 0-51, SVT-AV1 1-63), from near-transparent to very coarse.
VIDEO_CRFS = {
  "h264": (18, 24, 30, 36, 42, 48),
  "h265": (18, 24, 30, 36, 42, 48),
  "av1": (20, 30, 40, 50, 58, 63),
}


def video_codec(frames: np.ndarray, codec: str, crf: int, fps: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
  """Encodes RGB uint8 frames [N, H, W, 3] with an inter-frame codec ("h264", "h265" or "av1")
  at constant rate factor `crf` into an in-memory MP4 (PyAV; yuv420p, the encoder's defaults
  and GOP otherwise) and decodes it back.

  Returns (reconstruction uint8 [N, H, W, 3], bytes per frame [N]): the whole file's size (every
  header and index counted) spread evenly over the frames, since inter-frame codecs spend bits
  unevenly and only the total is meaningful.
  """
  import io

  import av

  if codec not in VIDEO_CODECS:
    raise ValueError(f"video_codec: {codec!r} is not one of {list(VIDEO_CODECS)}")
  name, opts = VIDEO_CODECS[codec]
  frames = np.asarray(frames, np.uint8)
  n, h, w, _ = frames.shape
  buf = io.BytesIO()
  with av.open(buf, "w", format="mp4") as out:
    st = out.add_stream(name, rate=int(round(fps)))
    st.width, st.height, st.pix_fmt = w, h, "yuv420p"
    st.options = {**opts, "crf": str(crf)}
    for f in frames:
      out.mux(st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
    out.mux(st.encode(None))
  size = buf.getbuffer().nbytes
  buf.seek(0)
  with av.open(buf, "r") as inp:
    rec = np.stack([fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)])
  if len(rec) != n:
    raise ValueError(f"video_codec: {codec} returned {len(rec)} of {n} frames")
  return rec, np.full(n, size / n)


def video_codec_rows(
  frames: np.ndarray,
  *,
  fps: float = 25.0,
  codecs=("h264", "h265", "av1"),
  crfs: dict | None = None,
  with_ms_ssim: bool = True,
) -> list[dict]:
  """R–D rows of the inter-frame codecs over their CRF sweeps (`VIDEO_CRFS` unless given)."""
  rows = []
  for c in codecs:
    for crf in (crfs or VIDEO_CRFS)[c]:
      rows.append(summarize(c, f"crf {crf}", frames, *video_codec(frames, c, crf, fps), with_ms_ssim))
  return rows
