"""Feature-similarity study: do two crops of one image lie closer in feature space than two images?

The study of the Quixel VAE's `feature_similarity.py` (`specs/seeds_keyframe_oval_vae.md` §3.5),
made model-independent and fixed where the original was weak: every image gives several positive
pairs (two independent random resized crops of it) and as many negative pairs (a crop of it and a
crop of an image from another folder, never the same one), features are compared by cosine
similarity, and the separation is summarised by the AUROC (the probability that a random positive
pair is more similar than a random negative pair) next to the two means and overlaid histograms.
A nearest-neighbour retrieval (one crop per image as query, another crop of every image as
gallery) gives a top-1 accuracy and a picture.

`features_fn(images float32 [B, H, W, 3] in [0, 1]) -> [B, D]` is any encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from aejax.data.transforms import sample_crop
from aejax.evaluate import map_batches
from aejax.viz import make_grid, pyplot, save_figure, save_image


def load_image_groups(root) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
  """All images under `root` as RGB uint8, with a group id (its class folder, else itself)."""
  from aejax.data.sources import ImageFolderSource

  src = ImageFolderSource(root, split=None)
  images, groups, names = [], [], []
  for i in range(len(src)):
    el = src[i]
    path, label = src.files[i]
    images.append(el["image"])
    groups.append(int(label) if label >= 0 else len(src.classes) + i)
    names.append(str(Path(path).relative_to(src.root)))
  return images, np.asarray(groups), names


def random_crop(image: np.ndarray, size: int, scale, rng: np.random.Generator) -> np.ndarray:
  """torchvision's RandomResizedCrop (aspect 3/4-4/3) of one image, resized to size x size."""
  import cv2

  h, w = image.shape[:2]
  y0, x0, ch, cw = sample_crop(rng, h, w, tuple(scale), (3 / 4, 4 / 3))
  crop = np.ascontiguousarray(image[y0 : y0 + ch, x0 : x0 + cw])
  interp = cv2.INTER_AREA if ch > size and cw > size else cv2.INTER_LINEAR
  return cv2.resize(crop, (size, size), interpolation=interp)


def make_pairs(images, groups, *, size: int, pairs_per_image: int, scale=(0.2, 1.0), seed: int = 0):
  """Positive and negative crop pairs.

  Returns:
    dict with `pos` [P, 2, S, S, 3] uint8, `neg` [P, 2, S, S, 3], `pos_src` [P] (image index) and
    `neg_src` [P, 2] (image indices; their groups always differ).
  """
  groups = np.asarray(groups)
  if len(images) < 2 or len(set(groups.tolist())) < 2:
    raise ValueError("the similarity study needs images from at least two different folders")
  rng = np.random.default_rng(seed)
  pos, neg, pos_src, neg_src = [], [], [], []
  for i, im in enumerate(images):
    others = np.flatnonzero(groups != groups[i])
    for _ in range(pairs_per_image):
      pos.append([random_crop(im, size, scale, rng), random_crop(im, size, scale, rng)])
      pos_src.append(i)
      j = int(rng.choice(others))
      neg.append([random_crop(im, size, scale, rng), random_crop(images[j], size, scale, rng)])
      neg_src.append((i, j))
  return {
    "pos": np.asarray(pos),
    "neg": np.asarray(neg),
    "pos_src": np.asarray(pos_src),
    "neg_src": np.asarray(neg_src),
  }


def embed(features_fn: Callable, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
  """Features float64 [N, D] of uint8 crops [N, S, S, 3], in batches zero-padded to one shape."""
  feats = map_batches(lambda x: features_fn(x.astype(np.float32) / 255.0), crops, batch_size, mode="zeros")
  return np.asarray(feats, np.float64)


def cosine(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> np.ndarray:
  """Row-wise cosine similarity, norms clamped at `eps` (PyTorch's `nn.CosineSimilarity`)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  na = np.maximum(np.linalg.norm(a, axis=-1), eps)
  nb = np.maximum(np.linalg.norm(b, axis=-1), eps)
  return (a * b).sum(-1) / (na * nb)


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
  """P(pos > neg) + P(pos == neg) / 2 over all pairs (the Mann-Whitney AUROC)."""
  pos, neg = np.asarray(pos, np.float64).ravel(), np.asarray(neg, np.float64).ravel()
  if not len(pos) or not len(neg):
    raise ValueError("auroc: empty score list")
  neg_sorted = np.sort(neg)
  below = np.searchsorted(neg_sorted, pos, side="left")
  ties = np.searchsorted(neg_sorted, pos, side="right") - below
  return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def plot_histograms(path, pos, neg, *, bins: int = 30, title: str = "") -> Path:
  """Two overlaid histograms (same bins) with the means marked; saved as PNG."""
  plt = pyplot()
  edges = np.histogram_bin_edges(np.concatenate([pos, neg]), bins=bins)
  fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
  ax.hist(neg, bins=edges, alpha=0.55, color="tab:red", label=f"different images (n={len(neg)})")
  ax.hist(pos, bins=edges, alpha=0.55, color="tab:blue", label=f"same image (n={len(pos)})")
  for v, c in ((np.mean(neg), "tab:red"), (np.mean(pos), "tab:blue")):
    ax.axvline(v, color=c, ls="--", lw=1.2)
  ax.set_xlabel("cosine similarity of latent features")
  ax.set_ylabel("pairs")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  return save_figure(fig, path, dpi=120)


def _border(im: np.ndarray, color, width: int = 3) -> np.ndarray:
  out = np.array(im, copy=True)
  out[:width], out[-width:], out[:, :width], out[:, -width:] = color, color, color, color
  return out


def retrieval(query_f, gallery_f, k: int) -> np.ndarray:
  """Indices [Q, k] of the `k` gallery items most cosine-similar to each query."""
  q = query_f / np.maximum(np.linalg.norm(query_f, axis=1, keepdims=True), 1e-8)
  g = gallery_f / np.maximum(np.linalg.norm(gallery_f, axis=1, keepdims=True), 1e-8)
  return np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :k]


def retrieval_grid(queries, gallery, topk, correct) -> np.ndarray:
  """Rows: the query (grey border), then its neighbours (green: same image/folder, red: not)."""
  tiles = []
  for qi in range(len(topk)):
    tiles.append(_border(queries[qi], (128, 128, 128)))
    for r, gi in enumerate(topk[qi]):
      tiles.append(_border(gallery[gi], (0, 170, 0) if correct[qi, r] else (200, 0, 0)))
  return make_grid(tiles, ncol=topk.shape[1] + 1)


def run_study(
  features_fn: Callable,
  images,
  groups,
  names,
  *,
  size: int,
  out_dir,
  pairs_per_image: int = 4,
  scale=(0.2, 1.0),
  seed: int = 0,
  bins: int = 30,
  queries: int = 8,
  k: int = 5,
  batch_size: int = 32,
  label: str = "",
) -> dict:
  """Runs the study and writes `histogram.png` and `retrieval.png` to `out_dir`.

  Returns:
    Summary statistics: pair counts, mean/std of both similarity lists, their AUROC, and the
    top-1 retrieval accuracy (nearest gallery crop from the query's own image or folder).
  """
  out_dir = Path(out_dir)
  groups = np.asarray(groups)
  pairs = make_pairs(images, groups, size=size, pairs_per_image=pairs_per_image, scale=scale, seed=seed)
  p, n = len(pairs["pos"]), len(pairs["neg"])
  feats = embed(
    features_fn,
    np.concatenate([pairs["pos"].reshape(-1, size, size, 3), pairs["neg"].reshape(-1, size, size, 3)]),
    batch_size,
  )
  fp, fn = feats[: 2 * p].reshape(p, 2, -1), feats[2 * p :].reshape(n, 2, -1)
  s_pos, s_neg = cosine(fp[:, 0], fp[:, 1]), cosine(fn[:, 0], fn[:, 1])
  area = auroc(s_pos, s_neg)
  # Retrieval: the first positive pair of every image; crop A queries, all crops B are the gallery.
  first = np.flatnonzero(np.r_[True, pairs["pos_src"][1:] != pairs["pos_src"][:-1]])
  src = pairs["pos_src"][first]
  k = min(k, len(first))
  topk = retrieval(fp[first, 0], fp[first, 1], k)
  correct = groups[src][topk] == groups[src][:, None]
  summary = {
    "num_images": len(images),
    "num_groups": int(len(set(groups.tolist()))),
    "pairs_same": p,
    "pairs_different": n,
    "mean_same": float(s_pos.mean()),
    "std_same": float(s_pos.std()),
    "mean_different": float(s_neg.mean()),
    "std_different": float(s_neg.std()),
    "auroc": area,
    "retrieval_top1": float(correct[:, 0].mean()),
    f"retrieval_top{k}": float(correct.any(1).mean()),
  }
  title = (
    f"{label}\nsame mean {summary['mean_same']:.4f}, different mean "
    f"{summary['mean_different']:.4f}, AUROC {area:.3f} ({len(images)} images)"
  )
  plot_histograms(out_dir / "histogram.png", s_pos, s_neg, bins=bins, title=title.strip())
  nq = min(queries, len(first))
  save_image(
    out_dir / "retrieval.png",
    retrieval_grid(pairs["pos"][first[:nq], 0], pairs["pos"][first, 1], topk[:nq], correct[:nq]),
  )
  np.savez(
    out_dir / "similarities.npz",
    same=s_pos,
    different=s_neg,
    pos_src=pairs["pos_src"],
    neg_src=pairs["neg_src"],
    names=np.asarray(names),
  )
  return summary
