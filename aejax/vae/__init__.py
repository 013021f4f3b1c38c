"""The VAE's capability package (Quixel conv VAE, `experiments/vae.py`).

- `elbo`: the ELBO terms (Gaussian KL, Bernoulli NLL, summed squared error) and the original's
  objective `vae_loss` with per-example, per-dimension and bits-per-dimension metrics.
- `similarity`: the feature-similarity study (same-image vs different-image crop pairs, cosine
  similarity, AUROC, nearest-neighbour retrieval, histogram and retrieval pictures) for any encoder.
- `evaluation`: the validation ELBO over a data split and the picture grids (prior samples,
  reconstructions, latent interpolation).

The model itself is `aejax.models.vae.ConvVAE`.
"""
