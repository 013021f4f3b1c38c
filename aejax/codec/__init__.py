"""Learned video coding shared by OVAL and the 3D autoencoder: what crosses the link and what it costs.

Rooms:
  latent.py     rate accounting (bytes, ratio against raw 8-bit RGB, bpp, decoder-update bytes) and
                `LatentCodec`, the byte-exact coder of one frame's latent.
  baselines.py  the classic codecs to beat: bit cutting, down/up-scaling, JPEG (also at given bytes).
  report.py     per-frame quality, rate–distortion rows, CSV/markdown tables, R–D and per-frame plots.
  convert.py    `FrameCodec` (a model's jitted halves over frame batches), video conversion, R–D study.
  online.py     online learning: sender, trainer and receiver on a logical clock.
Later rooms: the bitstream container and the entropy models.
"""
