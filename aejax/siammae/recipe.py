"""SiamMAE's training recipe: frame-pair sources and loader, the step schedule from effective
epochs, and the optimiser with the paper's learning-rate scaling."""

from __future__ import annotations

import ml_collections
import numpy as np

from aejax.data import roots, synthetic
from aejax.data.pipeline import make_loader
from aejax.data.sequences import ArrayVideos
from aejax.data.sources import VideoPairSource
from aejax.data.transforms import RandomFlip, RandomResizedCrop
from aejax.train import make_optimizer


def synthetic_videos(data) -> ArrayVideos:
  """Embedded training videos (seeds disjoint from the evaluation set's)."""
  vids = np.stack(
    [
      synthetic.shapes_video(data.video_frames, data.video_size, 3, seed=100_000 + i, speed=data.video_speed)[
        "video"
      ]
      for i in range(data.num_videos)
    ]
  )
  return ArrayVideos(vids, f"synthetic-{data.num_videos}x{data.video_frames}x{data.video_size}")


def train_source(data) -> VideoPairSource:
  """Frame pairs of `data.root` (raw video folder or prepared set) or of the synthetic videos."""
  videos = roots.videos(data.root) if data.root else synthetic_videos(data)
  return VideoPairSource(
    videos,
    gap=tuple(data.gap),
    reference_fps=data.reference_fps,
    repeats=data.repeats,
    seed=data.seed,
    seek_window=data.get("seek_window"),
  )


def train_loader(data, source=None):
  """Batches of `source` (default `train_source(data)`), one crop and flip per pair."""
  source = source if source is not None else train_source(data)
  if data.batch_size % data.repeats:
    raise ValueError(
      f"data.batch_size {data.batch_size} (pairs) must be a multiple of data.repeats {data.repeats}"
    )
  return make_loader(
    source,
    batch_size=data.batch_size // data.repeats,
    seed=data.seed,
    transforms=[RandomResizedCrop(data.image_size, scale=tuple(data.crop_scale)), RandomFlip()],
    worker_count=data.worker_count,
  )


SCHEDULE_KEYS = ("epochs", "warmup_epochs")  # train keys `schedule` reads (not `fit`'s)
KINETICS400_VIDEOS = 240_000  # about the training videos of Kinetics-400 (the paper's data)


def schedule(config, num_videos: int, log=print) -> ml_collections.ConfigDict:
  """Fills `train.num_steps` and `optim.warmup_steps` from epochs where they are None.

  An effective epoch (MAE-ST / SiamMAE repeated sampling) is `num_videos` pairs: one pass over the
  videos yields `data.repeats` pairs per video, so it takes `num_videos * repeats / batch` steps per
  pass and `num_steps = epochs * num_videos / batch_size` (pairs) for `train.epochs` effective
  epochs, likewise the warm-up; explicit values win. Prints the numbers; returns `config` (updated).
  """
  d, t = config.data, config.train
  per_epoch = num_videos / d.batch_size  # steps per effective epoch
  derived = []
  with config.unlocked():
    if t.num_steps is None:
      t.num_steps = max(1, round(t.epochs * per_epoch))
      derived.append("num_steps")
    if config.optim.warmup_steps is None:
      config.optim.warmup_steps = min(t.num_steps, round(t.warmup_epochs * per_epoch))
      derived.append("warmup_steps")
  if log is not None:
    how = lambda k: "derived" if k in derived else "explicit"  # noqa: E731
    log(
      f"schedule: {num_videos} videos, batch {d.batch_size} pairs ({d.batch_size // d.repeats} "
      f"videos x {d.repeats} repeated samples): {per_epoch:.4g} steps per effective epoch; "
      f"num_steps {t.num_steps} ({how('num_steps')}; {t.num_steps / per_epoch:.4g} effective "
      f"epochs = {t.num_steps / per_epoch / d.repeats:.4g} passes over the videos), warm-up "
      f"{config.optim.warmup_steps} steps ({how('warmup_steps')}; "
      f"{config.optim.warmup_steps / per_epoch:.4g} effective epochs)"
    )
    if "warmup_steps" in derived and config.optim.warmup_steps > t.num_steps // 2:
      log(
        f"note: the warm-up ({t.warmup_epochs} effective epochs, as in the paper) is "
        f"{100 * config.optim.warmup_steps / t.num_steps:.0f}% of this run; "
        "--config.optim.warmup_steps=N sets it in steps"
      )
  return config


def optimiser(config):
  """`(tx, lr)`: lr = base_lr x batch / 256 unless `optim.lr` is set; schedule over num_steps.

  Steps still unset (no `schedule` call: benchmarks) are derived for Kinetics-400's size.
  """
  if config.train.num_steps is None or config.optim.warmup_steps is None:
    config = schedule(ml_collections.ConfigDict(config.to_dict()), KINETICS400_VIDEOS, log=None)
  o = dict(config.optim)
  if o["lr"] is None:
    o["lr"] = config.scaling.base_lr * config.data.batch_size / config.scaling.reference_batch
  if o["total_steps"] is None:
    o["total_steps"] = config.train.num_steps
  return make_optimizer(**o), o["lr"]
