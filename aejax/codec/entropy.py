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
"""

from __future__ import annotations

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
