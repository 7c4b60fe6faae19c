"""Torch side: CPnet (reads Cellpose v3 weight files unchanged), ONNX export. Imports torch."""
