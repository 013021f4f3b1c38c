"""Flax Linen models: one file per family, shared blocks in layers.py."""
