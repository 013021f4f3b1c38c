"""Where runs leave their traces: metrics.jsonl, config.json, TensorBoard events, artefacts."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import jax
import numpy as np

from aejax import io


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.generic, np.ndarray)):
    return x.tolist()
  if isinstance(x, Path):
    return str(x)
  return x


class Writer:
  """Writes scalars to `metrics.jsonl` and TensorBoard, images to TensorBoard, files to artefacts/.

  `config.json` and `run.json` are written atomically (temporary name, then rename).

  Only process 0 writes; on other processes every method is a no-op. TensorBoard files go to
  `workdir/tb` (`tensorboard --logdir workdir`).
  """

  def __init__(self, workdir, *, tensorboard: bool = True):
    self.workdir = io.check_workdir(workdir)
    self.active = jax.process_index() == 0
    self._tb = None
    self._jsonl = None
    if self.active:
      self.workdir.mkdir(parents=True, exist_ok=True)
      self._jsonl = open(self.workdir / "metrics.jsonl", "a", buffering=1)
      if tensorboard:
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(logdir=str(self.workdir / "tb"), flush_secs=10)

  def write_config(self, config) -> None:
    """Saves the resolved config as `config.json` (a resumed run keeps the first one as well)."""
    if not self.active:
      return
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    path = self.workdir / "config.json"
    if path.exists():
      try:
        old = json.loads(path.read_text())
      except ValueError:
        old = None  # unreadable: kept aside like an older config
      if old != _jsonable(data):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path.rename(self.workdir / f"config.{stamp}.json")
    io.write_json(path, _jsonable(data), sort_keys=True)

  def write_run(self, *, experiment: str | None, model: str | None) -> None:
    """Saves `run.json`: the experiment (module name) and model class that write this workdir,
    with host, PID, time and command (`restore_for_eval` checks the first two)."""
    if not self.active:
      return
    io.write_json(
      self.workdir / "run.json",
      {
        "experiment": experiment,
        "model": model,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv)[:1000],
      },
      sort_keys=True,
    )

  def scalars(self, step: int, scalars: dict) -> None:
    """Appends one `metrics.jsonl` line `{step, time, **scalars}` and the TensorBoard scalars."""
    if not self.active:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, v, int(step))

  def images(self, step: int, images: dict) -> None:
    """`images`: name -> [H, W, C] (uint8 or float in [0, 1]) image, saved as
    `artefacts/<name>_<step:06d>.png` and logged to TensorBoard."""
    if not self.active:
      return
    from aejax.viz import save_image, to_uint8

    for k, im in images.items():
      im = to_uint8(np.asarray(im))
      save_image(self.artefact_path(f"{k}_{int(step):06d}.png"), im)
      if self._tb is not None:
        self._tb.add_image(k, im[..., None] if im.ndim == 2 else im, int(step), dataformats="HWC")

  def histogram(self, step: int, name: str, values) -> None:
    """A TensorBoard histogram of `values` (flattened)."""
    if self.active and self._tb is not None:
      self._tb.add_histogram(name, np.asarray(values, np.float32).ravel(), int(step))

  def video(self, step: int, name: str, frames, fps: float = 8.0) -> None:
    """`frames`: [T, H, W, C] uint8 or float in [0, 1]."""
    if not self.active or self._tb is None:
      return
    from aejax.viz import to_uint8

    v = to_uint8(np.asarray(frames))
    if v.shape[-1] == 1:
      v = np.repeat(v, 3, -1)
    self._tb.add_video(name, v.transpose(0, 3, 1, 2)[None], int(step), fps=fps)

  def artefact_path(self, name: str) -> Path:
    """A path under `workdir/artefacts/` (parent folders created)."""
    path = self.workdir / "artefacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path

  def flush(self) -> None:
    """Flushes TensorBoard events to disk."""
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    """Closes TensorBoard and `metrics.jsonl` (the writer is unusable afterwards)."""
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
