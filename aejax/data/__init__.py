"""Data sources, transforms, synthetic sets and Grain pipelines."""
