"""Honest rate accounting: what one frame's latent costs on the link, and what decoder updates cost.

Rate is always what would actually cross the link: `LatentCodec.encode` returns the bytes of one
frame's latent (at its precision, with any side information, optionally zlib-compressed), and
decoder updates are charged by `tree_bytes` at the precision they are sent in. Ratios compare with
the raw 8-bit RGB frame at full size (3 H W bytes), never a cropped one; bits per pixel are
8 bytes / (H W). This fixes the accounting of OVAL (Kaplan et al., APS360 2022), whose "23.3x"
used the decoder's cropped 351x471 output (`specs/seeds_keyframe_oval_vae.md` §2.11).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence

import jax
import numpy as np

from aejax.codec.entropy import (
  FAMILIES,
  decode_symbols,
  decode_with_table,
  encode_symbols,
  encode_with_table,
  table_models,
)

PRECISIONS = ("float32", "float16", "int16", "int8", "int4")
ENTROPY = ("none", "zlib", "laplace", "gaussian", "learned")


def raw_frame_bytes(height: int, width: int) -> int:
  """Bytes of one raw 8-bit RGB frame."""
  return 3 * int(height) * int(width)


def compression_ratio(nbytes, height: int, width: int):
  """Raw 8-bit RGB bytes of the full frame / transmitted bytes."""
  return raw_frame_bytes(height, width) / np.asarray(nbytes, np.float64)


def bits_per_pixel(nbytes, height: int, width: int):
  """8 * transmitted bytes / (H W)."""
  return 8.0 * np.asarray(nbytes, np.float64) / (int(height) * int(width))


def tree_bytes(tree, dtype="float32") -> int:
  """Bytes of every array in `tree` sent at `dtype` (a decoder update)."""
  item = np.dtype(dtype).itemsize
  return int(sum(np.size(a) for a in jax.tree.leaves(tree)) * item)


def cast_tree(tree, dtype="float32"):
  """What the receiver holds after `tree` is sent at `dtype`: values rounded to it, as float32."""
  return jax.tree.map(lambda a: np.asarray(np.asarray(a).astype(dtype), np.float32), tree)


def _pack_nibbles(q: np.ndarray) -> bytes:
  q = q.astype(np.uint8).ravel()
  if q.size % 2:
    q = np.append(q, np.uint8(0))
  return ((q[0::2] << 4) | q[1::2]).astype(np.uint8).tobytes()


def _unpack_nibbles(buf: bytes, n: int) -> np.ndarray:
  b = np.frombuffer(buf, np.uint8)
  return np.stack([b >> 4, b & 15], axis=1).ravel()[:n]


@dataclasses.dataclass(frozen=True)
class LatentCodec:
  """Turns one frame's latent [h, w, C] into the bytes sent, and back.

  Attributes:
    precision: "float32", "float16" (the original), "int16", "int8" or "int4".
    channels: keep the first k channels (None: all); each dropped channel is replaced by its
      per-frame mean, sent as float16 (2 bytes).
    step: integer precisions only. None: per-frame, per-channel range quantisation with
      `lo` and `scale` sent as float16 (4 bytes per kept channel); a number: a fixed uniform step,
      values `round(z / step)` clipped to the signed range, no side information.
    entropy: "none"; "zlib" (level 9) over the whole payload; or "laplace" / "gaussian": the
      integer symbols range coded under a per-channel factorized model (`aejax.codec.entropy`;
      integer precisions only, the side information stays as above); or "learned": the symbols
      round(z / step), clipped to each channel's range in `table`, range coded under the model's
      learned density tabulated in `table` (no side information; needs a fixed step).
    temporal: with a fixed `step` and a range-coded `entropy`, code each frame's symbols as the
      difference from the previous frame's (lossless prediction on the quantisation grid, so the
      distortion is unchanged); the first frame of a stream is coded alone. Stateful: use
      `stream()` (or `roundtrip`), which hold the previous frame's symbols at each end.
    table: with entropy "learned", the packed frequency table (`aejax.codec.entropy.pack_table`;
      `aejax.codec.files.learned_codec` fills it from a model); it travels in the file header.
  """

  precision: str = "float16"
  channels: int | None = None
  step: float | None = None
  entropy: str = "none"
  temporal: bool = False
  table: str | None = None

  def __post_init__(self):
    if self.precision not in PRECISIONS:
      raise ValueError(f"LatentCodec: precision {self.precision!r} is not one of {PRECISIONS}")
    if self.entropy not in ENTROPY:
      raise ValueError(f"LatentCodec: entropy {self.entropy!r} is not one of {ENTROPY}")
    if self.entropy in (*FAMILIES, "learned") and not self.precision.startswith("int"):
      raise ValueError(
        f"LatentCodec: entropy {self.entropy!r} codes integer symbols; use an int "
        f"precision, not {self.precision!r}"
      )
    if self.entropy == "learned" and (self.step is None or self.temporal):
      raise ValueError("LatentCodec: entropy 'learned' needs a fixed step and no temporal prediction")
    if self.temporal and (self.step is None or self.entropy not in FAMILIES):
      raise ValueError(
        "LatentCodec: temporal prediction needs a fixed step and entropy 'laplace' or 'gaussian'"
      )
    if self.step is not None and self.step <= 0:
      raise ValueError(f"LatentCodec: step must be positive, got {self.step}")
    if self.channels is not None and self.channels < 1:
      raise ValueError(f"LatentCodec: channels must be >= 1, got {self.channels}")

  @property
  def name(self) -> str:
    """A short label, e.g. "int4-c5-zlib"."""
    parts = [self.precision]
    if self.channels is not None:
      parts.append(f"c{self.channels}")
    if self.step is not None and self.precision.startswith("int"):
      parts.append(f"step{self.step:g}")
    if self.entropy != "none":
      parts.append(self.entropy)
    if self.temporal:
      parts.append("temporal")
    return "-".join(parts)

  def _levels(self) -> int:
    return 2 ** int(self.precision[3:])

  def _range(self, prev) -> tuple[int, int, int]:
    """(offset added to unsigned symbols, lowest, highest coded symbol)."""
    levels = self._levels()
    if prev is not None:
      return 0, -(levels - 1), levels - 1
    lo = 0 if self.step is None else -(levels // 2)
    return lo, lo, lo + levels - 1

  def _pack(self, q: np.ndarray, prev=None) -> bytes:
    """Unsigned symbols in [0, levels) → bytes (nibbles, bytes, little-endian uint16, or range
    coded, as differences from `prev` when given)."""
    if self.entropy in FAMILIES:
      off, lo, hi = self._range(prev)
      sym = q.astype(np.int64) + off - (0 if prev is None else prev)
      return encode_symbols(sym, lo, hi, self.entropy)
    if self.precision == "int4":
      return _pack_nibbles(q)
    return q.astype(np.uint8 if self.precision == "int8" else "<u2").tobytes()

  def _unpack(self, data: bytes, shape, prev=None) -> np.ndarray:
    """Inverse of `_pack`: unsigned symbols as float32 of `shape`."""
    n = int(np.prod(shape))
    if self.entropy in FAMILIES:
      off, lo, hi = self._range(prev)
      q = decode_symbols(data, shape, lo, hi, self.entropy) - off + (0 if prev is None else prev)
    elif self.precision == "int4":
      q = _unpack_nibbles(data, n)
    else:
      q = np.frombuffer(data, np.uint8 if self.precision == "int8" else "<u2")[:n]
    return q.astype(np.float32).reshape(shape)

  def _table(self) -> str:
    if not self.table:
      raise ValueError("LatentCodec: entropy 'learned' needs the model's table (codec.files.learned_codec)")
    return self.table

  def _kept(self, c: int) -> int:
    return c if self.channels is None else min(self.channels, c)

  def encode(self, z) -> bytes:
    """One frame's latent [h, w, C] → the payload bytes (coded alone, also when `temporal`)."""
    return self.encode_frame(z)[0]

  def encode_frame(self, z, prev=None) -> tuple[bytes, np.ndarray | None]:
    """One frame's latent → (payload, its unsigned integer symbols [h, w, k] or None for float
    precisions); with `temporal`, `prev` (the previous frame's symbols) is the prediction."""
    z = np.asarray(z, np.float32)
    q = None
    k = self._kept(z.shape[-1])
    keep, drop = z[..., :k], z[..., k:]
    parts = [drop.mean(axis=(0, 1)).astype(np.float16).tobytes()] if drop.shape[-1] else []
    if self.precision in ("float32", "float16"):
      parts.append(keep.astype(self.precision).tobytes())
    elif self.entropy == "learned":
      los, his, _ = table_models(self._table())
      q = np.clip(np.rint(keep / self.step), los[:k], his[:k]).astype(np.int64)
      parts.append(encode_with_table(q, self.table))
    else:
      levels = self._levels()
      if self.step is None:
        lo = keep.min(axis=(0, 1)).astype(np.float16)
        hi = keep.max(axis=(0, 1))
        scale = np.maximum((hi - lo.astype(np.float32)) / (levels - 1), 1e-4).astype(np.float16)
        q = np.rint((keep - lo.astype(np.float32)) / scale.astype(np.float32))
        q = np.clip(q, 0, levels - 1)
        parts += [lo.tobytes(), scale.tobytes()]
      else:
        q = np.clip(np.rint(keep / self.step), -(levels // 2), levels // 2 - 1) + levels // 2
      q = q.astype(np.int64)
      parts.append(self._pack(q, prev if self.temporal else None))
    payload = b"".join(parts)
    return (zlib.compress(payload, 9) if self.entropy == "zlib" else payload), q

  def decode(self, payload: bytes, shape: Sequence[int]) -> np.ndarray:
    """Payload → the receiver's latent [h, w, C] float32 (`shape` is known to both ends)."""
    return self.decode_frame(payload, shape)[0]

  def decode_frame(
    self, payload: bytes, shape: Sequence[int], prev=None
  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Payload → (latent [h, w, C] float32, its unsigned symbols or None); `prev` as in
    `encode_frame`."""
    h, w, c = (int(v) for v in shape)
    q = None
    buf = zlib.decompress(payload) if self.entropy == "zlib" else payload
    k = self._kept(c)
    off = 2 * (c - k)
    fill = np.frombuffer(buf[:off], np.float16).astype(np.float32)
    if self.precision in ("float32", "float16"):
      keep = np.frombuffer(buf[off:], self.precision).astype(np.float32).reshape(h, w, k)
    elif self.entropy == "learned":
      q = decode_with_table(buf[off:], (h, w, k), self._table()).astype(np.int64)
      keep = q.astype(np.float32) * np.float32(self.step)
    else:
      levels = self._levels()
      if self.step is None:
        lo = np.frombuffer(buf[off : off + 2 * k], np.float16).astype(np.float32)
        scale = np.frombuffer(buf[off + 2 * k : off + 4 * k], np.float16).astype(np.float32)
        off += 4 * k
      q = self._unpack(buf[off:], (h, w, k), prev if self.temporal else None)
      keep = lo + q * scale if self.step is None else (q - levels // 2) * self.step
    out = np.empty((h, w, c), np.float32)
    out[..., :k] = keep
    out[..., k:] = fill
    return out, (None if q is None else np.asarray(q, np.int64))

  def stream(self) -> LatentStream:
    """A stateful coder of consecutive frames (one per end of the link)."""
    return LatentStream(self)

  def roundtrip(
    self, z, sender: LatentStream | None = None, receiver: LatentStream | None = None
  ) -> tuple[np.ndarray, np.ndarray]:
    """Latents [N, h, w, C] → (what the receiver decodes [N, h, w, C], bytes per frame [N]).

    `sender` / `receiver` continue a stream across calls (default: a fresh one each).
    """
    z = np.asarray(z, np.float32)
    sender, receiver = sender or self.stream(), receiver or self.stream()
    out, sizes = np.empty_like(z), np.empty(len(z), np.int64)
    for i, zi in enumerate(z):
      payload = sender.encode(zi)
      out[i], sizes[i] = receiver.decode(payload, zi.shape), len(payload)
    return out, sizes


class LatentStream:
  """One end of a stream of frames coded by `codec`: holds the previous frame's symbols (used
  when `codec.temporal`)."""

  def __init__(self, codec: LatentCodec):
    self.codec, self.prev = codec, None

  def encode(self, z) -> bytes:
    """The next frame's latent → its payload."""
    payload, q = self.codec.encode_frame(z, self.prev)
    self.prev = q
    return payload

  def decode(self, payload: bytes, shape: Sequence[int]) -> np.ndarray:
    """The next payload → its latent."""
    z, q = self.codec.decode_frame(payload, shape, self.prev)
    self.prev = q
    return z


def apply_codec(decode_fn: Callable, z, codec: LatentCodec):
  """Runs `codec` over latents and `decode_fn` over what the receiver gets: (frames, bytes)."""
  zhat, nbytes = codec.roundtrip(z)
  return decode_fn(zhat), nbytes
