"""Videos with known shots for evaluating key frames, and their scoring.

A set is a folder of videos and one `shots.json`:

  {"<video file name>": {"fps": 30.0, "num_frames": 912, "size": [360, 640],
                         "shots": [{"start": 0, "kind": "pan", "static": false, "source": "..."},
                                   {"start": 75, ...}, ...]}, ...}

`shots[k]["start"]` is the frame index where shot k begins (the first 0; a shot ends where the
next begins, the last at `num_frames`); `static` marks shots without motion (a second key frame
there is redundant); `kind` and `source` are informational. Only `start` is required.

`make_real_set` builds such a set from real footage: shots cut from real videos, and real photos
turned into slow pans, slow zooms and static shots, concatenated with hard cuts, at several sizes
and frame rates, H.264. `make_synthetic_set` writes the synthetic scene-cut videos
(`aejax.data.synthetic.scene_cut_video`) the same way. `score_keyframes` scores key frames
against the known shots. Command line: `python -m aejax.keyframes.cutset OUT [--synthetic]`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from aejax.io import write_json

# (height, width, fps) of the real set's videos, in turn
REAL_FORMATS = (
  (360, 640, 30.0),
  (270, 480, 25.0),
  (240, 320, 24.0),
  (360, 640, 24.0),
  (240, 426, 30.0),
  (180, 320, 15.0),
)
SHOTS_FILE = "shots.json"


def _fit(frame: np.ndarray, h: int, w: int) -> np.ndarray:
  """Centre crop to the aspect h:w, then resize to (h, w)."""
  fh, fw = frame.shape[:2]
  if fw * h > fh * w:  # too wide
    cw = round(fh * w / h)
    frame = frame[:, (fw - cw) // 2 : (fw - cw) // 2 + cw]
  else:
    ch = round(fw * h / w)
    frame = frame[(fh - ch) // 2 : (fh - ch) // 2 + ch]
  return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def _view(photo: np.ndarray, h: int, w: int, cx: float, cy: float, scale: float) -> np.ndarray:
  """The (h, w) view of `photo` centred at (cx, cy) (fractions), covering `scale` of the largest
  window of aspect h:w that fits."""
  ph, pw = photo.shape[:2]
  win_w = min(pw, ph * w / h) * scale
  win_h = win_w * h / w
  x0 = np.clip(cx * pw - win_w / 2, 0, pw - win_w)
  y0 = np.clip(cy * ph - win_h / 2, 0, ph - win_h)
  s = w / win_w
  m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float64)
  return cv2.warpAffine(
    photo, m, (w, h), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
  )


def photo_shot(photo: np.ndarray, kind: str, n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
  """n frames [n, h, w, 3] of a photo: "static" (fixed view, light sensor noise), "pan" (the view
  slides across a quarter to a half of the photo) or "zoom" (the view shrinks or grows by 25-40 %)."""
  t = np.linspace(0, 1, n)
  if kind == "static":
    base = _view(photo, h, w, 0.5, 0.5, 0.8).astype(np.float32)
    noise = rng.normal(0, 1.5, (n, h, w, 1)).astype(np.float32)
    return np.clip(base + noise, 0, 255).round().astype(np.uint8)
  if kind == "pan":
    d = rng.uniform(0.25, 0.5) * rng.choice([-1, 1])
    horiz = rng.random() < 0.7
    c0 = 0.5 - d / 2
    return np.stack(
      [_view(photo, h, w, c0 + d * u if horiz else 0.5, 0.5 if horiz else c0 + d * u, 0.7) for u in t]
    )
  if kind == "zoom":
    a, b = 0.95, 0.95 * rng.uniform(0.6, 0.75)
    if rng.random() < 0.5:
      a, b = b, a
    return np.stack([_view(photo, h, w, 0.5, 0.5, a + (b - a) * u) for u in t])
  raise ValueError(f"unknown photo shot kind {kind!r}")


def video_shot(
  frames: np.ndarray, src_fps: float, n: int, fps: float, h: int, w: int, rng: np.random.Generator
) -> np.ndarray:
  """n frames at `fps` of a random stretch of a real video (nearest source frame in time; the
  stretch starts where it still fits)."""
  dur = n / fps
  latest = max(0.0, len(frames) / src_fps - dur)
  t0 = rng.uniform(0, latest)
  idx = np.minimum(((t0 + np.arange(n) / fps) * src_fps).astype(int), len(frames) - 1)
  return np.stack([_fit(frames[i], h, w) for i in idx])


def _pair(name: str) -> str:
  """A photo's pair name: the stem without a trailing L/R/A/B or digits (aloeL and aloeR: aloe)."""
  stem = Path(name).stem
  return stem.rstrip("0123456789").removesuffix("_").rstrip("LRAB") if len(stem) > 3 else stem


def _read_photo(path: Path) -> np.ndarray:
  im = cv2.imread(str(path), cv2.IMREAD_COLOR)
  if im is None:
    raise ValueError(f"{path}: unreadable image")
  return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def make_real_set(
  out: str | Path,
  photos: str | Path,
  videos: str | Path,
  *,
  num_videos: int = 6,
  shots_per_video: int = 9,
  seed: int = 0,
  formats: Sequence[tuple[int, int, float]] = REAL_FORMATS,
) -> Path:
  """Writes `num_videos` H.264 videos of real shots with hard cuts and `shots.json` to `out`.

  Each video has `shots_per_video` shots: about a third real-video stretches (1-3 s, as long as
  the source allows), the rest photos as slow pans (2-5 s), zooms (2-4 s) and static shots
  (1.5-4 s), plus one short shot (0.4-0.8 s, a photo) that needs no key frame; no photo twice in a
  video. Video i has format `formats[i % len(formats)]` (height, width, fps).

  Args:
    out: output folder (created).
    photos: a folder of photos (jpg/png).
    videos: a folder of real videos.
    num_videos, shots_per_video, seed, formats: see above.

  Returns:
    The path of `shots.json`.
  """
  from aejax.data.scan import find_videos
  from aejax.data.video import read_frames, write_video

  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  photo_paths = sorted(p for p in Path(photos).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
  vids = [(p.name, *read_frames(p)) for p in find_videos(videos)]
  if not photo_paths or not vids:
    raise ValueError(f"make_real_set: need photos in {photos} and videos in {videos}")
  rng = np.random.default_rng(seed)
  meta = {}
  for v in range(num_videos):
    h, w, fps = formats[v % len(formats)]
    order = rng.permutation(len(photo_paths))
    kinds = (
      ["video"] * (shots_per_video // 3)
      + [str(k) for k in rng.choice(["pan", "zoom", "static"], shots_per_video - shots_per_video // 3 - 1)]
      + ["short"]
    )
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    # No two neighbours from one source or one photo pair (aloeL/aloeR, rubberwhale1/2, ...): that
    # would be continuous footage or a near-identical view, not a cut.
    for k in range(1, len(order)):
      if _pair(photo_paths[order[k]].name) == _pair(photo_paths[order[k - 1]].name):
        order[k:] = np.roll(order[k:], -1)
    parts, shots, start = [], [], 0
    last_video = -1
    for k, kind in enumerate(kinds):
      if kind == "video":
        j = int(rng.integers(len(vids)))
        if k and kinds[k - 1] == "video" and j == last_video:
          j = (j + 1) % len(vids)
        last_video = j
        name, frames, src_fps = vids[j]
        dur = min(rng.uniform(1.2, 3.0), len(frames) / src_fps)
        clip = video_shot(frames, src_fps, max(1, round(dur * fps)), fps, h, w, rng)
      else:
        name = photo_paths[int(order[k])].name
        photo = _read_photo(photo_paths[int(order[k])])
        dur = {"pan": (2, 5), "zoom": (2, 4), "static": (1.5, 4), "short": (0.4, 0.8)}[kind]
        n = max(1, round(rng.uniform(*dur) * fps))
        clip = photo_shot(photo, "static" if kind == "short" else kind, n, h, w, rng)
      shots.append({"start": start, "kind": kind, "static": kind in ("static", "short"), "source": name})
      parts.append(clip)
      start += len(clip)
    file = f"real_{v:02d}_{w}x{h}_{fps:g}fps.mp4"
    write_video(out / file, np.concatenate(parts), fps=fps, codec="h264")
    meta[file] = {"fps": fps, "num_frames": start, "size": [h, w], "shots": shots}
  path = out / SHOTS_FILE
  write_json(path, meta, indent=1)
  return path


def make_synthetic_set(
  out: str | Path,
  *,
  num_videos: int = 4,
  num_frames: int = 300,
  fps: float = 10.0,
  num_shots: int = 6,
  size: Sequence[int] = (96, 192),
  seed: int = 1000,
) -> Path:
  """Writes synthetic scene-cut videos (`scene_cut_video`, seeds `seed`, `seed + 1`, ...) as H.264
  and their `shots.json` to `out`; returns its path."""
  from aejax.data import synthetic
  from aejax.data.video import write_video

  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  meta = {}
  for v in range(num_videos):
    clip = synthetic.scene_cut_video(num_frames, tuple(size), num_shots, seed=seed + v)
    file = f"synthetic_{v:02d}.mp4"
    write_video(out / file, clip["video"], fps=fps, codec="h264")
    meta[file] = {
      "fps": fps,
      "num_frames": num_frames,
      "size": list(size),
      "shots": [{"start": s, "kind": "synthetic", "static": False} for s in [0, *clip["cuts"]]],
    }
  path = out / SHOTS_FILE
  write_json(path, meta, indent=1)
  return path


def load_set(folder: str | Path) -> dict:
  """`shots.json` of a folder, checked: {video path: entry}, starts sorted and beginning at 0."""
  folder = Path(folder)
  path = folder / SHOTS_FILE
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no {SHOTS_FILE} (see aejax.keyframes.cutset for its format)")
  out = {}
  for name, entry in json.loads(path.read_text()).items():
    starts = [int(s["start"]) for s in entry["shots"]]
    if not starts or starts[0] != 0 or starts != sorted(set(starts)):
      raise ValueError(f"{path}: {name}: shot starts must begin at 0 and increase, got {starts}")
    out[str(folder / name)] = entry
  return out


def score_keyframes(
  key_frames: Sequence[int],
  entry: dict,
  *,
  min_shot: float = 1.0,
  cut_frames: Sequence[int] | None = None,
  tolerance: float = 0.5,
) -> dict:
  """One video's key frames against its known shots.

  Args:
    key_frames: frame indices of the key frames.
    entry: the video's `shots.json` entry (`fps`, `num_frames`, `shots`).
    min_shot: shots at least this long (seconds) must have a key frame.
    cut_frames: the detected shot starts (frame indices), when the method gives them.
    tolerance: seconds within which a detected cut matches a true one.

  Returns:
    Counts: `shots`, `long_shots` (>= min_shot), `covered` (long shots with a key frame),
    `keyframes`, `redundant` (key frames beyond the first in static shots), `static_shots`; with
    `cut_frames` also `cuts`, `cuts_found` (true cuts matched one-to-one by a detection within
    `tolerance`) and `cuts_detected`.
  """
  fps, n = float(entry["fps"]), int(entry["num_frames"])
  starts = [int(s["start"]) for s in entry["shots"]]
  ends = [*starts[1:], n]
  static = [bool(s.get("static", False)) for s in entry["shots"]]
  keys = np.asarray(sorted(int(k) for k in key_frames), int)
  shot_of = np.searchsorted(np.asarray(starts), keys, side="right") - 1
  counts = np.bincount(shot_of, minlength=len(starts)) if len(keys) else np.zeros(len(starts), int)
  long = [(e - s) / fps >= min_shot for s, e in zip(starts, ends)]
  r = {
    "shots": len(starts),
    "long_shots": int(sum(long)),
    "covered": int(sum(1 for lg, c in zip(long, counts) if lg and c > 0)),
    "keyframes": int(len(keys)),
    "redundant": int(sum(max(0, c - 1) for st, c in zip(static, counts) if st)),
    "static_shots": int(sum(static)),
  }
  if cut_frames is not None:
    true = np.asarray(starts[1:], float)
    det = np.asarray([c for c in cut_frames if c > 0], float)
    tol = tolerance * fps
    used, found = np.zeros(len(det), bool), 0
    for c in true:  # one-to-one: each true cut takes the nearest unused detection within tolerance
      gap = np.where(used, np.inf, np.abs(det - c))
      if len(gap) and gap.min() <= tol:
        used[int(np.argmin(gap))] = True
        found += 1
    r.update(cuts=len(true), cuts_detected=len(det), cuts_found=found)
  return r


def summarize(per_video: Sequence[dict]) -> dict:
  """Set-level figures of `score_keyframes` results: coverage, key frames per shot, redundant key
  frames (total), and cut recall when present."""
  tot = lambda k: sum(r[k] for r in per_video)
  out = {
    "videos": len(per_video),
    "shots": tot("shots"),
    "coverage": tot("covered") / max(tot("long_shots"), 1),
    "keyframes_per_shot": tot("keyframes") / max(tot("shots"), 1),
    "redundant": tot("redundant"),
  }
  if all("cuts" in r for r in per_video):
    out["cut_recall"] = tot("cuts_found") / max(tot("cuts"), 1)
    out["cut_precision"] = tot("cuts_found") / max(tot("cuts_detected"), 1)
  return out


def main(argv=None) -> None:
  """`python -m aejax.keyframes.cutset OUT [--synthetic] [--photos P] [--videos V] [--num-videos N]`."""
  import argparse

  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("out")
  p.add_argument("--synthetic", action="store_true", help="the synthetic scene-cut set instead")
  p.add_argument("--photos", default="../shared/realdata/photos")
  p.add_argument("--videos", default="../shared/realdata/videos")
  p.add_argument("--num-videos", type=int, default=None)
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  if a.synthetic:
    path = make_synthetic_set(a.out, num_videos=a.num_videos or 4)
  else:
    path = make_real_set(a.out, a.photos, a.videos, num_videos=a.num_videos or 6, seed=a.seed)
  print(path)


if __name__ == "__main__":
  main()
