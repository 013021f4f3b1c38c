"""A learned frame codec's two halves over batches of RGB uint8 frames, and its output videos.

`frame_codec_fns` jits a model's encoder and decoder for one frame size and colour space (each end
of a link holds only its half of the parameters); `FrameCodec` runs them over batches, carrying the
ConvLSTM state; `chunks` / `peek` stream frames; `video_sink` writes the output videos;
`FrameProgress` prints the progress line of a long conversion.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections.abc import Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aejax.data.transforms import convert_color, convert_color_inverse
from aejax.data.video import VideoWriter
from aejax.evaluate import map_batches
from aejax.io import clock
from aejax.models.oval import OVAL, latent_shape, split_params


@contextlib.contextmanager
def video_sink(path, fps: float, size, *, keep_partial: bool = False):
  """A streaming `VideoWriter` for frames of `size` (H, W) (None when `path` is None; .mp4 is
  browser-playable H.264) closed at the end of the block; on an error the file is removed, or with
  `keep_partial` closed with the frames written so far (a live stream that was interrupted)."""
  if not path:
    yield None
    return
  sink = VideoWriter(path, fps, tuple(size))
  try:
    yield sink
  except BaseException:
    if keep_partial and sink.frames_written:
      sink.close()
    else:
      sink.abort()
    raise
  sink.close()


class FrameProgress:
  """A progress line on stderr at most every `every` seconds while a video is coded: frames done
  (of `total` when known), frames/s, the mean bpp and PSNR so far and the ETA (plain lines, so logs
  stay clean)."""

  def __init__(self, what: str, size: tuple[int, int], total: int = 0, every: float = 10.0):
    self.what, self.pixels, self.total, self.every = what, size[0] * size[1], int(total or 0), every
    self.t0 = self.last = time.perf_counter()

  def update(self, frames: int, nbytes: float, psnr_sum: float) -> None:
    """Running totals so far: frames coded, bytes sent, the sum of their PSNRs."""
    now = time.perf_counter()
    if now - self.last < self.every or not frames:
      return
    self.last, rate = now, frames / (now - self.t0)
    done = f"{frames}/{self.total} ({100 * frames / self.total:.0f}%)" if self.total else f"{frames}"
    eta = f", ETA {clock(max(self.total - frames, 0) / rate)}" if self.total else ""
    print(
      f"{self.what}: frame {done}, {rate:.2f} frames/s, {8 * nbytes / (frames * self.pixels):.3f} bpp, "
      f"PSNR {psnr_sum / frames:.2f} dB{eta}",
      file=sys.stderr,
      flush=True,
    )


def peek(frames: Iterable[np.ndarray], what: str = "the video") -> tuple[np.ndarray, Iterator[np.ndarray]]:
  """(first frame, an iterator over all the frames, the first included); ValueError when empty."""
  it = iter(frames)
  try:
    first = next(it)
  except StopIteration:
    raise ValueError(f"{what} has no frames") from None
  return first, itertools.chain([first], it)


def chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
  """Stacks a stream of frames into batches of `size` (the last may be shorter)."""
  it = iter(frames)
  while batch := list(itertools.islice(it, size)):
    yield np.stack(batch)


def frame_codec_fns(model: OVAL, color_space: str, size: Sequence[int]):
  """The model's jitted halves for frames of `size` (H, W) in `color_space`.

  Returns `encode(enc_params, frames, carry) -> (z, carry)` (frames [B, H, W, 3] uint8 RGB) and
  `decode(dec_params, z, carry) -> (frames, carry)` (uint8 RGB); `carry` is the ConvLSTM state
  (None without one), and each end holds only its half of the parameters (`split_params`). A model
  with the original's smaller output (`exact_output=False`, e.g. 351x471 for 360x480) has its
  last rows and columns replicated to the full frame, so every frame is measured at full size.
  """
  size, lstm = tuple(size), model.use_lstm

  def encode(p, frames, carry):  # [B, H, W, 3] uint8
    x = convert_color(frames.astype(jnp.float32) / 255.0, color_space)
    z, carry = model.apply({"params": p}, x[None] if lstm else x, carry=carry, method=OVAL.encode)
    return (z[0] if lstm else z), carry

  def decode(p, z, carry):
    y, carry = model.apply({"params": p}, z[None] if lstm else z, size, carry=carry, method=OVAL.decode)
    y = y[0] if lstm else y
    dh, dw = size[0] - y.shape[-3], size[1] - y.shape[-2]
    if dh or dw:  # the original's smaller output (exact_output=False): edges replicated to `size`
      y = jnp.pad(y, ((0, 0), (0, dh), (0, dw), (0, 0)), mode="edge")
    rgb = jnp.clip(convert_color_inverse(y, color_space), 0.0, 1.0)
    return jnp.round(rgb * 255.0).astype(jnp.uint8), carry

  return jax.jit(encode), jax.jit(decode)


class FrameCodec:
  """Jitted encode/decode of RGB uint8 frames in batches of `batch`, carrying the LSTM state.

  A short batch is padded to `batch` (one compilation) by `aejax.evaluate.map_batches`; with a
  ConvLSTM the carry must not see padding, so LSTM batches run at their own length.
  """

  def __init__(self, model: OVAL, params, color_space: str, size, batch: int):
    self.model, self.size, self.batch = model, tuple(size), batch
    self.enc_params, self.dec_params = split_params(params)
    self._enc, self._dec = frame_codec_fns(model, color_space, size)
    self.latent_shape = latent_shape(size, model.features, model.kernels, model.strides)
    zero = jnp.zeros((1, *self.latent_shape), jnp.float32)
    self.carry = {"encode": (zero, zero), "decode": (zero, zero)} if model.use_lstm else {}

  def _run(self, half: str, fn, params, x: np.ndarray) -> np.ndarray:
    """`fn` over `x` in batches, carrying that half's LSTM state across calls."""

    def step(batch):
      y, carry = fn(params, batch, self.carry.get(half))
      if carry is not None:
        self.carry[half] = carry
      return y

    return map_batches(step, x, self.batch, pad=not self.model.use_lstm)

  def encode(self, frames: np.ndarray) -> np.ndarray:
    """Frames [N, H, W, 3] uint8 → latents [N, h, w, C] (host)."""
    return self._run("encode", self._enc, self.enc_params, frames)

  def decode(self, z: np.ndarray) -> np.ndarray:
    """Latents [N, h, w, C] → frames [N, H, W, 3] uint8 (host)."""
    return self._run("decode", self._dec, self.dec_params, z)
