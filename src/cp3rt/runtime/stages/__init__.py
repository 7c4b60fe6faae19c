"""Level 7, stages: one image or one volume through restoration, segmentation and dynamics (docs/layout.md)."""
