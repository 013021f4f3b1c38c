"""Key frames and key clips of a video, after Best-Frame-Retrieval (Chen et al. 2021).

- `select`: frame sampling, the sharpest frame per second, novelty scores and thresholds, key-frame
  selection, key clips, shot recall.
- `features`: frames resized and scaled for the autoencoder, its embeddings (latent or
  reconstruction) and the pixel baseline, pairwise distances.
- `report`: key-frame PNGs, clip MP4s, the timeline plot, the contact sheet, `keyframes.json`.
- `shots`: shot-aware selection (hard cuts from an HSV cue, within-shot changes, sharpest frame per
  segment, near-duplicates suppressed) and `PossibleKeys` (the features and frames a scan needs).
- `scan`: one decoding pass over the sampled frames (cut cue, sharpness, the features the selection
  reads, the frames of possible key frames).
- `pipeline`: `select_video` (key frames and clips of one file), `extract_video` (every output).
- `evaluation`: `evaluate_set` (methods on a folder of videos with known shots, PySceneDetect among
  them), `shot_recall_study` (synthetic).
- `cutset`: folders of videos with known shots (real footage or synthetic) and their scoring.
"""

# ruff: noqa: F401  (the names below are the package's public surface)
from aejax.keyframes.evaluation import evaluate_set, pyscenedetect_method, selection_method, shot_recall_study
from aejax.keyframes.features import (
  METRICS,
  candidate_features,
  make_dist_pairs,
  make_embed_fn,
  raw_embed_fn,
  resize_frames,
  to_model_input,
  video_frame_images,
)
from aejax.keyframes.pipeline import METHODS, extract_video, select_video
from aejax.keyframes.report import contact_sheet, timeline_plot, write_outputs, write_outputs_pass
from aejax.keyframes.select import (
  REFERENCES,
  THRESHOLD_MODES,
  Candidate,
  consecutive_scores,
  is_sampled,
  robust_threshold,
  sample_slot,
  sampled_frames,
  segment_clips,
  select_keyframes,
  sharpest_per_second,
  sharpness,
  shot_recall,
)
from aejax.keyframes.shots import DUPLICATE_THRESHOLD, PossibleKeys, ShotRules, select_shots
