"""Helpers of `experiments/compressed_vision.py`: clips, batches, animations, tables, the probe.

Kept beside their only user (DESIGN.md §1); the experiment file stays readable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

# ------------------------------------------------------------------------------------------ data


def load_clips(*, source: str, digits: str, num_clips: int, num_frames: int, num_digits: int,
               valid_fraction: float, split_seed: int, batch_size: int) -> dict:
  """MovingMNIST clips split by seed: {train, valid} -> dict(video [N,T,64,64,1] uint8, labels).

  `source` is `generated` (bouncing digits; `digits` '' = embedded procedural digits, else an
  MNIST .npz) or the path of the original `mnist_test_seq.npy` ([20, N, 64, 64] uint8; labels
  unknown, -1).
  """
  del batch_size
  if source == "generated":
    from aejax.data.synthetic import moving_digits

    d = moving_digits(num_clips, num_frames=num_frames, size=64, num_digits=num_digits,
                      seed=split_seed, digits=digits or None)
    video, labels = d["video"], d["labels"]
  else:
    path = Path(source)
    if not path.is_file():
      raise FileNotFoundError(f"{path}: MovingMNIST file not found (mnist_test_seq.npy)")
    arr = np.load(path, mmap_mode="r")
    if arr.ndim != 4 or arr.shape[2:] != (64, 64):
      raise ValueError(f"{path}: expected [T, N, 64, 64] uint8, got shape {arr.shape}")
    video = np.ascontiguousarray(arr[:num_frames, :num_clips].transpose(1, 0, 2, 3))[..., None]
    labels = np.full((len(video), num_digits), -1, np.int32)
  if len(video) < 2:
    raise ValueError(f"{source}: need at least 2 clips, got {len(video)}")
  perm = np.random.default_rng(split_seed).permutation(len(video))
  n_valid = max(1, int(round(valid_fraction * len(video))))
  tr, va = perm[n_valid:], perm[:n_valid]
  return {"train": {"video": video[tr], "labels": labels[tr]},
          "valid": {"video": video[va], "labels": labels[va]}}


def batches(split: dict, batch_size: int, seed: int = 0):
  """Endless shuffled batches (a new permutation every epoch), dropping the remainder."""
  n = len(split["video"])
  if n < batch_size:
    raise ValueError(f"batch size {batch_size} exceeds the {n} training clips")
  rng = np.random.default_rng(seed)
  while True:
    perm = rng.permutation(n)
    for i in range(0, n - batch_size + 1, batch_size):
      idx = np.sort(perm[i:i + batch_size])
      yield {"video": split["video"][idx]}


def multi_hot(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
  """[N, D] digit labels -> [N, 10] float multi-hot 'this digit appears'."""
  out = np.zeros((len(labels), num_classes), np.float32)
  np.put_along_axis(out, labels.astype(np.int64), 1.0, axis=1)
  return out


# ----------------------------------------------------------------------------------- pictures


def side_by_side(video: np.ndarray, recon: np.ndarray, scale: int = 2) -> np.ndarray:
  """Original uint8 [T,H,W,1] | reconstruction float [T,H,W,1] -> uint8 [T, sH, 2sW+s, 3]."""
  from aejax.viz import to_uint8

  a, b = to_uint8(video), to_uint8(recon)
  gap = np.full(a.shape[:2] + (1, 1), 255, np.uint8)
  frames = np.concatenate([a, gap, b], axis=2)
  frames = frames.repeat(scale, 1).repeat(scale, 2)
  return np.repeat(frames, 3, -1)


def write_side_by_side(stem: Path, video, recon, fps: float) -> tuple[Path, Path]:
  """Writes `stem.gif` and `stem.mp4` of original | reconstruction."""
  from aejax.data.video import write_video
  from aejax.viz import write_gif

  frames = side_by_side(video, recon)
  frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # even for mp4v
  return (write_gif(stem.with_suffix(".gif"), frames, fps),
          write_video(stem.with_suffix(".mp4"), frames, fps))


def _plt():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def plot_loss_curves(metrics_path: Path, out: Path) -> Path | None:
  """Training loss / MSE and validation MSE against step, from `metrics.jsonl`."""
  if not metrics_path.is_file():
    return None
  train, valid = {}, {}
  for line in metrics_path.read_text().splitlines():
    rec = json.loads(line)
    step = rec.get("step")
    if "mse" in rec:
      train[step] = rec["mse"]
    if "eval/mse" in rec:
      valid[step] = rec["eval/mse"]
  if not train:
    return None
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.plot(list(train), list(train.values()), label="train MSE")
  if valid:
    ax.plot(list(valid), list(valid.values()), "o-", label="validation MSE")
  ax.set(xlabel="step", ylabel="MSE ([0, 1] pixels)", yscale="log")
  ax.legend()
  fig.tight_layout()
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def write_rd_table(rows: list[dict], workdir: Path) -> None:
  """`rate_distortion.{json,md,png}`: bpp (fixed-length and entropy) against PSNR and MSE."""
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "rate_distortion.json").write_text(json.dumps(rows, indent=2))
  head = ("| run | K | codebooks | bpp (log2 K) | bpp (entropy) | MSE | PSNR dB | usage | "
          "perplexity | rounds | steps | s |")
  lines = [head, "|" + "---|" * 12]
  for r in rows:
    lines.append(f"| {r['name']} | {r['num_codes']} | {r['num_codebooks']} | {r['bpp']:.3f} | "
                 f"{r['bpp_entropy']:.3f} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['usage']:.2f} | "
                 f"{r['perplexity']:.1f} | {r['rounds']} | {r['steps']} | {r['seconds']:.0f} |")
  (workdir / "rate_distortion.md").write_text("\n".join(lines) + "\n")
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for kind, marker in (("scalar", "o"), ("vq", "s")):
    rs = sorted([r for r in rows if r["quantizer"] == kind], key=lambda r: r["bpp"])
    if not rs:
      continue
    for key, style in (("bpp", "-"), ("bpp_entropy", "--")):
      label = f"{kind}, {'log2 K' if key == 'bpp' else 'entropy'}"
      axes[0].plot([r[key] for r in rs], [r["psnr"] for r in rs], marker + style, label=label)
      axes[1].plot([r[key] for r in rs], [r["mse"] for r in rs], marker + style, label=label)
  axes[0].set(xlabel="bits per pixel", ylabel="PSNR (dB)", title="rate-distortion")
  axes[1].set(xlabel="bits per pixel", ylabel="MSE ([0, 1] pixels)", yscale="log")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(workdir / "rate_distortion.png", dpi=110)
  plt.close(fig)


# ------------------------------------------------------------------------------------------ probe


class Probe(nn.Module):
  """Digits-present classifier: (pixels: 3 stride-2 convs per frame) + 2 convs, max-pool, linear."""

  width: int = 32
  downsample: int = 0
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):  # [B, T, H, W, C]
    b, t = x.shape[:2]
    h = x.reshape((b * t,) + x.shape[2:])
    for i in range(self.downsample):
      feats = max(self.width >> (self.downsample - 1 - i), 1)  # ..., width/4, width/2, width
      h = nn.relu(nn.Conv(feats, (3, 3), strides=2)(h))
    h = nn.relu(nn.Conv(self.width, (3, 3))(h))
    h = nn.relu(nn.Conv(self.width, (3, 3))(h))
    h = h.reshape((b, -1, self.width)).max(1)  # presence: max over time and space
    return nn.Dense(self.num_classes)(h)


def train_probe(kind: str, xtr, ytr, xte, yte, *, seed: int, steps: int, batch_size: int,
                lr: float, width: int, num_train=None, num_test=None) -> dict:
  """Trains the probe on `xtr` (codes, or uint8 pixels) and reports accuracy and time per clip."""
  del num_train, num_test
  pixels = kind == "pixels"
  prep = (lambda v: jnp.asarray(v, jnp.float32) / 255.0) if pixels else jnp.asarray
  model = Probe(width=width, downsample=3 if pixels else 0)
  params = model.init(jax.random.key(seed), prep(xtr[:1]))
  tx = optax.adam(lr)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, x, y):
    def loss(p):
      return optax.sigmoid_binary_cross_entropy(model.apply(p, prep(x)), y).mean()

    val, g = jax.value_and_grad(loss)(params)
    upd, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, upd), opt, val

  predict = jax.jit(lambda p, x: model.apply(p, prep(x)) > 0)
  rng = np.random.default_rng(seed)
  t0 = time.perf_counter()
  for _ in range(steps):
    idx = rng.integers(0, len(xtr), min(batch_size, len(xtr)))
    params, opt, val = step(params, opt, xtr[idx], ytr[idx])
  jax.block_until_ready(params)
  train_s = time.perf_counter() - t0
  predict(params, xte[:batch_size]).block_until_ready()  # compile outside the timing
  t0, preds = time.perf_counter(), []
  for i in range(0, len(xte), batch_size):
    preds.append(np.asarray(predict(params, xte[i:i + batch_size])))
  infer_s = (time.perf_counter() - t0) / len(xte)
  pred = np.concatenate(preds)
  truth = yte > 0.5
  return {"label_accuracy": float((pred == truth).mean()),
          "set_accuracy": float((pred == truth).all(1).mean()),
          "final_train_loss": float(val), "train_seconds": round(train_s, 2),
          "seconds_per_clip": infer_s, "input_shape": list(np.shape(xtr)[1:]),
          "params": int(sum(np.size(a) for a in jax.tree.leaves(params)))}
