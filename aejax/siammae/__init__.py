"""SiamMAE's capability package (`experiments/siammae.py`).

- `recipe`: frame-pair sources (raw or prepared videos, or embedded synthetic ones), the loader
  with repeated sampling, the step schedule from effective epochs and the optimiser.
- `evaluation`: DAVIS label propagation on the encoder's features (float32), pretrained against
  random initialisation, the protocol presets and the reconstruction grids.

The model is `aejax.models.siammae.SiamMAE`; label propagation itself is `aejax.labelprop`.
"""
