"""Level 9, batch work: folders of files, OME-Zarr plates, huge images in blocks, streams (docs/layout.md)."""
