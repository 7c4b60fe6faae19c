"""Level 2, tiles: tile geometry, blending of tile outputs, a net run over the tiles of an image (docs/layout.md)."""
