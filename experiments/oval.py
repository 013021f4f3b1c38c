"""OVAL (Kaplan et al., APS360 2022): offline training, file conversion, R–D study, online learning.

The 6,991-parameter conv autoencoder of isidorjkaplan/OVAL (`aejax.models.oval`, exact-size
decoder) trained on batches of consecutive frames interleaved across videos, resized to 360x480,
in a chosen colour space (rgb, bgr, hsv, ycbcr, lab; the model predicts in it, outputs and metrics
are RGB), with Gaussian input noise in training only, BCE (or MSE, MAE, MS-SSIM), Adam 1e-3,
batch 16. Without `--config.data.root` it trains on embedded synthetic videos:

  python -m experiments.oval train --workdir /tmp/oval                        # demo (synthetic)
  python -m experiments.oval train --preset paper --config.data.root VIDEOS   # a folder of videos
  python -m experiments.oval convert --checkpoint /tmp/oval --video IN --out OUT.mp4 --side-by-side
  python -m experiments.oval rd --checkpoint /tmp/oval --video IN             # table + plot
  python -m experiments.oval online --checkpoint /tmp/oval --video IN         # or --camera 0
  python -m aejax.sweep experiments.oval --grid optim.lr=1e-3,3e-3 data.batch_size=8,16

`convert` writes the decoded video at the input's size and fps (or original | decoded | error
heat map side by side) plus per-frame PSNR, MS-SSIM, MAE, bytes and ratio (CSV and plot). `rd`
compares the latent codecs with bit cutting, down/up-scaling and JPEG at matched bytes. `online`
runs sender, trainer and receiver on a logical clock with the frozen model as baseline
(`aejax.online`). Expected: the smoke preset runs in seconds; the demo takes minutes on a GPU.
Rates are bytes actually sent against raw 8-bit RGB of the full frame (`aejax.compression`).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import cli
from aejax.data import synthetic
from aejax.data.pipeline import make_loader
from aejax.data.sources import ArraySource, VideoClipSource
from aejax.data.transforms import Resize, convert_color, convert_color_inverse
from aejax.data.video import VideoReader
from aejax.models.oval import FAITHFUL, OVAL, V2, reconstruction_loss
from aejax.train import apply_model, fit, init_state, make_optimizer, restore_state
from experiments._oval_apps import convert_frames, rd_study, run_online_mode


def get_config() -> ml_collections.ConfigDict:
  """The faithful configuration on embedded synthetic videos (the `demo` preset)."""
  c = ml_collections.ConfigDict()
  # batch_size frames per batch, made of clips of clip_len consecutive frames (0: one clip).
  c.data = dict(root="", size=(360, 480), color_space="rgb", batch_size=16, clip_len=0,
                shuffle=False, noise_std=0.0, num_synthetic=6, synthetic_frames=64, worker_count=0)
  c.model = dict(**FAITHFUL, exact_output=True, use_lstm=False, tbptt=0)
  c.loss = dict(name="bce")
  c.codec = dict(precision="float16", channels=0, step=0.0, entropy="none")  # 0: all / range
  c.optim = dict(name="adam", lr=1e-3)
  c.train = dict(num_steps=1000, seed=0, log_every=20, eval_every=250, checkpoint_every=250,
                 keep_checkpoints=2, parallel="jit", ema_decay=None)
  c.eval = dict(video="", max_frames=32, batch_size=8)
  c.convert = dict(batch_size=16, max_frames=0, ms_ssim=True)
  c.online = dict(buffer_size=20, lr=2.5e-3, loss="bce", threshold=0.01, train_every=1,
                  update_dtype="float32", max_frames=0, ms_ssim=True)
  c.rd = dict(max_frames=0, bits=(1, 2, 3, 4), factors=(2, 3, 4, 6, 8, 12),
              jpeg_qualities=(5, 10, 25, 50, 75, 90))
  return c


def demo() -> ml_collections.ConfigDict:
  return get_config()


def v2() -> ml_collections.ConfigDict:
  """The wider model (same geometry and 10-channel latent: the same rate)."""
  c = get_config()
  c.model.update(V2)
  return c


def paper() -> ml_collections.ConfigDict:
  """The original's final run: a folder of videos (`--config.data.root`), ~25 epochs."""
  c = get_config()
  c.train.update(num_steps=280_000 // 16, eval_every=1000, checkpoint_every=1000)
  c.data.worker_count = 4
  return c


def smoke() -> ml_collections.ConfigDict:
  """Tiny frames and a few steps: seconds on CPU."""
  c = get_config()
  c.data.update(size=(48, 64), batch_size=4, num_synthetic=2, synthetic_frames=12, noise_std=0.02)
  c.train.update(num_steps=4, log_every=2, eval_every=2, checkpoint_every=2)
  c.eval.update(max_frames=6, batch_size=4)
  c.convert.update(batch_size=4, max_frames=8)
  c.online.update(buffer_size=4, train_every=2, max_frames=16, ms_ssim=False)
  c.rd.update(max_frames=4, bits=(2, 4), factors=(2, 4), jpeg_qualities=(10, 50))
  return c


# ------------------------------------------------------------------------------------ pieces


def build_model(config) -> OVAL:
  m = dict(config.model)
  return OVAL(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in m.items()})


def _clips_of(videos: list[np.ndarray], clip_len: int) -> np.ndarray:
  """Consecutive-frame clips, interleaved across videos: clip p of video 0, 1, ..., then p + 1."""
  per = [len(v) // clip_len for v in videos]
  out = [v[p * clip_len:(p + 1) * clip_len] for p in range(max(per)) for v, n in zip(videos, per)
         if p < n]
  return np.stack(out)


class InterleavedClips:
  """Reorders a `VideoClipSource(hop=clip_len)` so consecutive elements cycle through videos."""

  def __init__(self, source: VideoClipSource):
    self.source = source
    by_video: dict[int, list[int]] = {}
    for i, (v, _) in enumerate(source.clips):
      by_video.setdefault(v, []).append(i)
    lists = list(by_video.values())
    self.order = [lst[p] for p in range(max(map(len, lists))) for lst in lists if p < len(lst)]

  def __len__(self) -> int:
    return len(self.order)

  def __getitem__(self, i: int) -> dict:
    return self.source[self.order[int(i)]]

  def __repr__(self) -> str:
    return f"InterleavedClips({self.source!r})"


def train_source(data):
  """The training clips: `video` [clip_len, H, W, 3] uint8 elements, interleaved across videos."""
  clip_len = min(data.clip_len or data.batch_size, data.batch_size)
  if data.root:
    return InterleavedClips(VideoClipSource(data.root, num_frames=clip_len, hop=clip_len)), clip_len
  videos = [synthetic.shapes_video(data.synthetic_frames, tuple(data.size), seed=s)["video"]
            for s in range(data.num_synthetic)]
  name = f"oval-synthetic-{data.num_synthetic}x{data.synthetic_frames}-{tuple(data.size)}-{clip_len}"
  return ArraySource({"video": _clips_of(videos, clip_len)}, name=name), clip_len


def make_loss_fn(name: str, color_space: str, noise_std: float, use_lstm: bool):
  """The engine's `loss_fn` on `video` [B, T, H, W, 3] uint8 batches."""

  def loss_fn(model, variables, batch, rngs, train):
    rgb = jnp.asarray(batch["video"], jnp.float32) / 255.0  # [B, T, H, W, 3]
    if not use_lstm:
      rgb = rgb.reshape(-1, *rgb.shape[2:])  # [B*T, H, W, 3]
    x = convert_color(rgb, color_space)
    inp = x + noise_std * jax.random.normal(rngs["noise"], x.shape) if train and noise_std else x
    (y, aux), new_state = apply_model(model, variables, inp, rngs=rngs, train=train)
    loss = reconstruction_loss(name, aux["logits"], x)
    y_rgb = jnp.clip(convert_color_inverse(y, color_space), 0.0, 1.0)
    mse_rgb = jnp.mean((y_rgb - rgb) ** 2)
    metrics = {"loss": loss, "bce": reconstruction_loss("bce", aux["logits"], x),
               "mse": jnp.mean((y - x) ** 2), "mae": jnp.mean(jnp.abs(y - x)),
               "mae_rgb": jnp.mean(jnp.abs(y_rgb - rgb)), "psnr_rgb": -10.0 * jnp.log10(mse_rgb)}
    return loss, metrics, new_state

  return loss_fn


def config_from_checkpoint(path, config):
  """Model, data colour space and codec of the run that wrote `path` (its config.json)."""
  return cli.config_of_run(path, config, ("model", "data.color_space"))


def load_params(config, checkpoint):
  """(model, params): restored from `checkpoint` (a workdir or step folder) or a fresh init."""
  model = build_model(config)
  tx = make_optimizer(**config.optim)
  h, w = config.data.size
  example = jnp.zeros((1, 2, h, w, 3) if model.use_lstm else (1, h, w, 3), jnp.float32)
  make = lambda: init_state(model, tx, jax.random.key(config.train.seed), example)
  state = restore_state(checkpoint, jax.eval_shape(make)) if checkpoint else jax.jit(make)()
  return model, jax.device_get(state.params)


def read_frames(path, max_frames: int = 0) -> tuple[np.ndarray, float]:
  """Every frame of a video (or the first `max_frames`) as RGB uint8, and its fps."""
  with VideoReader(path) as r:
    frames = []
    for f in r:
      frames.append(f)
      if max_frames and len(frames) >= max_frames:
        break
    fps = r.fps or 25.0
  if not frames:
    raise ValueError(f"{path}: no decodable frames")
  return np.stack(frames), fps


def validation_frames(config) -> tuple[np.ndarray, float]:
  if config.eval.video:
    return read_frames(config.eval.video, config.eval.max_frames)
  v = synthetic.shapes_video(config.eval.max_frames, tuple(config.data.size), seed=10_000)["video"]
  return v, 15.0


# ------------------------------------------------------------------------------------ modes


def train(config, workdir: Path, args) -> dict:
  """Offline training (TensorBoard: losses, PSNR, MAE, MS-SSIM, ratio, bpp of a validation video)."""
  data = config.data
  if data.color_space not in ("rgb", "bgr", "hsv", "ycbcr", "lab"):
    raise ValueError(f"data.color_space {data.color_space!r}: use rgb, bgr, hsv, ycbcr or lab")
  model = build_model(config)
  source, clip_len = train_source(data)
  clips_per_batch = max(1, data.batch_size // clip_len)
  loader = make_loader(source, batch_size=clips_per_batch, seed=config.train.seed,
                       shuffle=data.shuffle, worker_count=data.worker_count,
                       transforms=[Resize(tuple(data.size))] if data.root else [])
  tx = make_optimizer(**config.optim)
  h, w = data.size
  example = jnp.zeros((1, clip_len, h, w, 3) if model.use_lstm else (1, h, w, 3), jnp.float32)
  valid, _ = validation_frames(config)

  def eval_fn(state, step):
    res = convert_frames(model, state.params, config, valid, with_ms_ssim=True)["summary"]
    keys = ("psnr", "ms_ssim", "mae", "ratio", "bpp", "bytes_per_frame")
    out = {k: res[k] for k in keys}
    out["mae_per_ratio"] = res["mae"] / res["ratio"]
    return out

  print(f"train: {len(source)} clips of {clip_len} frames ({source!r}), {clips_per_batch} per batch")
  state = fit(workdir=workdir, config=config, model=model,
              loss_fn=make_loss_fn(config.loss.name, data.color_space, data.noise_std, model.use_lstm),
              tx=tx, train_iter=loader, init_fn=lambda rng: init_state(model, tx, rng, example),
              eval_fn=eval_fn, **config.train)
  return {"step": int(state.step), "workdir": str(workdir)}


def convert(config, workdir: Path, args) -> dict:
  """Encode + decode a video file: decoded (or side-by-side) mp4, per-frame CSV and plot."""
  if not args.video:
    raise ValueError("convert needs --video IN")
  config = config_from_checkpoint(args.checkpoint, config) if args.checkpoint else config
  model, params = load_params(config, args.checkpoint)
  out = Path(args.out or workdir / "convert" / (Path(args.video).stem + ".mp4"))
  frames, fps = read_frames(args.video, config.convert.max_frames)
  res = convert_frames(model, params, config, frames, fps=fps, out_video=out,
                       side_by_side=args.side_by_side, with_ms_ssim=config.convert.ms_ssim,
                       report_dir=out.parent, name=out.stem)
  return {**res["summary"], "video": str(out), "checkpoint": str(args.checkpoint or "untrained")}


def rd(config, workdir: Path, args) -> dict:
  """Rate–distortion table and plot: latent codecs vs bit cutting, resizing and JPEG."""
  if not args.video:
    raise ValueError("rd needs --video IN")
  config = config_from_checkpoint(args.checkpoint, config) if args.checkpoint else config
  model, params = load_params(config, args.checkpoint)
  frames, _ = read_frames(args.video, config.rd.max_frames)
  return rd_study(model, params, config, frames, workdir / "rd", title=Path(args.video).name)


def online(config, workdir: Path, args) -> dict:
  """Online learning on a video file or camera, with the frozen model as baseline."""
  config = config_from_checkpoint(args.checkpoint, config) if args.checkpoint else config
  model, params = load_params(config, args.checkpoint)
  return run_online_mode(model, params, config, workdir / "online", video=args.video,
                         camera=args.camera)


def sweep_score(config, workdir) -> dict:
  """For `aejax.sweep`: convert the validation video with the run's model; rank by PSNR per bpp."""
  workdir = Path(workdir)
  config = config_from_checkpoint(workdir, config)
  model, params = load_params(config, workdir)
  frames, fps = validation_frames(config)
  s = convert_frames(model, params, config, frames, fps=fps, out_video=workdir / "valid_decoded.mp4",
                     with_ms_ssim=True)["summary"]
  return {"score": s["psnr"] / s["bpp"], "psnr": s["psnr"], "ms_ssim": s["ms_ssim"], "mae": s["mae"],
          "bpp": s["bpp"], "ratio": s["ratio"]}


def main(argv=None):
  return cli.run(get_config, modes={"train": train, "convert": convert, "rd": rd, "online": online},
                 presets={"demo": demo, "smoke": smoke, "paper": paper, "v2": v2},
                 default_preset="demo",
                 flags={"checkpoint": "a workdir or a step folder", "video": "input video",
                        "out": "output video (convert)",
                        "side-by-side": ("original | decoded | error heat map", False),
                        "camera": ("camera index for online (-1: none)", -1)},
                 doc=__doc__, argv=argv)


if __name__ == "__main__":
  main()
