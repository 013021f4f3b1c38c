"""Data sources, transforms, synthetic sets and Grain pipelines.

- `synthetic`: embedded, seeded twins of every data set (textures, shape videos with masks, scene
  cuts, a DAVIS-like set, moving digits) and writers for video folders and DAVIS layouts.
- `video`: every video read and write: the PyAV `VideoReader` (seeking reads), sampled streams, a
  camera, the atomic streaming `VideoWriter` (browser-playable H.264 for .mp4, through PyAV).
- `scan`: `scan_videos` (metadata scan of a video folder, cached as it goes, validation report),
  `VideoInfo`, `find_videos`.
- `sources`: Grain random-access sources (image folders, arrays, video pairs and clips, DAVIS,
  MovingMNIST); image folders live in `images`; DAVIS, MovingMNIST, in-memory videos and the DAVIS
  indexed PNGs in `sequences`; the digit set and bouncing-digits generator in `digits`;
  `movingmnist`: the 3D AE's clips (real MNIST train/test digits, `mnist_test_seq.npy`, grey 64x64
  clips of videos).
- `roots`: a data root is a raw folder or a prepared set; `roots` recognises which.
- `transforms`: Grain `Map` / `RandomMap` transforms and colour spaces.
- `pipeline`: `make_loader` (seed → shard → shuffle → transforms → batch → workers).
- `prepare`: `python -m aejax.data.prepare` decodes once into sharded array_record files; videos
  in `prepare_videos` (resumable, several workers, `PreparedVideos`), images and DAVIS in
  `prepare_images` (tfds builders, `PreparedImageSource`, `PreparedDavisSource`).
"""
