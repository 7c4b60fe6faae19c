"""Level 1, pixel preparation: axes, percentile normalisation, resizing, diameter -> scale (docs/layout.md)."""
