"""Inference engines: the Engine protocol and its backends (each imports its library lazily)."""
