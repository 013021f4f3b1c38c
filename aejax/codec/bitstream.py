"""The `.aejx` container: one learned-codec video in one file, written as it streams.

Layout (all integers little-endian):

  offset 0   magic      4 bytes  b"AEJX"
         4   version    uint16   (2; version-1 files, which hold no clip records, still read)
         6   flags      uint16   (0; reserved)
         8   records    uint32   payload records (kind 0 or 2) in the file (patched on close)
        12   header_len uint32
        16   header     header_len bytes of UTF-8 JSON (keys below)
  then records, each  kind uint8 | length uint32 | payload (length bytes):
    kind 0  one frame's latent payload (`LatentCodec` bytes), in display order
    kind 1  a decoder update (online mode): the decoder's parameters at the header's
            `update_dtype`, leaves in `jax.tree` order, effective from the next frame record
    kind 2  one clip's payload (version 2; the 3D autoencoder, `aejax.codec.clips`): the range-coded
            codes of a [T, H, W] clip, in order

The header JSON holds the model identity (`model`: the model config, `decoder_sha256`: SHA-256 of
the decoder parameters as float32 in tree order, `source`: where the encoder got the weights, a
hint for the decoder), `color_space`, `size` [H, W], `fps`, `latent_shape` [h, w, C], `codec` (the
`LatentCodec` fields: quantiser and entropy model; the per-frame model parameters travel in each
payload), `batch` (frames per decoder call, so the receiver computes exactly what the sender
reported) and, for online streams, `update_dtype`. A clip file's header is described in
`aejax.codec.clips`. Every byte counts toward the rate: the file size is the reported size.
Framing costs 5 bytes per record plus the header.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np

from aejax.io import check_output

MAGIC = b"AEJX"
VERSION = 2
READS = (1, 2)  # versions this library reads
FRAME, UPDATE, CLIP = 0, 1, 2
_FIXED = struct.Struct("<4sHHII")
_RECORD = struct.Struct("<BI")


def params_sha256(params) -> str:
  """SHA-256 of every leaf of `params` as little-endian float32, in `jax.tree` order."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    h.update(np.ascontiguousarray(np.asarray(leaf, "<f4")).tobytes())
  return h.hexdigest()


def tree_to_bytes(tree, dtype: str) -> bytes:
  """Every leaf of `tree` at `dtype` (little-endian), concatenated in `jax.tree` order."""
  dt = np.dtype(dtype).newbyteorder("<")
  return b"".join(np.ascontiguousarray(np.asarray(a).astype(dt)).tobytes() for a in jax.tree.leaves(tree))


def tree_from_bytes(like, data: bytes, dtype: str):
  """Inverse of `tree_to_bytes`: a tree shaped like `like`, float32 leaves."""
  dt = np.dtype(dtype).newbyteorder("<")
  leaves, treedef = jax.tree.flatten(like)
  out, off = [], 0
  for a in leaves:
    n = int(np.size(a)) * dt.itemsize
    out.append(np.frombuffer(data[off : off + n], dt).astype(np.float32).reshape(np.shape(a)))
    off += n
  if off != len(data):
    raise ValueError(f"decoder update: {len(data)} bytes, expected {off}")
  return jax.tree.unflatten(treedef, out)


class BitstreamWriter:
  """Writes an `.aejx` file record by record (atomically: a temporary file renamed by `close`)."""

  def __init__(self, path, header: dict):
    self.path = Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    self._f = open(self._tmp, "wb")
    self._f.write(_FIXED.pack(MAGIC, VERSION, 0, 0, len(head)) + head)
    self.frames, self.nbytes = 0, _FIXED.size + len(head)
    self.header_bytes = self.nbytes

  def _record(self, kind: int, payload: bytes) -> int:
    self._f.write(_RECORD.pack(kind, len(payload)))
    self._f.write(payload)
    n = _RECORD.size + len(payload)
    self.nbytes += n
    return n

  def write_frame(self, payload: bytes) -> int:
    """Appends one frame record; returns the bytes it added to the file."""
    self.frames += 1
    return self._record(FRAME, payload)

  def write_clip(self, payload: bytes) -> int:
    """Appends one clip record; returns the bytes it added to the file."""
    self.frames += 1
    return self._record(CLIP, payload)

  def write_update(self, payload: bytes) -> int:
    """Appends a decoder-update record; returns the bytes it added to the file."""
    return self._record(UPDATE, payload)

  def close(self) -> Path:
    """Patches the record count, closes and renames onto `path`; returns the path."""
    self._f.seek(8)
    self._f.write(struct.pack("<I", self.frames))
    self._f.close()
    os.replace(self._tmp, self.path)
    return self.path

  def abort(self) -> None:
    """Closes and deletes the temporary file (nothing is left under `path`)."""
    self._f.close()
    self._tmp.unlink(missing_ok=True)


def read_header(path) -> tuple[dict, int]:
  """(header dict, payload-record count) of an `.aejx` file; a one-line ValueError for anything else."""
  if not Path(path).is_file():
    raise FileNotFoundError(f"{path}: no such .aejx file")
  with open(path, "rb") as f:
    fixed = f.read(_FIXED.size)
    if len(fixed) < _FIXED.size:
      raise ValueError(f"{path}: too short for an .aejx file")
    magic, version, _, frames, n = _FIXED.unpack(fixed)
    if magic != MAGIC:
      raise ValueError(f"{path}: not an .aejx file (magic {magic!r})")
    if version not in READS:
      raise ValueError(f"{path}: .aejx version {version}, this library reads {READS}")
    head = f.read(n)
  if len(head) != n:
    raise ValueError(f"{path}: truncated header")
  return json.loads(head.decode()), frames


_DECODERS = {
  "clips": "a 3D-AE clip file: decode it with python -m experiments.compressed_vision decode",
  "frames": "an OVAL frame file: decode it with python -m experiments.oval decode",
}


def check_kind(path, header: dict, want: str) -> None:
  """A one-line ValueError when the `.aejx` file at `path` holds the other kind of payload than
  `want` ("frames": OVAL, "clips": the 3D AE)."""
  kind = "clips" if "clip" in header else "frames"
  if kind != want:
    raise ValueError(f"{path}: {_DECODERS[kind]}")


def decode_job(path, out, kind: str, overwrite: bool = False) -> tuple[dict, Path]:
  """`(header, output path)` of `decode FILE [--out OUT]`: FILE is an `.aejx` file of `kind`
  (`check_kind`), OUT (default FILE.mp4) is checked (`aejax.io.check_output`) before any work."""
  if not path:
    raise ValueError("decode needs the .aejx file: decode FILE --out OUT.mp4")
  out = Path(out or Path(path).with_suffix(".mp4"))
  check_output(out, inputs=[path], overwrite=overwrite, what="--out")
  header, _ = read_header(path)
  check_kind(path, header, kind)
  return header, out


def iter_records(path) -> Iterator[tuple[int, bytes]]:
  """(kind, payload) of every record of an `.aejx` file, in order (streamed)."""
  with open(path, "rb") as f:
    f.seek(8)
    n = struct.unpack("<I", f.read(8)[4:])[0]
    f.seek(_FIXED.size + n)
    while True:
      rec = f.read(_RECORD.size)
      if not rec:
        return
      if len(rec) < _RECORD.size:
        raise ValueError(f"{path}: truncated record")
      kind, length = _RECORD.unpack(rec)
      payload = f.read(length)
      if len(payload) != length:
        raise ValueError(f"{path}: truncated record")
      yield kind, payload
