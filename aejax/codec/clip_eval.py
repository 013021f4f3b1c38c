"""Evaluation of the 3D autoencoder (`aejax.models.vqae3d`): quality, honest rates, R–D tables.

`evaluate_clips` gives the validation MSE / PSNR and two rates per pixel: `bpp`, the fixed-length
rate (log2 K bits per code, or the float bits of a continuous latent in the `none` and `legacy`
modes, which send floats), and `bpp_entropy`, the empirical entropy of the codes (the float bits
again in the float modes). The bits of real files are `aejax.codec.clips`.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from aejax import metrics, viz
from aejax.evaluate import ClipProbe, map_batches, multi_hot, train_probe
from aejax.io import write_json
from aejax.models.quantizers import empirical_entropy_bits
from aejax.models.vqae3d import VQAE3D, bits_per_position, sends_floats, symbols_per_position


@functools.partial(jax.jit, static_argnums=0)
def predict(model: VQAE3D, variables, video):
  """uint8 clips -> (reconstruction in [0, 1], code indices, quantised latents `zq`)."""
  recon, aux = model.apply(variables, video.astype(jnp.float32) / 255.0, train=False)
  return jnp.clip(recon, 0.0, 1.0), aux["indices"], aux["zq"]


@functools.partial(jax.jit, static_argnums=0)
def clip_stats(model: VQAE3D, variables, video):
  """Per clip: MSE and PSNR of the reconstruction (a clip is one image), code counts [groups, K]."""
  recon, idx, _ = predict(model, variables, video)
  x, y = (v.reshape(len(video), -1, *v.shape[3:]) for v in (video / 255.0, recon))
  groups = model.num_codebooks if model.quantizer == "vq" else 1
  count = jax.vmap(jax.vmap(lambda i: jnp.bincount(i, length=model.num_codes), in_axes=1))
  counts = count(idx.reshape(len(video), -1, groups))
  return jnp.mean((y - x) ** 2, axis=(1, 2, 3)), metrics.psnr(y, x), counts


def evaluate_clips(model: VQAE3D, variables, video: np.ndarray, batch_size: int) -> dict:
  """Validation MSE / PSNR of uint8 clips [N, T, H, W, C] and bits per pixel (module docstring)."""
  mse, psnr, counts = map_batches(lambda v: clip_stats(model, variables, v), video, batch_size)
  codes_per_clip, counts = int(counts[0].sum()), counts.sum(0)
  positions, pixels = codes_per_clip // symbols_per_position(model), int(np.prod(video.shape[1:]))
  mse = float(np.mean(mse, dtype=np.float64))
  entropy = float(np.mean([empirical_entropy_bits(c) for c in counts]))
  bpp = positions * bits_per_position(model) / pixels
  return {
    "mse": mse,
    "psnr": float(np.mean(psnr, dtype=np.float64)),
    "psnr_of_mse": float(10 * np.log10(1 / mse)),
    "bpp": bpp,
    "bpp_entropy": bpp if sends_floats(model) else codes_per_clip * entropy / pixels,
    "usage": float((counts > 0).mean()),
    "perplexity": float(np.mean([2 ** empirical_entropy_bits(c) for c in counts])),
    "code_entropy_bits": entropy,
    "clips": len(video),
    "max_code_prob": float((counts / np.maximum(counts.sum(1, keepdims=True), 1)).max()),
  }


def write_rd_table(rows: list[dict], workdir: Path) -> None:
  """`rate_distortion.{json,md,png}`: bpp (fixed-length and entropy) against PSNR and MSE."""
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  write_json(workdir / "rate_distortion.json", rows)
  lines = [
    "| run | K | codebooks | bpp (log2 K) | bpp (entropy) | MSE | PSNR dB | usage | "
    "perplexity | rounds | steps | s |",
    "|" + "---|" * 12,
  ]
  lines += [
    f"| {r['name']} | {r['num_codes']} | {r['num_codebooks']} | {r['bpp']:.3f} | "
    f"{r['bpp_entropy']:.3f} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['usage']:.2f} | "
    f"{r['perplexity']:.1f} | {r['rounds']} | {r['steps']} | {r['seconds']:.0f} |"
    for r in rows
  ]
  (workdir / "rate_distortion.md").write_text("\n".join(lines) + "\n")
  fig, axes = viz.pyplot().subplots(1, 2, figsize=(10, 3.8))
  for kind, marker in (("scalar", "o"), ("vq", "s")):
    rs = sorted([r for r in rows if r["quantizer"] == kind], key=lambda r: r["bpp"])
    for key, style in (("bpp", "-"), ("bpp_entropy", "--")) if rs else ():
      label = f"{kind}, {'log2 K' if key == 'bpp' else 'entropy'}"
      for ax, y in zip(axes, ("psnr", "mse")):
        ax.plot([r[key] for r in rs], [r[y] for r in rs], marker + style, label=label)
  axes[0].set(xlabel="bits per pixel", ylabel="PSNR (dB)", title="rate-distortion")
  axes[1].set(xlabel="bits per pixel", ylabel="MSE ([0, 1] pixels)", yscale="log")
  axes[0].legend(fontsize=8)
  viz.save_figure(fig, workdir / "rate_distortion.png")


def chance_baseline(train_labels: np.ndarray, test_labels: np.ndarray, num_classes: int = 10) -> dict:
  """The probe's chance level: the best constant multi-label guess from the training labels
  (each digit present iff it is in more than half the training clips), scored on the test clips."""
  guess = multi_hot(train_labels, num_classes).mean(0) > 0.5
  truth = multi_hot(test_labels, num_classes) > 0.5
  right = truth == guess
  return {"label_accuracy": float(right.mean()), "set_accuracy": float(right.all(1).mean())}


def probe_digits(model: VQAE3D, variables, train: dict, test: dict, p, *, batch_size: int, seed: int = 0):
  """Which digits appear: a `ClipProbe` on the quantised latents against the same on the pixels.

  Args:
    model, variables: the autoencoder.
    train, test: {video [N, T, H, W, C] uint8, labels [N, D] int}.
    p: the probe settings (`steps`, `batch_size`, `lr`, `width`).
    batch_size: clips per encoder call.
    seed: the probes' seed.

  Returns:
    {encode_seconds_per_clip (compiled), chance (`chance_baseline`), codes, pixels (`train_probe`
    results, `seconds_per_clip` the compiled test inference)}.
  """
  codes = lambda video: map_batches(lambda v: predict(model, variables, v)[2], video, batch_size)
  codes(train["video"][:1])  # compile first: the time below is the encoder's alone
  t0 = time.perf_counter()
  ctr = codes(train["video"])
  result = {"encode_seconds_per_clip": (time.perf_counter() - t0) / len(train["video"])}
  result["chance"] = chance_baseline(train["labels"], test["labels"])
  y_tr, y_te = multi_hot(train["labels"], 10), multi_hot(test["labels"], 10)
  pixels = lambda v: jnp.asarray(v, jnp.float32) / 255.0
  for kind, xtr, xte in (("codes", ctr, codes(test["video"])), ("pixels", train["video"], test["video"])):
    res = train_probe(
      ClipProbe(width=p.width, downsample=3 if kind == "pixels" else 0),
      xtr,
      y_tr,
      xte,
      y_te,
      steps=p.steps,
      batch_size=p.batch_size,
      lr=p.lr,
      seed=seed,
      prepare=pixels if kind == "pixels" else None,
    )
    res["seconds_per_clip"] = res.pop("seconds_per_example")
    result[kind] = res
  return result
