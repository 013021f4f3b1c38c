"""Data sources, transforms, synthetic sets and Grain pipelines.

- `synthetic`: embedded, seeded twins of every data set (textures, shape videos with masks, scene
  cuts, a DAVIS-like set, moving digits) and writers for video folders and DAVIS layouts.
- `video`: OpenCV `VideoReader`, `write_video`, `scan_videos` (cached metadata, validation report).
- `sources`: Grain random-access sources (image folders, arrays, video pairs and clips, DAVIS,
  MovingMNIST); image folders live in `images`, DAVIS and MovingMNIST in `sequences`, the digit
  set and bouncing-digits generator in `digits` (all re-exported by `sources` / `synthetic`).
- `transforms`: Grain `Map` / `RandomMap` transforms and colour spaces.
- `pipeline`: `make_loader` (seed → shard → shuffle → transforms → batch → workers).
- `prepare`: `python -m aejax.data.prepare` decodes once into tfds array_record files.
"""
