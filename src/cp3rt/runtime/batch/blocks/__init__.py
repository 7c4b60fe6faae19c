"""Huge images in blocks with halos, labels stitched across block seams (issue 6, part 2)."""

from cp3rt.runtime.batch.blocks.image import BlockSummary, global_lowhigh, segment_blocks
from cp3rt.runtime.batch.blocks.merge import matching_pairs
from cp3rt.runtime.batch.blocks.plan import Block, BlockGrid

__all__ = ["Block", "BlockGrid", "BlockSummary", "global_lowhigh", "matching_pairs", "segment_blocks"]
