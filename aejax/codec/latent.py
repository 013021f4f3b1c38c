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

PRECISIONS = ("float32", "float16", "int8", "int4")


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
    precision: "float32", "float16" (the original), "int8" or "int4".
    channels: keep the first k channels (None: all); each dropped channel is replaced by its
      per-frame mean, sent as float16 (2 bytes).
    step: integer precisions only. None: per-frame, per-channel range quantisation with
      `lo` and `scale` sent as float16 (4 bytes per kept channel); a number: a fixed uniform step,
      values `round(z / step)` clipped to the signed range, no side information.
    entropy: "none", or "zlib" (level 9) over the whole payload, a real lossless coder.
  """

  precision: str = "float16"
  channels: int | None = None
  step: float | None = None
  entropy: str = "none"

  def __post_init__(self):
    if self.precision not in PRECISIONS:
      raise ValueError(f"LatentCodec: precision {self.precision!r} is not one of {PRECISIONS}")
    if self.entropy not in ("none", "zlib"):
      raise ValueError(f"LatentCodec: entropy {self.entropy!r} is not 'none' or 'zlib'")
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
    return "-".join(parts)

  def _levels(self) -> int:
    return 256 if self.precision == "int8" else 16

  def _kept(self, c: int) -> int:
    return c if self.channels is None else min(self.channels, c)

  def encode(self, z) -> bytes:
    """One frame's latent [h, w, C] → the payload bytes."""
    z = np.asarray(z, np.float32)
    k = self._kept(z.shape[-1])
    keep, drop = z[..., :k], z[..., k:]
    parts = [drop.mean(axis=(0, 1)).astype(np.float16).tobytes()] if drop.shape[-1] else []
    if self.precision in ("float32", "float16"):
      parts.append(keep.astype(self.precision).tobytes())
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
      parts.append(q.astype(np.uint8).tobytes() if levels == 256 else _pack_nibbles(q))
    payload = b"".join(parts)
    return zlib.compress(payload, 9) if self.entropy == "zlib" else payload

  def decode(self, payload: bytes, shape: Sequence[int]) -> np.ndarray:
    """Payload → the receiver's latent [h, w, C] float32 (`shape` is known to both ends)."""
    h, w, c = (int(v) for v in shape)
    buf = zlib.decompress(payload) if self.entropy == "zlib" else payload
    k = self._kept(c)
    off = 2 * (c - k)
    fill = np.frombuffer(buf[:off], np.float16).astype(np.float32)
    n = h * w * k
    if self.precision in ("float32", "float16"):
      keep = np.frombuffer(buf[off:], self.precision).astype(np.float32).reshape(h, w, k)
    else:
      levels = self._levels()
      if self.step is None:
        lo = np.frombuffer(buf[off:off + 2 * k], np.float16).astype(np.float32)
        scale = np.frombuffer(buf[off + 2 * k:off + 4 * k], np.float16).astype(np.float32)
        off += 4 * k
      data = buf[off:]
      q = (np.frombuffer(data, np.uint8)[:n] if levels == 256 else _unpack_nibbles(data, n))
      q = q.astype(np.float32).reshape(h, w, k)
      keep = lo + q * scale if self.step is None else (q - levels // 2) * self.step
    out = np.empty((h, w, c), np.float32)
    out[..., :k] = keep
    out[..., k:] = fill
    return out

  def roundtrip(self, z) -> tuple[np.ndarray, np.ndarray]:
    """Latents [N, h, w, C] → (what the receiver decodes [N, h, w, C], bytes per frame [N])."""
    z = np.asarray(z, np.float32)
    out, sizes = np.empty_like(z), np.empty(len(z), np.int64)
    for i, zi in enumerate(z):
      payload = self.encode(zi)
      out[i], sizes[i] = self.decode(payload, zi.shape), len(payload)
    return out, sizes


def apply_codec(decode_fn: Callable, z, codec: LatentCodec):
  """Runs `codec` over latents and `decode_fn` over what the receiver gets: (frames, bytes)."""
  zhat, nbytes = codec.roundtrip(z)
  return decode_fn(zhat), nbytes
