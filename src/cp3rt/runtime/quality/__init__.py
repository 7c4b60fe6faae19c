"""Level 5, quality tools: metrics, evaluation of mask folders, synthetic degradations (docs/layout.md)."""
