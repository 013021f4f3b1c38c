"""Learned video coding shared by OVAL and the 3D autoencoder: what crosses the link and what it costs.

Rooms:
  latent.py     rate accounting (bytes, ratio against raw 8-bit RGB, bpp, decoder-update bytes) and
                `LatentCodec`, the byte-exact coder of one frame's latent.
  baselines.py  the classic codecs to beat: bit cutting, down/up-scaling, JPEG (also at given bytes),
                H.264 / H.265 / AV1 through PyAV.
  report.py     per-frame quality, rate–distortion rows, CSV/markdown tables, R–D and per-frame plots.
  frames.py     `FrameCodec` (a model's jitted halves over frame batches), frame streaming, H.264 sinks.
  convert.py    video conversion (decoded / side-by-side video, per-frame CSV) and the R–D study.
  files.py      `encode_video` / `decode_file`: OVAL's .aejx files (streamed, bit-exact decode).
  online.py     online learning: sender, trainer and receiver on a logical clock.
  online_study.py  an online run's outputs (video, CSV, plot) and online vs frozen at equal bytes.
  oval_train.py OVAL's offline training clips and loss; app.py: the OVAL command line's modes on a config.
  entropy.py    range coding (constriction) of quantised latents under a per-channel factorized
                Laplace/Gaussian model.
  clips.py      the 3D autoencoder as a codec: clip records in .aejx files, codes range coded
                (temporal / channel / clip categorical models), bit-exact decode.
  clip_eval.py  3D-AE evaluation: PSNR, honest bpp (log2 K per code; 32 bits per value in the float
                modes), R–D table, digit probe with its chance baseline.
  bitstream.py  the `.aejx` container: header (model identity, geometry, codec) + length-prefixed
                frame, decoder-update and clip records; the file's size is the rate.
"""
