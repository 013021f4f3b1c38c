"""OVAL (Kaplan et al., APS360 2022): offline training, eval, conversion, R–D study, online learning.

The 6,991-parameter conv autoencoder of isidorjkaplan/OVAL (`aejax.models.oval`) on batches of
consecutive frames interleaved across videos, resized to 360x480, in a chosen colour space (rgb,
bgr, hsv, ycbcr, lab; metrics in RGB), Gaussian input noise in training only, BCE (or MSE, MAE,
MS-SSIM), Adam 1e-3, batch 16; without `--config.data.root` it trains on synthetic videos.

  python -m experiments.oval train --workdir /tmp/oval    # demo; --preset paper --config.data.root VIDEOS
  python -m experiments.oval eval --workdir /tmp/oval     # quality and rate on the validation video
  python -m experiments.oval convert --checkpoint /tmp/oval --video IN --out OUT.mp4 --side-by-side
  python -m experiments.oval rd --checkpoint /tmp/oval --video IN     # codecs vs bit cut/resize/JPEG
  python -m experiments.oval online --checkpoint /tmp/oval --video IN # or --camera 0
  python -m experiments.oval encode --weights offline8.pt --video IN --out OUT.aejx  # or --checkpoint
  python -m experiments.oval decode OUT.aejx --out OUT.mp4   # bit-exact; the weights named in the file
  python -m experiments.oval train --preset v2 --config.data.images=DIR  # ours: learned transform + density
  python -m aejax.sweep experiments.oval --grid optim.lr=1e-3,3e-3 data.batch_size=8,16

The apps live in `aejax.codec` (config glue: `aejax.codec.app`). Expected: the smoke preset runs in
seconds on CPU, the demo (120x160, 400 steps, then report/: side-by-side MP4, R–D plot) in ~200
CPU-seconds. Deviations from the original: the decoder returns the full frame (its 351x471 crop is
`exact_output=False`, used with `--weights`); rates are the bytes of the files written or sent
against raw 8-bit RGB; the online loop runs on a logical clock, decodes every frame and judges the
send rule on frames it has not trained on (§2.11 of `specs/seeds_keyframe_oval_vae.md`).
Measured results: `docs/results/oval.md`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp
import ml_collections

from aejax import cli
from aejax.codec import app
from aejax.codec.bitstream import decode_job
from aejax.codec.files import decode_file
from aejax.codec.oval_train import COLOR_SPACES, make_loss_fn, train_source
from aejax.data import synthetic
from aejax.data.pipeline import make_loader
from aejax.data.transforms import Resize
from aejax.data.video import iter_frames, read_frames
from aejax.io import check_output, naming
from aejax.models.oval import FAITHFUL, OVAL, V2, load_original_weights
from aejax.train import fit, init_state, make_optimizer, train_section
from aejax.train.restore import restore_for_eval


def get_config() -> ml_collections.ConfigDict:
  """The faithful configuration at the original's 360x480 on embedded synthetic videos (the base
  of every preset)."""
  c = ml_collections.ConfigDict()
  # batch_size frames per batch, made of clips of clip_len consecutive frames (None: one clip).
  c.data = dict(root=None, size=(360, 480), color_space="rgb", batch_size=16, clip_len=None, shuffle=False)
  # without root: images (a folder of photos: one-frame crops), else synthetic videos
  c.data.update(images=None, noise_std=0.0, num_synthetic=6, synthetic_frames=64, worker_count=0)
  c.model = dict(**FAITHFUL, exact_output=True, use_lstm=False, tbptt=0)
  c.model.update(activation="relu", pad_mode="bias", density_filters=(), rate_lambda=0.0)  # v2 keys
  c.model.update(transform_init="torch", transform_gain=4.0, output="sigmoid")
  c.loss = dict(name="bce")
  c.codec = dict(precision="float16", channels=None, step=None, entropy="none", temporal=False)  # LatentCodec
  c.optim = dict(name="adam", lr=1e-3)
  c.train = train_section(num_steps=1000, log_every=20, eval_every=250, checkpoint_every=250)
  c.train.update(keep_checkpoints=2)
  # video None: a synthetic one; report: after training, a side-by-side video and an R–D study
  c.eval = dict(video=None, max_frames=32, batch_size=8, report=False)
  c.convert = dict(batch_size=16, max_frames=None, ms_ssim=True)
  c.online = dict(buffer_size=20, holdout=4, lr=2.5e-3, loss="bce", threshold=0.01, train_every=1)
  c.online.update(update_dtype="float32", max_frames=None, ms_ssim=True)  # aejax.codec.online.OnlineConfig
  c.rd = dict(
    max_frames=None, bits=(1, 2, 3, 4), factors=(2, 3, 4, 6, 8, 12), jpeg_qualities=(5, 10, 25, 50, 75, 90)
  )
  return c


def demo() -> ml_collections.ConfigDict:
  """The default: the faithful model on 120x160 synthetic clips, 400 steps (a few minutes on a
  2-core CPU), then a side-by-side video and an R–D plot of the validation video (`report/`)."""
  c = get_config()
  c.data.update(size=(120, 160))
  c.train.update(num_steps=400, log_every=50, eval_every=100, checkpoint_every=200)
  c.eval.report = True
  return c


def v2() -> ml_collections.ConfigDict:
  """Ours: a learned 8x8 block transform codec with a learned latent density (`V2`) trained on
  random 128x128 photo crops (`--config.data.images`; scale jitter, flips) with MSE ([0, 1]) +
  rate_lambda * bpp; every mode codes the latent under that density (quantiser step 2: ~0.3 bpp)."""
  c = get_config()
  c.model.update(V2)
  c.data.update(size=(128, 128), batch_size=8, per_image=48, scales=(1.0, 3.0))
  c.loss.name = "mse"
  c.optim.update(schedule="warmup_cosine", warmup_steps=100, total_steps=6000, end_lr=2e-5, grad_clip=1.0)
  c.codec.update(precision="int16", step=2.0, entropy="learned")  # ~0.3 bpp on the real test videos
  c.train.update(num_steps=6000, log_every=100, eval_every=100_000, checkpoint_every=500)
  c.eval.update(max_frames=8, batch_size=4)
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
  c.online.update(buffer_size=4, holdout=1, train_every=2, max_frames=16, ms_ssim=False)
  c.rd.update(max_frames=4, bits=(2, 4), factors=(2, 4), jpeg_qualities=(10, 50))
  return c


# ------------------------------------------------------------------------------------ pieces


def build_model(config) -> OVAL:
  """The OVAL model of `config.model`."""
  return OVAL(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in config.model.items()})


def example_input(config, frames: int = 2):
  """Zeros shaped like one input: a frame [1, H, W, 3], or a clip [1, frames, H, W, 3] (ConvLSTM)."""
  h, w = config.data.size
  return jnp.zeros((1, frames, h, w, 3) if config.model.use_lstm else (1, h, w, 3), jnp.float32)


def restore(path, config):
  """(model, params, config) of the checkpoint at `path` (a workdir or a step folder); the model
  and colour space are the trained run's (its config.json)."""
  model, variables, config = restore_for_eval(
    path, config, build_model=build_model, example=example_input, keys=("model", "data.color_space")
  )
  return model, variables["params"], config


def load(config, workdir, args) -> tuple[OVAL, dict, ml_collections.ConfigDict, dict]:
  """(model, params, config, source) from `--weights` (the original's released weights, e.g.
  offline8.pt, into `config.model`, RGB frames, with the original's geometry `exact_output=False`:
  its decoder returns 351x471 for 360x480, and the codec replicates the last rows and columns to
  the full frame) or else from `--checkpoint` (default: the workdir)."""
  weights = getattr(args, "weights", None)
  if weights:
    config = config.copy_and_resolve_references()
    config.data.color_space = "rgb"
    config.model.exact_output = False
    model = build_model(config)
    params = load_original_weights(weights, model, channels="rgb")["params"]
    return model, params, config, {"weights": str(Path(weights).resolve())}
  ckpt = getattr(args, "checkpoint", None) or workdir
  model, params, config = restore(ckpt, config)
  return model, params, config, {"checkpoint": str(Path(ckpt).resolve())}


def validation_frames(config):
  """(RGB uint8 frames, fps) of the validation video (`eval.video`, else a synthetic one)."""
  if config.eval.video:
    return read_frames(config.eval.video, config.eval.max_frames)
  return synthetic.shapes_video(config.eval.max_frames, tuple(config.data.size), seed=10_000)["video"], 15.0


def video_job(config, workdir: Path, args, mode: str, suffix: str):
  """(model, params, config, source, out path) of a mode that reads `--video` and writes `--out`
  (default `workdir/<mode>/<video stem><suffix>`), checked before any work."""
  if not args.video:
    raise ValueError(f"{mode} needs --video IN")
  out = Path(args.out or Path(workdir) / mode / (Path(args.video).stem + suffix))
  check_output(out, inputs=[args.video], overwrite=args.overwrite, what="--out" if args.out else "output")
  model, params, config, source = load(config, workdir, args)
  return model, params, config, source, out


# ------------------------------------------------------------------------------------ modes


def train(config, workdir: Path, args) -> dict:
  """Offline training (TensorBoard: losses, PSNR, MAE, MS-SSIM, ratio, bpp of a validation video)."""
  data = config.data
  if data.color_space not in COLOR_SPACES:
    raise ValueError(f"data.color_space {data.color_space!r}: use one of {', '.join(COLOR_SPACES)}")
  model, (source, clip_len), tx = build_model(config), train_source(data), make_optimizer(**config.optim)
  per_batch = max(1, data.batch_size // clip_len)
  resize = [Resize(tuple(data.size))] if data.root else []
  kw = dict(seed=config.train.seed, shuffle=data.shuffle, worker_count=data.worker_count, transforms=resize)
  loader = make_loader(source, batch_size=per_batch, **kw)
  valid, _ = validation_frames(config)

  def eval_fn(state, step):
    res = app.convert(model, state.params, config, valid, batch_size=config.eval.batch_size)["summary"]
    out = {k: res[k] for k in ("psnr", "ms_ssim", "mae", "ratio", "bpp", "bytes_per_frame")}
    return {**out, "mae_per_ratio": res["mae"] / res["ratio"]}

  print(f"train: {len(source)} clips of {clip_len} frames ({source!r}), {per_batch} per batch")
  state = fit(
    workdir=workdir,
    config=config,
    model=model,
    loss_fn=make_loss_fn(config.loss.name, data.color_space, data.noise_std, model.use_lstm),
    tx=tx,
    train_iter=loader,
    eval_fn=eval_fn,
    **config.train,
    init_fn=lambda rng: init_state(model, tx, rng, example_input(config, clip_len)),
  )
  out = {"step": int(state.step), "workdir": str(workdir)}
  if config.eval.report:
    out.update(app.report(model, state.params, config, valid, Path(workdir) / "report"))
  return out


def evaluate(config, workdir: Path, args) -> dict:
  """Quality and rate of a checkpoint (default: the workdir's) on the validation video."""
  ckpt = args.checkpoint or workdir
  out = check_output(Path(workdir) / "eval", overwrite=args.overwrite)
  model, params, config = restore(ckpt, config)
  frames, fps = validation_frames(config)
  kw = dict(fps=fps, out_video=out / "valid_decoded.mp4", report_dir=out, name="valid")
  s = app.convert(model, params, config, frames, batch_size=config.eval.batch_size, **kw)["summary"]
  return {**s, "checkpoint": str(ckpt)}


def convert_video(config, workdir: Path, args) -> dict:
  """Encode + decode a video file: decoded (or side-by-side) mp4, per-frame CSV and plot."""
  model, params, config, _, out = video_job(config, workdir, args, "convert", ".mp4")
  fps, total = app.video_info(args.video, config.convert.max_frames)
  frames = iter_frames(args.video, config.convert.max_frames)  # streamed: memory flat in the length
  kw = dict(side_by_side=args.side_by_side, with_ms_ssim=config.convert.ms_ssim, report_dir=out.parent)
  kw.update(fps=fps, out_video=out, name=out.stem, total_frames=total)
  res = app.convert(model, params, config, frames, **kw)
  return {**res["summary"], "video": str(out), "checkpoint": str(args.checkpoint or workdir)}


def encode(config, workdir: Path, args) -> dict:
  """Encode a video file into an .aejx file (streamed; the rate is the file's size)."""
  model, params, config, source, out = video_job(config, workdir, args, "encode", ".aejx")
  if out.suffix != ".aejx":
    raise ValueError(f"encode writes an .aejx file, got --out {out}")
  return app.encode(model, params, config, args.video, out, source)


def decode(config, workdir: Path, args) -> dict:
  """Decode an .aejx file (`decode FILE --out OUT.mp4`) with the weights it names (or --weights /
  --checkpoint); the frames equal the encoder's reconstruction bit for bit."""
  header, out = decode_job(args.input, args.out, "frames", args.overwrite)
  config = config.copy_and_resolve_references()
  config.model.update(header["model"])
  if not (args.weights or args.checkpoint):
    src = header.get("source", {})
    args.weights, args.checkpoint = src.get("weights"), src.get("checkpoint")
  model, params, config, _ = load(config, workdir, args)
  return decode_file(args.input, model, params, out_video=out)


def rd(config, workdir: Path, args) -> dict:
  """Rate–distortion table and plot: latent codecs vs bit cutting, resizing and JPEG."""
  if not args.video:
    raise ValueError("rd needs --video IN")
  out = check_output(Path(workdir) / "rd", inputs=[args.video], overwrite=args.overwrite)
  model, params, config, _ = load(config, workdir, args)
  frames = lambda: iter_frames(args.video, config.rd.max_frames)  # noqa: E731  (read once per pass)
  return app.rd(model, params, config, frames, out, title=Path(args.video).name)


def online(config, workdir: Path, args) -> dict:
  """Online learning on a video file or camera, with the frozen model as baseline."""
  check_output(args.out, inputs=[args.video], overwrite=args.overwrite, what="--out")
  folder = check_output(Path(workdir) / "online", inputs=[args.video], overwrite=args.overwrite)
  model, params, config, _ = load(config, workdir, args)
  kw = dict(video=args.video, camera=None if args.camera is None else int(args.camera))
  out = args.out if args.out and str(args.out).endswith(".aejx") else None
  return app.online(model, params, config, folder, out_file=out, **kw)


def sweep_score(config, workdir) -> dict:
  """For `aejax.sweep`: the `eval` mode's summary of the run; ranked by PSNR per bpp."""
  s = evaluate(config, Path(workdir), argparse.Namespace(checkpoint=None))
  return {"score": s["psnr"] / s["bpp"], **{k: s[k] for k in ("psnr", "ms_ssim", "mae", "bpp", "ratio")}}


def _naming_video(mode):
  """`mode` with its errors naming `--video` (e.g. a frame too small for the model)."""

  def run(config, workdir, args):
    with naming(args.video):
      return mode(config, workdir, args)

  run.__doc__ = mode.__doc__
  return run


PRESETS = {"demo": demo, "smoke": smoke, "paper": paper, "v2": v2}
MODES = {
  "train": train,
  "eval": evaluate,
  "convert": _naming_video(convert_video),
  "rd": _naming_video(rd),
  "online": _naming_video(online),
  "encode": _naming_video(encode),
  "decode": decode,
}
FLAGS = {
  "checkpoint": "a workdir or a step folder (default: --workdir)",
  "video": "input video",
  "out": "output video (convert) or .aejx (encode, online)",
  "input": "the .aejx file to decode (also `decode FILE`)",
  "weights": "released original weights (e.g. offline8.pt) instead of a checkpoint",
  "side-by-side": ("original | decoded | error heat map", False),
  "camera": "camera index for online (instead of --video)",
}
main = cli.command(get_config, MODES, PRESETS, FLAGS, __doc__, positional={"decode": "input"})


if __name__ == "__main__":
  main()
