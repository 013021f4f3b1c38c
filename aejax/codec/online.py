"""Online learning for learned video compression: sender, trainer and receiver on a logical clock.

The online system of OVAL (Kaplan et al., APS360 2022; `online.py`, `architecture.py`,
`simulator.py`) ran three OS processes that slept to hold the frame rate, so its results depended
on machine load, and its receiver silently dropped a third of the frames
(`specs/seeds_keyframe_oval_vae.md` §2.7, §2.11). Here the three roles are explicit objects,
each holding only what its end of the link holds, driven by a deterministic logical clock (frame
i arrives at t = i / fps; nothing sleeps):

  tick i   1. sender: install an encoder update sent at tick i-1; encode frame i with the live
              encoder; the `LatentCodec` payload is what crosses the link.
           2. receiver: install the matching decoder update (its bytes are charged to frame i);
              decode every frame (none is dropped); write it to the output video.
           3. frozen baseline: the starting model with the same codec, on the same frame.
           4. trainer: push frame i into a buffer of the newest N frames; every `train_every`
              ticks (once the buffer is full) take one Adam step on the buffer's older
              N - `holdout` frames, then compare the stepped model's error with the live model's on
              the newest `holdout` frames, which no step has trained on yet (`holdout=0`: on the
              frames just trained on, as the original, which also compared the live model with the
              *pre-step* one); if live / trained - 1 >= `threshold`, the trained weights become
              live and are sent: the encoder to the sender, the decoder (at `update_dtype`) to the
              receiver, both effective from tick i+1.

Only a bounded buffer and per-frame scalars are kept, so memory stays flat on long streams. The
per-video study (decoded video, CSV, plot, online vs frozen at equal bytes) is
`aejax.codec.online_study`.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import hashlib
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aejax.codec.bitstream import BitstreamWriter, tree_from_bytes, tree_to_bytes
from aejax.codec.files import file_header
from aejax.codec.frames import frame_codec_fns, peek, video_sink
from aejax.codec.latent import LatentCodec, bits_per_pixel, compression_ratio
from aejax.codec.report import quality
from aejax.data.transforms import convert_color, convert_color_inverse
from aejax.models.oval import OVAL, reconstruction_loss, split_params


@dataclasses.dataclass(frozen=True)
class OnlineConfig:
  """Settings of the online loop (defaults: the original report's Table 3, fps 15).

  Attributes:
    buffer_size: the trainer's buffer of newest frames.
    holdout: the newest this many frames of the buffer are not trained on (the batch is the
      other `buffer_size - holdout`): the send rule is judged on them, frames the trainer has not
      trained on (they join the training part as newer frames arrive); 0: judged on the frames
      just trained on (the original).
    lr: the trainer's Adam learning rate.
    loss: training loss ("bce", "mse", "mae", "ms_ssim").
    threshold: send an update when live error / trained error - 1 >= threshold.
    train_every: one trainer step every this many frames (the trainer's speed on the clock; the
      original managed about one step per 9 frames on a GPU).
    update_dtype: precision decoder updates are sent (and installed) in.
    color_space: the model's colour space.
    ms_ssim: also compute MS-SSIM per frame (host, OpenCV filters).
  """

  buffer_size: int = 20
  holdout: int = 4
  lr: float = 2.5e-3
  loss: str = "bce"
  threshold: float = 0.01
  train_every: int = 1
  update_dtype: str = "float32"
  color_space: str = "rgb"
  ms_ssim: bool = True

  def __post_init__(self):
    if not 0 <= self.holdout < self.buffer_size:
      raise ValueError(f"online: holdout {self.holdout} must be in [0, buffer_size={self.buffer_size})")


def _frame_quality(ref: np.ndarray, rec: np.ndarray, with_ms_ssim: bool) -> dict:
  """MAE ([0, 1] scale), PSNR (dB) and optionally MS-SSIM of one RGB uint8 frame."""
  return {k: float(v[0]) for k, v in quality(ref[None], rec[None], with_ms_ssim=with_ms_ssim).items()}


class Sender:
  """Holds the live encoder; turns each frame into the payload that crosses the link."""

  def __init__(self, encode: Callable, latent: LatentCodec, enc_params):
    self.encode, self.latent, self.params, self.pending = encode, latent, enc_params, None
    self.stream = latent.stream()

  def send(self, frame: np.ndarray) -> bytes:
    """Installs a pending encoder update, then encodes one RGB uint8 frame into its payload."""
    if self.pending is not None:
      self.params, self.pending = self.pending, None
    z = np.asarray(self.encode(self.params, frame[None], None)[0])[0]
    return self.stream.encode(z)


class Receiver:
  """Holds its own decoder; installs updates (charging their bytes) and decodes every frame."""

  def __init__(self, decode: Callable, latent: LatentCodec, dec_params, z_shape, sink=None):
    self.decode, self.latent, self.params = decode, latent, dec_params
    self.z_shape, self.sink, self.pending = z_shape, sink, None
    self.stream = latent.stream()

  def receive(self, payload: bytes) -> tuple[np.ndarray, int]:
    """Returns (decoded RGB frame, update bytes installed at this frame)."""
    update_bytes = 0
    if self.pending is not None:
      (self.params, update_bytes), self.pending = self.pending, None
    z = self.stream.decode(payload, self.z_shape)
    frame = np.asarray(self.decode(self.params, z[None], None)[0])[0]
    if self.sink is not None:
      self.sink.write(frame)
    return frame, update_bytes


class Trainer:
  """Adam steps on the newest frames; decides when the trained weights beat the live ones."""

  def __init__(self, model: OVAL, params, cfg: OnlineConfig):
    self.cfg, self.buffer = cfg, collections.deque(maxlen=cfg.buffer_size)
    self.tx = optax.adam(cfg.lr)
    self.params, self.live = params, params
    self.opt_state = self.tx.init(params)
    space = cfg.color_space

    def prep(frames):
      return convert_color(frames.astype(jnp.float32) / 255.0, space)

    def crop(a, like):  # the original's smaller output (exact_output=False) covers the top left
      return a[:, : like.shape[1], : like.shape[2]]

    def mae_rgb(params, x, frames):
      y, _ = model.apply({"params": params}, x)
      rgb = jnp.clip(convert_color_inverse(y, space), 0.0, 1.0)
      return jnp.mean(jnp.abs(rgb - crop(frames, rgb).astype(jnp.float32) / 255.0))

    def step(params, opt_state, live, frames, judge):  # [N, H, W, 3] uint8: trained on, judged on
      x = prep(frames)

      def loss_fn(p):
        logits = model.apply({"params": p}, x)[1]["logits"]
        return reconstruction_loss(cfg.loss, logits, crop(x, logits), model.output)

      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = self.tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      xj = prep(judge)
      return params, opt_state, loss, mae_rgb(params, xj, judge), mae_rgb(live, xj, judge)

    self._step = jax.jit(step)

  def observe(self, frame: np.ndarray) -> None:
    """Pushes one frame into the buffer (the oldest drops out)."""
    self.buffer.append(frame)

  def maybe_step(self, tick: int) -> dict | None:
    """One step when scheduled and the buffer is full: a dict of results, or None."""
    if (tick + 1) % self.cfg.train_every or len(self.buffer) < self.cfg.buffer_size:
      return None
    frames, k = np.stack(self.buffer), self.cfg.holdout
    train, judge = (frames[:-k], frames[-k:]) if k else (frames, frames)
    self.params, self.opt_state, loss, trained, live = jax.device_get(
      self._step(self.params, self.opt_state, self.live, train, judge)
    )
    rel = float(live) / max(float(trained), 1e-12) - 1.0
    update = rel >= self.cfg.threshold
    if update:
      self.live = self.params
    return {
      "loss": float(loss),
      "train_err": float(trained),
      "live_err": float(live),
      "rel_err": rel,
      "update": update,
    }


def run_online(
  frames: Iterable[np.ndarray],
  model: OVAL,
  params,
  cfg: OnlineConfig,
  latent: LatentCodec,
  *,
  fps: float,
  out_video=None,
  csv_path=None,
  scalars: Callable[[int, dict], None] | None = None,
  on_frame: Callable[[int, dict], None] | None = None,
  out_file=None,
  model_config: dict | None = None,
) -> dict:
  """Streams `frames` (RGB uint8 [H, W, 3]) through sender → receiver with online training.

  Args:
    frames: any iterable (a file reader, a camera); consumed one frame at a time.
    model, params: the OVAL model and its starting (offline) parameters.
    cfg: the online settings; latent: how the latent is transmitted.
    fps: the logical clock's frame rate (frame i at i / fps seconds).
    out_video: where the receiver writes its decoded frames (None: not written).
    csv_path: per-frame records (written as the stream goes, so nothing accumulates).
    scalars: `scalars(frame_index, dict)` for TensorBoard (called every frame).
    on_frame: a hook `on_frame(i, record)` (tests watch memory with it).
    out_file: also write the stream as an `.aejx` file (`aejax.codec.bitstream`): each frame's
      payload, and each decoder update as an in-stream record before the first frame it decodes;
      `decode_file` reproduces the receiver's frames bit for bit (`recon_sha256`).
    model_config: the model's config for that file's header.

  Returns:
    A summary: frames, updates, update bytes, total bytes sent (latents + decoder updates) and the
    frozen model's, `ratio` = total raw 8-bit RGB bytes / total bytes sent (not a mean of per-frame
    ratios, which overstates compression when updates are sent), `bpp` from the totals, mean
    quality online and frozen, plus the arrays `per_frame_mae`, `per_frame_frozen_mae` and `update_frames`.
  """
  if model.use_lstm:
    raise ValueError("online learning supports the convolutional OVAL model (use_lstm=False)")
  first, frames = peek(frames, "online: the video")
  size = first.shape[:2]
  encode, decode = frame_codec_fns(model, cfg.color_space, size)
  enc0, dec0 = split_params(params)
  z_shape = tuple(encode(enc0, first[None], None)[0].shape[1:])
  frozen_tx, frozen_rx = Sender(encode, latent, enc0), Receiver(decode, latent, dec0, z_shape)
  trainer = Trainer(model, params, cfg)
  writer, record, sha = None, None, hashlib.sha256()
  if out_file:
    head = dict(color_space=cfg.color_space, size=size, fps=fps, z_shape=z_shape, source={}, batch=1)
    writer = BitstreamWriter(
      out_file, file_header(model_config, dec0, latent, **head, update_dtype=cfg.update_dtype)
    )
  qk = ("mae", "psnr", *(("ms_ssim",) if cfg.ms_ssim else ()))
  fields = ["frame", "time_s", "bytes", "update_bytes", "ratio", "bpp", *qk, *(f"frozen_{k}" for k in qk)]
  fields += ["train_loss", "train_err", "live_err", "update"]
  sums: dict[str, float] = collections.defaultdict(float)
  maes, frozen_maes, update_frames = [], [], []
  n, (h, w) = 0, size
  try:  # what was streamed so far is kept, also when the stream is interrupted
    with (
      video_sink(out_video, fps, size, keep_partial=True) as sink,
      open(csv_path, "w", newline="") if csv_path else contextlib.nullcontext() as fh,
    ):
      sender, receiver = Sender(encode, latent, enc0), Receiver(decode, latent, dec0, z_shape, sink)
      wr = csv.DictWriter(fh, fieldnames=fields) if fh else None
      if wr:
        wr.writeheader()
      for i, frame in enumerate(frames):
        payload = sender.send(frame)
        if writer is not None:
          if record is not None:  # the update the receiver installs now
            writer.write_update(record)
            record = None
          writer.write_frame(payload)
        decoded, upd = receiver.receive(payload)
        sha.update(np.ascontiguousarray(decoded).tobytes())
        nbytes = len(payload) + upd
        q = _frame_quality(frame, decoded, cfg.ms_ssim)
        frozen_payload = frozen_tx.send(frame)
        fq = _frame_quality(frame, frozen_rx.receive(frozen_payload)[0], cfg.ms_ssim)
        sums["frozen_bytes"] += len(frozen_payload)
        trainer.observe(frame)
        res = trainer.maybe_step(i)
        if res is not None and res["update"]:  # effective from the next tick at both ends
          enc, dec = split_params(trainer.live)
          sender.pending = enc
          record = tree_to_bytes(dec, cfg.update_dtype)
          receiver.pending = (tree_from_bytes(dec, record, cfg.update_dtype), len(record))
          update_frames.append(i + 1)
        rec = {
          "frame": i,
          "time_s": i / fps,
          "bytes": nbytes,
          "update_bytes": upd,
          "ratio": float(compression_ratio(nbytes, h, w)),
          "bpp": float(bits_per_pixel(nbytes, h, w)),
          **q,
          **{f"frozen_{k}": v for k, v in fq.items()},
          **{k: res[k] if res else "" for k in ("train_err", "live_err")},
          "train_loss": res["loss"] if res else "",
          "update": int(bool(res and res["update"])),
        }
        if wr:
          wr.writerow(rec)
        for k in ("bytes", "update_bytes", "ratio", "bpp", *q, *(f"frozen_{k}" for k in fq)):
          sums[k] += rec[k]
        maes.append(q["mae"])
        frozen_maes.append(fq["mae"])
        if scalars is not None:
          scalars(i, {k: v for k, v in rec.items() if isinstance(v, (int, float)) and k != "frame"})
        if on_frame is not None:
          on_frame(i, rec)
        n = i + 1
  except BaseException:
    if writer is not None:
      writer.abort()
    raise
  update_frames = [f for f in update_frames if f < n]  # one sent after the last frame is never used
  summary = {k: v / n for k, v in sums.items() if k not in ("update_bytes", "ratio", "bpp")}
  sent, frozen_sent = sums["bytes"], sums["frozen_bytes"]  # latents + decoder updates; latents
  if writer is not None:
    summary["file"], summary["file_bytes"] = str(writer.close()), writer.nbytes
  summary.update(
    frames=n,
    updates=len(update_frames),
    update_bytes_total=int(sums["update_bytes"]),
    recon_sha256=sha.hexdigest(),
    bytes_total=int(sent),
    frozen_bytes_total=int(frozen_sent),
    ratio=float(compression_ratio(sent / n, h, w)),
    bpp=float(bits_per_pixel(sent / n, h, w)),
    frozen_ratio=float(compression_ratio(frozen_sent / n, h, w)),
    frozen_bpp=float(bits_per_pixel(frozen_sent / n, h, w)),
    raw_bytes_per_frame=3 * h * w,
    latent=latent.name,
    per_frame_mae=np.asarray(maes),
    per_frame_frozen_mae=np.asarray(frozen_maes),
    update_frames=np.asarray(update_frames, np.int64),
  )
  return summary
