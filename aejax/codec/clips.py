"""The 3D autoencoder (`aejax.models.vqae3d`) as a codec: clips in `.aejx` files, codes range coded.

A file is the `aejax.codec.bitstream` container (version 2) holding one CLIP record (kind 2) per
clip, in order. Header JSON keys:

  model           the model config (`VQAE3D` fields), rebuilt by the decoder
  weights_sha256  SHA-256 of every variable (params and batch_stats) as float32, tree order
  source          where the encoder got the weights ({"checkpoint": path}), a hint
  clip            [T, H, W, C] of every clip (uint8 pixels)
  fps             frame rate of the decoded video
  latent_shape    [T, h, w, S] codes per clip (S: one code per channel, or per VQ codebook)
  num_codes       K, the codebook size (codes are 0..K-1)
  streams         the probability model of a clip's codes (below): "temporal", "channel" or "clip"
  batch           clips per decoder call (the receiver computes exactly what the sender reported)

Clip payload (little-endian): uint8 frequency tables | range-coder words uint32 [...]. The codes
are range coded (`constriction`) under categorical models measured on the clip itself and sent as
its counts scaled so the largest is 255 (every used code at least 1), so both ends build the same
model bit for bit:
  clip      freq [1, K]: one model for every code, in C order
  channel   freq [S, K]: one model per code channel s, channel after channel
  temporal  freq [1, K] for frame 0 (C order), then table [K, K]: the code at (t, y, x, s) for t > 0
            under row table[code at (t - 1, y, x, s)] (codes repeat in time: 15 % fewer bits than
            `channel` on real MovingMNIST); K <= 64 (the table is K^2 bytes)

Only discrete codes are sent: the float modes (`quantizer="none"`, scalar `legacy`) are refused by
`ClipCodec` (their honest rate is the float bits, `vqae3d.bits_per_position`). The reconstruction
the encoder reports (uint8, `recon_sha256`) is the decoder's: the codes are looked up
(`vqae3d.dequantize`) and decoded in the same padded batches on both ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from collections.abc import Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from aejax import metrics
from aejax.codec.bitstream import CLIP, BitstreamWriter, iter_records, params_sha256, read_header
from aejax.codec.entropy import constriction_module
from aejax.codec.frames import video_sink
from aejax.evaluate import pad_batch
from aejax.io import atomic_path
from aejax.models.vqae3d import VQAE3D, dequantize, sends_floats

STREAMS = ("temporal", "channel", "clip")
MAX_TEMPORAL_CODES = 64


def _scaled(counts: np.ndarray) -> np.ndarray:
  """Counts [..., K] -> uint8 frequencies: the largest of each row 255, every used code at least 1."""
  top = np.maximum(counts.max(-1, keepdims=True), 1)
  return np.where(counts > 0, np.maximum(np.round(counts * 255.0 / top), 1), 0).astype(np.uint8)


def _counts(symbols: np.ndarray, k: int, prev: np.ndarray | None = None) -> np.ndarray:
  if prev is None:
    return np.bincount(symbols.ravel(), minlength=k).astype(np.float64)
  return np.bincount(prev.ravel() * k + symbols.ravel(), minlength=k * k).reshape(k, k).astype(np.float64)


def _layout(codes_shape, k: int, streams: str):
  """[(table shape, symbol selector, previous-code selector or None)] of the model `streams`."""
  s = codes_shape[-1]
  if streams == "channel":
    return [((1, k), (..., c), None) for c in range(s)]
  if streams == "clip":
    return [((1, k), (...,), None)]
  if streams == "temporal":
    if k > MAX_TEMPORAL_CODES:
      raise ValueError(f"clips: temporal streams need K <= {MAX_TEMPORAL_CODES}, got {k}; use channel")
    return [((1, k), (slice(0, 1),), None), ((k, k), (slice(1, None),), (slice(0, -1),))]
  raise ValueError(f"clips: streams must be one of {STREAMS}, got {streams!r}")


def _coder(freq: np.ndarray, prev: np.ndarray | None):
  """(model, per-symbol probabilities or None) of one stream for `constriction`."""
  model = constriction_module().stream.model
  if prev is None:
    return model.Categorical(freq[0].astype(np.float64), perfect=False), ()
  return model.Categorical(perfect=False), (np.ascontiguousarray(freq[prev.ravel()], np.float64),)


def encode_codes(codes: np.ndarray, num_codes: int, streams: str = "temporal") -> bytes:
  """Codes [T, ..., S] in [0, K) -> payload bytes (uint8 frequency tables, then range-coder words)."""
  codes = np.asarray(codes)
  if codes.size and (codes.min() < 0 or codes.max() >= num_codes):
    raise ValueError(f"clips: codes outside [0, {num_codes})")
  layout = _layout(codes.shape, num_codes, streams)
  parts = [(codes[sel], None if psel is None else codes[psel]) for _, sel, psel in layout]
  freqs = [_scaled(_counts(sym, num_codes, prev)).reshape(-1, num_codes) for sym, prev in parts]
  enc = constriction_module().stream.queue.RangeEncoder()
  for (sym, prev), freq in zip(parts, freqs):
    if sym.size:
      model, probs = _coder(freq, prev)
      enc.encode(np.ascontiguousarray(sym.ravel(), np.int32), model, *probs)
  return b"".join(f.tobytes() for f in freqs) + np.asarray(enc.get_compressed(), "<u4").tobytes()


def decode_codes(payload: bytes, shape, num_codes: int, streams: str = "temporal") -> np.ndarray:
  """Inverse of `encode_codes`: the codes (int32, `shape` [T, ..., S], known to both ends)."""
  shape = tuple(int(s) for s in shape)
  layout, off = _layout(shape, num_codes, streams), 0
  freqs = []
  for table, _, _ in layout:
    n = int(np.prod(table))
    freqs.append(np.frombuffer(payload[off : off + n], np.uint8).reshape(table))
    off += n
  dec = constriction_module().stream.queue.RangeDecoder(np.frombuffer(payload[off:], "<u4"))
  codes = np.zeros(shape, np.int32)
  for (_, sel, psel), freq in zip(layout, freqs):
    if psel is None:
      if codes[sel].size:
        codes[sel] = np.asarray(dec.decode(_coder(freq, None)[0], codes[sel].size)).reshape(codes[sel].shape)
      continue
    for t in range(1, shape[0]):  # frame by frame: each frame's model is the previous frame's codes
      model, probs = _coder(freq, codes[t - 1])
      codes[t] = np.asarray(dec.decode(model, *probs)).reshape(shape[1:])
  return codes


class ClipCodec:
  """The model's jitted halves over padded batches of `batch` clips: uint8 clips -> codes, and
  codes -> the uint8 reconstruction (the same function at the sender and the receiver)."""

  def __init__(self, model: VQAE3D, variables, batch: int):
    if sends_floats(model):
      raise ValueError(
        f"encode: the {model.quantizer}/{model.quantizer_mode} quantiser sends continuous values, "
        "which no code describes; train with quantizer=scalar (ste or hard) or vq"
      )
    self.model, self.variables, self.batch = model, variables, int(batch)

    def codes(v, x):
      z = model.apply(v, x.astype(jnp.float32) / 255.0, method=lambda m, x: m.encode(x))
      return model.apply(v, z, method=lambda m, z: m.quantize(z))[1]["indices"].astype(jnp.int32)

    def decode(v, idx):
      y = model.apply(v, dequantize(model, v, idx), method=lambda m, zq: m.decode(zq))
      return jnp.round(jnp.clip(y.astype(jnp.float32), 0.0, 1.0) * 255.0).astype(jnp.uint8)

    self._codes, self._decode = jax.jit(codes), jax.jit(decode)

  def _run(self, fn, x: np.ndarray) -> np.ndarray:
    padded, n = pad_batch(x, self.batch)
    return np.asarray(jax.device_get(fn(self.variables, padded)))[:n]

  def codes(self, clips: np.ndarray) -> np.ndarray:
    """uint8 clips [n <= batch, T, H, W, C] -> codes [n, T, h, w, S] int32."""
    return self._run(self._codes, clips)

  def decode(self, codes: np.ndarray) -> np.ndarray:
    """Codes [n <= batch, T, h, w, S] -> reconstructions [n, T, H, W, C] uint8."""
    return self._run(self._decode, codes)


def _batches(items: Iterable[np.ndarray], size: int):
  it = iter(items)
  while chunk := list(itertools.islice(it, size)):
    yield np.stack(chunk)


def clip_psnr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """PSNR of each uint8 clip [N, T, H, W, C] as one image, in dB ([N] float64)."""
  flat = lambda v: np.asarray(v, np.float32).reshape(len(v), -1, *v.shape[3:]) / 255.0
  return np.asarray(metrics.psnr(flat(y), flat(x)), np.float64)


def encode_clips(
  model: VQAE3D,
  variables,
  clips: Iterable[np.ndarray],
  out_path,
  *,
  batch: int,
  fps: float,
  model_config: dict,
  source: dict | None = None,
  streams: str = "temporal",
  recon_video=None,
) -> dict:
  """Streams uint8 clips [T, H, W, C] into an `.aejx` file, decoding them as the receiver will.

  Returns the summary: clips, frames, `bytes` (the file's size), header bytes, `bpp` (file bits
  per pixel), `bits_per_code`, PSNR (mean over clips, each clip one image) of the reconstruction
  whose uint8 frames `recon_sha256` hashes (what `decode_clips` reproduces), and seconds.
  `recon_video`: also write the reconstruction, clip after clip (H.264 MP4 when even-sized).
  """
  codec = ClipCodec(model, variables, batch)
  writer, sink, sha, psnr, t0 = None, None, hashlib.sha256(), [], time.perf_counter()
  videos = contextlib.ExitStack()  # the reconstruction video, once the first clip gives its size
  try:
    for x in _batches(clips, codec.batch):
      codes = codec.codes(x)
      if writer is None:
        header = {
          "model": dict(model_config),
          "weights_sha256": params_sha256(variables),
          "source": source or {},
          "clip": list(x.shape[1:]),
          "fps": float(fps),
          "latent_shape": list(codes.shape[1:]),
          "num_codes": int(model.num_codes),
          "streams": streams,
          "batch": codec.batch,
        }
        writer = BitstreamWriter(out_path, header)
        sink = videos.enter_context(video_sink(recon_video, fps, x.shape[2:4]))
      elif x.shape[1:] != tuple(header["clip"]):
        raise ValueError(f"encode: clip shape {x.shape[1:]} differs from the first {header['clip']}")
      sent = []
      for c in codes:  # the receiver's codes: decoded from the bytes written
        payload = encode_codes(c, model.num_codes, streams)
        writer.write_clip(payload)
        sent.append(decode_codes(payload, c.shape, model.num_codes, streams))
      recon = codec.decode(np.stack(sent))
      sha.update(np.ascontiguousarray(recon).tobytes())
      psnr.extend(clip_psnr(x, recon))
      for f in recon.reshape(-1, *recon.shape[2:]) if sink is not None else ():
        sink.write(f[..., 0] if f.shape[-1] == 1 else f)
  except BaseException:
    if writer is not None:
      writer.abort()
    with videos:  # aborts the video (video_sink) with the error on its way
      raise
  if writer is None:
    raise ValueError("encode: no clips")
  path = writer.close()
  videos.close()
  size, n = path.stat().st_size, len(psnr)
  t, h, w, _ = header["clip"]
  codes_total = n * int(np.prod(header["latent_shape"]))
  return {
    "file": str(path),
    "clips": n,
    "frames": n * t,
    "bytes": size,
    "header_bytes": writer.header_bytes,
    "bpp": 8.0 * size / (n * t * h * w),
    "bits_per_code": 8.0 * (size - writer.header_bytes) / codes_total,
    "bpp_fixed_length": codes_total * float(np.log2(model.num_codes)) / (n * t * h * w),
    "psnr": float(np.mean(psnr)),
    "recon_sha256": sha.hexdigest(),
    "seconds": time.perf_counter() - t0,
  }


def decode_clips(path, model: VQAE3D, variables, *, out_npy=None, out_video=None) -> dict:
  """Decodes an `.aejx` clip file with `model` / `variables` (checked against the header's hash).

  Writes the clips to `out_npy` ([N, T, H, W, C] uint8) and/or `out_video` (frames clip after
  clip) and returns {"clips", "frames", "bytes" (file size), "bpp", "recon_sha256", ...}; the hash
  equals the encoder's `recon_sha256` when the decode is bit exact.
  """
  header, n = read_header(path)
  if "weights_sha256" not in header:
    raise ValueError(f"{path}: not a 3D-autoencoder clip file (no weights_sha256 in its header)")
  if params_sha256(variables) != header["weights_sha256"]:
    raise ValueError(
      f"{path}: the decoder's weights differ from the encoder's (weights_sha256 "
      f"{header['weights_sha256'][:12]}..., these {params_sha256(variables)[:12]}...)"
    )
  codec = ClipCodec(model, variables, header["batch"])
  t, h, w, c = header["clip"]
  shape, k, streams = header["latent_shape"], header["num_codes"], header["streams"]
  sha, done = hashlib.sha256(), 0
  payloads = (p for kind, p in iter_records(path) if kind == CLIP)
  with contextlib.ExitStack() as stack:
    out = None
    if out_npy:
      tmp = stack.enter_context(atomic_path(out_npy))
      out = np.lib.format.open_memmap(tmp, "w+", np.uint8, (n, t, h, w, c))
    sink = stack.enter_context(video_sink(out_video, header["fps"], (h, w)))
    for codes in _batches((decode_codes(p, shape, k, streams) for p in payloads), codec.batch):
      recon = codec.decode(codes)
      sha.update(np.ascontiguousarray(recon).tobytes())
      if out is not None:
        out[done : done + len(recon)] = recon
      for f in recon.reshape(-1, h, w, c) if sink is not None else ():
        sink.write(f[..., 0] if c == 1 else f)
      done += len(recon)
    if done != n:
      raise ValueError(f"{path}: {done} clip records, the header says {n}")
    if out is not None:
      out.flush()
      del out
  size = Path(path).stat().st_size
  return {
    "clips": n,
    "frames": n * t,
    "bytes": size,
    "bpp": 8.0 * size / max(n * t * h * w, 1),
    "recon_sha256": sha.hexdigest(),
    "npy": str(out_npy) if out_npy else None,
    "video": str(out_video) if out_video else None,
  }
