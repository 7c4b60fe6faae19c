"""numpy/numba runtime: pre-processing, tiling, pipeline, dynamics, metrics, I/O. No torch."""
