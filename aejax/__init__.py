"""aejax: five image and video autoencoder systems in JAX/Flax behind one training engine."""

__version__ = "0.1.0"
