"""Entropy coding of quantised latents: a per-channel factorized model and a range coder.

The model of one frame's integer symbols q [h, w, k] (each in [lo, hi]) is factorized over
positions and has one discretised distribution per channel: a Laplace (default) or Gaussian with
the channel's mean and scale, measured on the frame itself and sent as float16 side information
(4 bytes per channel). The symbols are then range coded with `constriction` (Bamler 2022; PyPI
`constriction`, imported lazily) under that model, so the payload costs close to the model's
cross-entropy, -sum log2 P(q), plus a few bytes, where zlib only finds repeated byte strings.

Payload layout (little-endian): family-independent
  mean float16 [k] | scale float16 [k] | range-coder words uint32 [...]
Both ends round the parameters to float16 before use, so they build the same model bit for bit.

A learned density (`aejax.models.rd_layers.FactorizedDensity`) is coded through a table instead:
`cdf_table` turns its per-channel probabilities into integer frequencies over each channel's
symbol range [lo, lo + n) (tails folded into the end symbols, every symbol at least 1/65536),
`pack_table` writes them as one ASCII string (base64 of zlib of: per channel int16 lo, uint16 n,
uint16 frequencies [n]; it travels in the file header once), and `encode_with_table` /
`decode_with_table` range code the symbols channel by channel under `Categorical` models built
from those integers alone, so both ends use the same model bit for bit whatever their floats do.
The payload is then the range-coder words (uint32) only.
"""

from __future__ import annotations

import base64
import functools
import struct
import zlib

import numpy as np

FAMILIES = ("laplace", "gaussian")
MIN_SCALE = 0.05  # symbols; keeps every in-range symbol codable and the coder well conditioned


def constriction_module():
  """The `constriction` package (a one-line ImportError naming the pip package when missing)."""
  try:
    import constriction
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("entropy coding needs `constriction` (pip install constriction)") from e
  return constriction


def _model(family: str, lo: int, hi: int):
  m = constriction_module().stream.model
  if family == "laplace":
    return m.QuantizedLaplace(int(lo), int(hi))
  if family == "gaussian":
    return m.QuantizedGaussian(int(lo), int(hi))
  raise ValueError(f"entropy: family {family!r} is not one of {FAMILIES}")


def fit_params(q: np.ndarray, family: str = "laplace") -> tuple[np.ndarray, np.ndarray]:
  """Per-channel (mean, scale) of integer symbols [..., k], rounded to float16 (as sent).

  The scale is the Laplace's b (mean absolute deviation) or the Gaussian's standard deviation,
  floored at `MIN_SCALE`.
  """
  x = np.asarray(q, np.float64).reshape(-1, q.shape[-1])
  mean = x.mean(0)
  if family == "laplace":
    scale = np.abs(x - mean).mean(0)
  elif family == "gaussian":
    scale = x.std(0)
  else:
    raise ValueError(f"entropy: family {family!r} is not one of {FAMILIES}")
  scale = np.maximum(scale, MIN_SCALE)
  return mean.astype(np.float16), scale.astype(np.float16)


def _per_symbol(param: np.ndarray, shape) -> np.ndarray:
  return np.ascontiguousarray(np.broadcast_to(param.astype(np.float64), shape).ravel())


def encode_symbols(q: np.ndarray, lo: int, hi: int, family: str = "laplace") -> bytes:
  """Integer symbols [..., k] in [lo, hi] → payload bytes (parameters + range-coded words)."""
  q = np.asarray(q)
  if q.size and (q.min() < lo or q.max() > hi):
    raise ValueError(f"entropy: symbols outside [{lo}, {hi}]")
  mean, scale = fit_params(q, family)
  enc = constriction_module().stream.queue.RangeEncoder()
  if q.size:
    enc.encode(
      np.ascontiguousarray(q.ravel(), np.int32),
      _model(family, lo, hi),
      _per_symbol(mean, q.shape),
      np.maximum(_per_symbol(scale, q.shape), MIN_SCALE),
    )
  words = np.asarray(enc.get_compressed(), np.uint32)
  return mean.tobytes() + scale.tobytes() + words.astype("<u4").tobytes()


def decode_symbols(payload: bytes, shape, lo: int, hi: int, family: str = "laplace") -> np.ndarray:
  """Payload bytes → the integer symbols (int32, `shape` [..., k], known to both ends)."""
  shape = tuple(int(s) for s in shape)
  k = shape[-1]
  mean = np.frombuffer(payload[: 2 * k], np.float16)
  scale = np.frombuffer(payload[2 * k : 4 * k], np.float16)
  words = np.frombuffer(payload[4 * k :], "<u4").astype(np.uint32)
  n = int(np.prod(shape))
  if n == 0:
    return np.zeros(shape, np.int32)
  dec = constriction_module().stream.queue.RangeDecoder(words)
  q = dec.decode(
    _model(family, lo, hi), _per_symbol(mean, shape), np.maximum(_per_symbol(scale, shape), MIN_SCALE)
  )
  return np.asarray(q, np.int32).reshape(shape)


TABLE_ONE = 1 << 16  # frequencies are in units of 2^-16


def cdf_table(pmf, below, above, tail: float = 2.0**-16) -> tuple[np.ndarray, list[np.ndarray]]:
  """(lo [C] int, frequencies per channel) of a density tabulated on the symbols -R..R.

  Args:
    pmf: [C, 2R + 1] probabilities of the symbols -R..R.
    below, above: [C] mass below -R - 1/2 and above R + 1/2.
    tail: each channel's range drops the symbols beyond which less than this mass lies; the
      dropped mass goes to the end symbols (the encoder clips to the range); every range keeps
      at least two symbols.
  """
  pmf = np.maximum(np.asarray(pmf, np.float64), 0.0)
  radius = (pmf.shape[1] - 1) // 2
  los, freqs = [], []
  for p, b, a in zip(pmf, np.asarray(below, np.float64), np.asarray(above, np.float64)):
    left = b + np.cumsum(p) - p  # mass below each symbol
    right = a + np.cumsum(p[::-1])[::-1] - p  # mass above each symbol
    i = int(np.argmax(left + p > tail))  # first symbol with more than `tail` at or below it
    j = len(p) - 1 - int(np.argmax((right + p)[::-1] > tail))
    j = min(max(i + 1, j), len(p) - 1)  # at least two symbols (the coder needs them)
    i = min(i, j - 1)
    q = p[i : j + 1].copy()
    q[0] += left[i]
    q[-1] += right[j]
    q = q / max(q.sum(), 1e-300)
    los.append(i - radius)
    freqs.append(np.clip(np.rint(q * TABLE_ONE), 1, TABLE_ONE - 1).astype(np.uint16))
  return np.asarray(los, np.int64), freqs


def pack_table(los, freqs) -> str:
  """The table as one ASCII string (see the module docstring)."""
  parts = [struct.pack("<hH", int(lo), len(f)) + np.asarray(f, "<u2").tobytes() for lo, f in zip(los, freqs)]
  return base64.b64encode(zlib.compress(b"".join(parts), 9)).decode("ascii")


def unpack_table(table: str) -> tuple[np.ndarray, list[np.ndarray]]:
  """Inverse of `pack_table`: (lo [C], frequencies per channel)."""
  buf, off, los, freqs = zlib.decompress(base64.b64decode(table)), 0, [], []
  while off < len(buf):
    lo, n = struct.unpack_from("<hH", buf, off)
    off += 4
    los.append(lo)
    freqs.append(np.frombuffer(buf, "<u2", n, off).astype(np.uint16))
    off += 2 * n
  return np.asarray(los, np.int64), freqs


@functools.lru_cache(maxsize=16)
def table_models(table: str) -> tuple[np.ndarray, np.ndarray, list]:
  """(lo [C], hi [C], a `Categorical` model per channel) of a packed table (cached)."""
  los, freqs = unpack_table(table)
  cat = constriction_module().stream.model.Categorical
  models = [cat(f.astype(np.float64) / float(np.sum(f, dtype=np.int64)), perfect=False) for f in freqs]
  return los, los + np.asarray([len(f) for f in freqs]) - 1, models


def encode_with_table(q: np.ndarray, table: str) -> bytes:
  """Integer symbols [..., k] (k <= the table's channels, each within its range) → range-coder words."""
  q = np.asarray(q)
  los, his, models = table_models(table)
  k = q.shape[-1]
  if q.size and (np.any(q.reshape(-1, k).min(0) < los[:k]) or np.any(q.reshape(-1, k).max(0) > his[:k])):
    raise ValueError("entropy: symbols outside the table's ranges")
  enc = constriction_module().stream.queue.RangeEncoder()
  for c in range(k if q.size else 0):
    enc.encode(np.ascontiguousarray(q[..., c].ravel() - los[c], np.int32), models[c])
  return np.asarray(enc.get_compressed(), np.uint32).astype("<u4").tobytes()


def decode_with_table(payload: bytes, shape, table: str) -> np.ndarray:
  """Range-coder words → the integer symbols (int32, `shape` [..., k], known to both ends)."""
  shape = tuple(int(s) for s in shape)
  n, k = int(np.prod(shape[:-1])), shape[-1]
  q = np.zeros((n, k), np.int32)
  if q.size:
    los, _, models = table_models(table)
    dec = constriction_module().stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))
    for c in range(k):
      q[:, c] = np.asarray(dec.decode(models[c], n), np.int32) + los[c]
  return q.reshape(shape)
