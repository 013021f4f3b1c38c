"""Semi-supervised label propagation by feature affinity (the SiamMAE DAVIS-2017 protocol).

Gupta et al., "Siamese Masked Autoencoders", NeurIPS 2023 (Appendix A, Table 4b: top-k 7, queue
20, neighbourhood 20), following Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers" (DINO, `eval_video_segmentation.py`) and Jabri et al., "Space-Time Correspondence as
a Contrastive Random Walk" (CRW, `videowalk/code/test.py`).

For every target frame t the context is the first frame (its ground-truth labels) plus a queue of
the `context` previous frames with their *predicted* soft labels. Affinities are cosine
similarities of L2-normalised features; the neighbourhood restricts which context positions a
target position may attend to:

- "square" (DINO): |Δi| <= radius and |Δj| <= radius on the feature grid, on every context frame;
- "euclidean" (CRW): Δi² + Δj² < radius² (strict), on the queued frames only; the first frame is
  unrestricted.

The top-k affinities over all context positions jointly are kept and soft-maxed with the
temperature; the prediction is the weighted sum of the context labels. `propagate` runs as one
`lax.scan` over frames with a fixed-size ring buffer, so it compiles once per shape.

`propagate_davis` is the whole DAVIS evaluation around any feature extractor: read, resize,
extract, propagate, upsample, write indexed PNGs in the DAVIS layout, score with
`aejax.davis.evaluate`. `PROTOCOLS` holds its settings for the two published protocols:
"siammae" (the paper's Appendix: top-k 7, 20 context frames, square radius 20, temperature 0.7,
480x880) and "dino" (DINO's `eval_video_segmentation.py` exactly: top-k 5 with ties kept, 7
context frames, square radius 12, temperature 0.1, norm_mask, short side 480 floored to 64s).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from aejax import davis as davis_lib

__all__ = [
  "PROTOCOLS",
  "protocol_of",
  "dino_size",
  "neighbourhood_mask",
  "overlay",
  "propagate",
  "propagate_davis",
  "write_overlay",
]

_BUCKET = 16  # the runner pads sequence lengths to a multiple of this (8 divides it)

# `propagate_davis` keyword arguments of the published evaluation protocols.
# fmt: off
PROTOCOLS = {
  # SiamMAE Appendix A, Table 4b (top-k 7, queue 20, neighbourhood 20); resolution and
  # temperature are not in the paper: CropMAE's (480x880, 0.7), DINO's square window.
  "siammae": dict(size=(480, 880), context=20, topk=7, radius=20, temperature=0.7,
                  neighbourhood="square", norm_mask=False, ties=False, pixel_std=None),
  # DINO's eval_video_segmentation.py: n_last_frames 7, size_mask_neighborhood 12, topk 5,
  # exp(cos / 0.1) with ties kept, norm_mask, short side 480 (long side floored to a multiple
  # of 64: 854x480 -> 832x480), colour std (0.228, 0.224, 0.225).
  "dino": dict(size=480, context=7, topk=5, radius=12, temperature=0.1,
               neighbourhood="square", norm_mask=True, ties=True, pixel_std=(0.228, 0.224, 0.225)),
}
# fmt: on


def protocol_of(section) -> dict:
  """The `propagate_davis` protocol keywords (the `PROTOCOLS` keys) of a config section.

  JSON/CLI lists come back as tuples; a one-element `size` (`--config.eval.size=480` on an (H, W)
  preset) is the short side.
  """
  out = {k: section[k] for k in PROTOCOLS["siammae"]}
  size, std = out["size"], out["pixel_std"]
  if size is not None and not isinstance(size, int):
    size = tuple(size)
    out["size"] = int(size[0]) if len(size) == 1 else size
  out["pixel_std"] = None if std is None else tuple(std)
  return out


_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def dino_size(h: int, w: int, short: int = 480) -> tuple[int, int]:
  """DINO's `read_frame` input size (H, W): the short side `short`, the other scaled and floored
  to a multiple of 64 (DAVIS 480x854 -> 480x832)."""
  if h > w:
    return int((short * h / w) // 64 * 64), short
  return short, int((short * w / h) // 64 * 64)


def neighbourhood_mask(h: int, w: int, radius: int | None, kind: str = "square"):
  """Which source positions each target position may use: bool [h*w (target), h*w (source)].

  `radius` None or <= 0 means unrestricted (DINO's `size_mask_neighborhood=0`). Works on NumPy
  and, inside `jit`, on traced iotas alike.
  """
  if kind not in ("square", "euclidean"):
    raise ValueError(f"neighbourhood must be 'square' or 'euclidean', got {kind!r}")
  ii, jj = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
  ii, jj = ii.reshape(-1), jj.reshape(-1)
  di = ii[:, None] - ii[None, :]
  dj = jj[:, None] - jj[None, :]
  if radius is None or radius <= 0:
    return jnp.ones(di.shape, bool)
  if kind == "square":
    return (jnp.abs(di) <= radius) & (jnp.abs(dj) <= radius)
  return di * di + dj * dj < radius * radius


AFFINITY_BLOCK = 1 << 26  # affinity elements per block of queries (`_propagate`)
ATTENTION_PAIRS = 1 << 26  # token pairs per `feature_fn` call (`propagate_davis`)


@functools.partial(
  jax.jit, static_argnames=("h", "w", "context", "topk", "radius", "kind", "precision", "ties")
)
def _propagate(feats, labels0, temperature, *, h, w, context, topk, radius, kind, precision, ties):
  """feats [T, P, D], labels0 [P, K] -> soft labels [T, P, K]."""
  t_len, p, d = feats.shape
  feats = feats.astype(jnp.float32)
  feats = feats / jnp.maximum(jnp.linalg.norm(feats, axis=-1, keepdims=True), 1e-12)  # cosine
  k_cls = labels0.shape[-1]
  c = context + 1  # slot 0: the first frame, slots 1..context: the ring of predicted frames
  nb = neighbourhood_mask(h, w, radius, kind)  # [P, P]
  # Square: every context frame is restricted. Euclidean (CRW): the first frame is not.
  restrict = jnp.arange(c) > 0 if kind == "euclidean" else jnp.ones((c,), bool)
  bank_f = jnp.zeros((c, p, d), feats.dtype).at[0].set(feats[0])  # [C, P, D]
  bank_l = jnp.zeros((c, p, k_cls), jnp.float32).at[0].set(labels0)  # [C, P, K]

  # Queries go in blocks of `b` rows so that the [b, C, P] affinities stay under ~2^26 elements
  # (256 MB): a patch-8 ViT at 480x880 has P = 6,600 and one [P, C, P] block would take ~15 GB.
  b = max(1, min(p, AFFINITY_BLOCK // (c * p)))
  nblk = -(-p // b)
  nb = jnp.pad(nb, ((0, nblk * b - p), (0, 0)), constant_values=True).reshape(nblk, b, p)

  def rows(bank_f, bank_l, valid, qb, nbb):
    """Predicted labels [b, K] of the queries qb [b, D] (neighbourhoods nbb [b, P])."""
    # One [b, C*P] matmul against the flattened bank: no transpose before the joint top-k.
    s = jnp.dot(qb, bank_f.reshape(c * p, d).T, precision=precision).reshape(-1, c, p)
    allowed = valid[None, :, None] & (nbb[:, None, :] | ~restrict[None, :, None])
    if ties:  # DINO: exp(cos / T), zero outside; keep every position >= the k-th largest
      a = jnp.where(allowed, jnp.exp(s.astype(jnp.float32) / temperature), 0.0).reshape(-1, c * p)
      kth = jax.lax.top_k(a, topk)[0][:, -1:]  # [b, 1]
      a = jnp.where(a >= kth, a, 0.0)
      a = a / jnp.sum(a, axis=-1, keepdims=True)
      return jnp.dot(a, bank_l.reshape(c * p, k_cls), precision=precision)  # [b, K]
    # exactly k (CRW's torch.topk), softmax over them
    s = jnp.where(allowed, s.astype(jnp.float32) / temperature, -jnp.inf)
    vals, idx = jax.lax.top_k(s.reshape(-1, c * p), topk)  # [b, k]: joint over all positions
    wts = jax.nn.softmax(vals, axis=-1)
    wts = jnp.where(jnp.isfinite(vals), wts, 0.0)  # fewer than k allowed positions
    return jnp.einsum("pk,pkl->pl", wts, bank_l.reshape(c * p, k_cls)[idx])  # [b, K]

  def step(carry, inputs):
    bank_f, bank_l = carry
    q, t = inputs  # q [P, D], t = 1..T-1
    filled = jnp.minimum(t - 1, context)  # predicted frames in the queue
    valid = jnp.arange(c) <= filled  # [C]
    if nblk == 1:
      pred = rows(bank_f, bank_l, valid, q, nb[0])
    else:
      qs = jnp.pad(q, ((0, nblk * b - p), (0, 0))).reshape(nblk, b, d)
      pred = jax.lax.map(lambda x: rows(bank_f, bank_l, valid, *x), (qs, nb)).reshape(-1, k_cls)[:p]
    slot = 1 + (t - 1) % context
    bank_f = jax.lax.dynamic_update_index_in_dim(bank_f, q, slot, 0)
    bank_l = jax.lax.dynamic_update_index_in_dim(bank_l, pred, slot, 0)
    return (bank_f, bank_l), pred

  _, preds = jax.lax.scan(step, (bank_f, bank_l), (feats[1:], jnp.arange(1, t_len)))
  return jnp.concatenate([labels0[None], preds], axis=0)


def propagate(
  features,
  first_labels,
  *,
  context: int = 20,
  topk: int = 7,
  radius: int | None = 20,
  temperature: float = 0.7,
  neighbourhood: str = "square",
  num_classes: int | None = None,
  precision: str = "highest",
  ties: bool = False,
) -> jax.Array:
  """Propagates the first frame's labels through a video by feature affinity.

  Args:
    features: [T, h, w, D] per-frame feature maps (any model; L2-normalised here).
    first_labels: [h, w] int object ids of frame 0 (one-hot over 0..max id, or `num_classes`),
      or [h, w, K] soft labels.
    context: number of previous predicted frames in the queue (besides frame 0).
    topk: affinities kept per target position, over all context positions jointly.
    radius: neighbourhood size on the feature grid; None or 0 for none.
    temperature: softmax temperature over the top-k cosine similarities.
    neighbourhood: "square" (DINO) or "euclidean" (CRW, strict, first frame unrestricted).
    num_classes: K for integer labels (default max id + 1).
    precision: matmul precision of the affinities ("highest" = true float32 as the PyTorch
      references; "default" allows TF32/bf16 passes on accelerators).
    ties: DINO's selection: affinities exp(cos / temperature), every context position whose
      affinity is >= the k-th largest is kept (more than k on ties), weights normalised to sum 1.
      False: exactly k (`lax.top_k`, CRW), softmax over them; the same unless affinities tie.

  Memory: the affinities of one target frame are float32 [h*w, (context + 1)*h*w] (229 MB for
  a 30×55 grid and 20 context frames), computed in blocks of target rows of at most
  `AFFINITY_BLOCK` elements (256 MB) for larger grids (a patch-8 ViT at 480×880: 60×110).

  Returns:
    Soft labels float32 [T, h, w, K]; frame 0 is the (one-hot) first-frame labels.
  """
  features = jnp.asarray(features)
  if features.ndim != 4:
    raise ValueError(f"features must be [T, h, w, D], got shape {features.shape}")
  t_len, h, w, d = features.shape
  lab = np.asarray(first_labels) if not isinstance(first_labels, jax.Array) else first_labels
  if lab.ndim == 2:
    lab = np.asarray(lab).astype(np.int32)
    k_cls = int(lab.max()) + 1 if num_classes is None else int(num_classes)
    labels0 = jax.nn.one_hot(jnp.asarray(lab), k_cls, dtype=jnp.float32)
  elif lab.ndim == 3:
    labels0 = jnp.asarray(lab, jnp.float32)
  else:
    raise ValueError(f"first_labels must be [h, w] ids or [h, w, K], got shape {lab.shape}")
  if labels0.shape[:2] != (h, w):
    raise ValueError(f"first_labels grid {labels0.shape[:2]} differs from the features' {(h, w)}")
  if context < 1 or topk < 1:
    raise ValueError(f"context and topk must be >= 1, got {context} and {topk}")
  if t_len == 1:
    return labels0[None]
  feats = features.reshape(t_len, h * w, d)
  topk = min(topk, (context + 1) * h * w)
  out = _propagate(
    feats,
    labels0.reshape(h * w, -1),
    jnp.float32(temperature),
    h=h,
    w=w,
    context=int(context),
    topk=int(topk),
    radius=None if radius is None else int(radius),
    kind=neighbourhood,
    precision=precision,
    ties=bool(ties),
  )
  return out.reshape(t_len, h, w, -1)


# ------------------------------------------------------------------------------- DAVIS runner


@functools.partial(jax.jit, static_argnames=("size", "norm_mask"))
def _soft_to_ids(soft, *, size, norm_mask):
  """soft [t, h, w, K] -> uint8 ids [t, H, W]: bilinear (half-pixel centres) then argmax."""
  up = jax.image.resize(soft, (soft.shape[0], *size, soft.shape[-1]), "linear", antialias=False)
  if norm_mask:  # DINO's norm_mask: min-max rescale every channel whose maximum is positive
    lo = up.min(axis=(1, 2), keepdims=True)
    hi = up.max(axis=(1, 2), keepdims=True)
    up = jnp.where(hi > 0, (up - lo) / jnp.maximum(hi - lo, 1e-12), up)
  return jnp.argmax(up, axis=-1).astype(jnp.uint8)


def _nearest(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """PIL NEAREST resize (sample centres), as DINO's `read_seg` and output resize."""
  if mask.shape == tuple(hw):
    return mask
  return np.asarray(Image.fromarray(mask).resize((hw[1], hw[0]), Image.NEAREST))


def overlay(
  frames: np.ndarray, masks: np.ndarray, palette: np.ndarray | None = None, alpha: float = 0.5
) -> np.ndarray:
  """Blends palette colours of `masks` [T, H, W] into RGB `frames` [T, H, W, 3] (uint8)."""
  pal = davis_lib.DAVIS_PALETTE if palette is None else np.asarray(palette, np.uint8)
  col = pal[masks].astype(np.float32)
  out = frames.astype(np.float32)
  fg = (masks > 0)[..., None]
  return np.where(fg, alpha * out + (1 - alpha) * col, out).round().astype(np.uint8)


def write_overlay(
  out_dir: str | Path,
  frames: np.ndarray,
  masks: np.ndarray,
  *,
  fps: float = 10.0,
  palette: np.ndarray | None = None,
  alpha: float = 0.5,
) -> Path:
  """Writes `out_dir/00000.png...` and `out_dir.mp4` (OpenCV mp4v) of the blended frames."""
  from aejax.data.video import write_video

  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  blend = overlay(frames, masks, palette, alpha)
  for t, img in enumerate(blend):
    Image.fromarray(img).save(out_dir / f"{t:05d}.png")
  return write_video(out_dir.with_suffix(".mp4"), blend, fps)


def _load_sequences(davis, split, sequences):
  """Yields (name, frames uint8 [T,H,W,3], first annotation, GT masks or None, frame names)."""
  if isinstance(davis, (str, Path)):
    ds = davis_lib.DavisDataset(davis, split, sequences, require_all_annotations=False)
    for seq in ds.sequences:
      frames = ds.read_frames(seq)
      names = [p.stem for p in ds.frame_paths(seq)]
      first, _ = davis_lib.read_indexed_png(ds.annotation_paths(seq)[0])
      yield seq, frames, first, None, names
    return
  for s in davis:
    if sequences is not None and s["name"] not in sequences:
      continue
    video, masks = np.asarray(s["video"]), np.asarray(s["masks"])
    yield s["name"], video, masks[0], masks, [f"{t:05d}" for t in range(len(video))]


def propagate_davis(
  feature_fn: Callable[[np.ndarray], np.ndarray],
  davis: str | Path | Sequence[dict],
  out_root: str | Path,
  *,
  size: tuple[int, int] | int | None = (480, 880),
  patch: int = 16,
  context: int = 20,
  topk: int = 7,
  radius: int | None = 20,
  temperature: float = 0.7,
  neighbourhood: str = "square",
  split: str = "val",
  sequences: Sequence[str] | None = None,
  frames_per_call: int | None = None,
  norm_mask: bool = False,
  ties: bool = False,
  pixel_std: Sequence[float] | None = None,
  overlay_sequence: str | None = None,
  score: bool = True,
  log: Callable[[str], None] | None = print,
) -> dict[str, float]:
  """Label propagation over DAVIS-2017 with any feature extractor, then the official scores.

  Args:
    feature_fn: `frames [T, H, W, 3] float32 in [0, 1] (RGB) -> features [T, H/patch, W/patch, D]`
      (e.g. a ViT's last block after the final norm, [CLS] dropped; normalise inputs inside).
    davis: a DAVIS root (`JPEGImages/480p`, `Annotations/480p`, `ImageSets/2017/<split>.txt`) or a
      list of dict(name, video [T, H, W, 3] uint8, masks [T, H, W] ids), e.g.
      `aejax.data.synthetic.davis_like(...)`.
    out_root: predictions go to `out_root/<seq>/<frame>.png` (indexed, DAVIS palette, frame 0 =
      GT), the toolkit's CSVs to `out_root/`, overlays to `out_root/overlays/<seq>{/, .mp4}`.
    size: (H, W) input resolution (480×880 → a 30×55 grid at patch 16); an int: DINO's sizing
      (`dino_size`: short side `size`, long side floored to a multiple of 64); None keeps the
      native size floored to a multiple of `patch`.
    patch: feature stride in pixels.
    context, topk, radius, temperature, neighbourhood: see `propagate`.
    split, sequences: which sequences (default: `ImageSets/2017/<split>.txt`, or all given).
    frames_per_call: call `feature_fn` on chunks of this many frames (None: whole sequence),
      fewer when a frame has many tokens (at most `ATTENTION_PAIRS` (h w)^2 per call).
    norm_mask: DINO's per-channel min-max rescaling before the argmax (off by default).
    ties: DINO's top-k rule (see `propagate`).
    pixel_std: the colour std the protocol normalises with, for a `feature_fn` that applies
      ImageNet's mean and std (0.229, 0.224, 0.225) to [0, 1] frames: the frames are rescaled
      about the mean so that its normalisation equals this one (DINO: 0.228 for red).
    See `PROTOCOLS` for the published settings (`propagate_davis(fn, davis, out,
    **PROTOCOLS["dino"])`).
    overlay_sequence: write PNG + MP4 overlays of this sequence ("all" for every one).
    score: score with `aejax.davis` (needs every annotation).
    log: progress printer (None for silence).

  Returns:
    The toolkit's global scores (`J&F-Mean`, `J-Mean`, ..., `F-Decay`) when `score`, plus
    `frames_per_s` (features + propagation + writing) and `temperature`.
  """
  out_root = Path(out_root)
  out_root.mkdir(parents=True, exist_ok=True)
  per_object, n_frames, t0 = {}, 0, time.perf_counter()
  for name, frames, first, gt, names in _load_sequences(davis, split, sequences):
    ann_hw = first.shape
    first = np.where(first == davis_lib.VOID_LABEL, 0, first).astype(np.uint8)
    if size is None:
      hh, ww = frames.shape[1] // patch * patch, frames.shape[2] // patch * patch
    elif isinstance(size, (int, np.integer)):
      hh, ww = dino_size(*frames.shape[1:3], int(size))
    else:
      hh, ww = size
    h, w = hh // patch, ww // patch
    # cv2 bilinear (no antialiasing), as DINO's read_frame.
    x = np.stack(
      [
        cv2.resize(f, (ww, hh), interpolation=cv2.INTER_LINEAR) if f.shape[:2] != (hh, ww) else f
        for f in frames
      ]
    )
    x = x.astype(np.float32) / 255.0  # [T, H, W, 3]
    if pixel_std is not None:  # feature_fn's (x - mean) / 0.229 becomes (x - mean) / pixel_std
      x = _IMAGENET_MEAN + (x - _IMAGENET_MEAN) * (_IMAGENET_STD / np.asarray(pixel_std, np.float32))
    # A ViT's attention holds [frames, heads, (h w)^2] scores: at most ~2^26 token pairs per call
    # (a patch-8 ViT at 480x880: one frame per call; ViT-S/16 there: 24).
    step = min(frames_per_call or len(x), max(1, ATTENTION_PAIRS // (h * w) ** 2))
    # Features stay where feature_fn puts them (the accelerator) until propagation.
    feats = jnp.concatenate([jnp.asarray(feature_fn(x[i : i + step])) for i in range(0, len(x), step)])
    if feats.shape[:3] != (len(x), h, w):
      raise ValueError(
        f"{name}: feature_fn returned {feats.shape}, expected [{len(x)}, {h}, {w}, D]"
        f" for {hh}x{ww} inputs at patch {patch}"
      )
    # Propagation is causal, so zero frames appended to a multiple of `_BUCKET` leave the real
    # frames' labels unchanged and sequences of similar length share one compilation.
    t_pad = -len(x) % _BUCKET
    feats = jnp.pad(feats, ((0, t_pad), (0, 0), (0, 0), (0, 0)))
    labels0 = _nearest(first, (h, w))
    soft = propagate(
      feats,
      labels0,
      context=context,
      topk=topk,
      radius=radius,
      temperature=temperature,
      neighbourhood=neighbourhood,
      num_classes=int(first.max()) + 1,
      ties=ties,
    )
    ids = np.concatenate(
      [
        np.asarray(_soft_to_ids(soft[i : i + 8], size=(hh, ww), norm_mask=norm_mask))
        for i in range(0, len(soft), 8)
      ]
    )[: len(x)]  # [T, H, W]
    pred = np.stack([first] + [_nearest(m, ann_hw) for m in ids[1:]])  # [T, Ha, Wa]
    for nm, m in zip(names, pred):
      davis_lib.write_indexed_png(out_root / name / f"{nm}.png", m)
    if overlay_sequence in (name, "all"):
      fr = (
        frames
        if frames.shape[1:3] == ann_hw
        else np.stack([cv2.resize(f, ann_hw[::-1], interpolation=cv2.INTER_AREA) for f in frames])
      )
      write_overlay(out_root / "overlays" / name, fr, pred)
    if gt is not None and score:
      j, f = davis_lib.evaluate_sequence(gt, pred, name)
      for k in range(j.shape[0]):
        per_object[f"{name}_{k + 1}"] = {
          "J": davis_lib.db_statistics(j[k]),
          "F": davis_lib.db_statistics(f[k]),
        }
    n_frames += len(frames)
    if log is not None:
      log(f"labelprop {name}: {len(frames)} frames, grid {h}x{w}, {int(first.max())} objects")
  if n_frames == 0:
    raise ValueError(f"{davis}: no sequences to propagate")
  fps = n_frames / (time.perf_counter() - t0)
  results: dict[str, float] = {}
  if score:
    if isinstance(davis, (str, Path)):
      results = davis_lib.evaluate(out_root, davis, sequences, split=split, out_dir=out_root)
    else:
      results = davis_lib.global_scores(per_object)
      davis_lib.write_csvs(out_root, results, per_object, split)
  return {**results, "frames_per_s": fps, "temperature": float(temperature)}
