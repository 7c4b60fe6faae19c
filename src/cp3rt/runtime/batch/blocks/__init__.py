"""Huge images in blocks with halos, labels stitched across block seams (issue 6, part 2)."""

from cp3rt.runtime.blocks.merge import matching_pairs
from cp3rt.runtime.blocks.plan import Block, BlockGrid
from cp3rt.runtime.blocks.run import BlockSummary, global_lowhigh, segment_blocks

__all__ = ["Block", "BlockGrid", "BlockSummary", "global_lowhigh", "matching_pairs", "segment_blocks"]
