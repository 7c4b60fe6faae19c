"""Image and result files: reading, input discovery, atomic writers, GUI-compatible outputs."""

from __future__ import annotations

from cp3rt.runtime.io.discover import OUTPUT_STEM_SUFFIXES, find_images, is_output_name, natural_key
from cp3rt.runtime.io.read import IMAGE_SUFFIXES, READABLE_SUFFIXES, read_image, read_masks
from cp3rt.runtime.io.render import (
    flows_to_rgb,
    masks_to_outlines,
    write_flow_picture_tif,
    write_overlay_png,
)
from cp3rt.runtime.io.seg_npy import (
    read_seg_npy,
    seg_dict,
    seg_npy_path,
    write_seg_dict,
    write_seg_npy,
)
from cp3rt.runtime.io.write import (
    mask_dtype,
    output_path,
    write_image_tif,
    write_json,
    write_masks_tif,
)

__all__ = [
    "IMAGE_SUFFIXES", "OUTPUT_STEM_SUFFIXES", "READABLE_SUFFIXES", "find_images", "flows_to_rgb",
    "is_output_name", "mask_dtype", "masks_to_outlines", "natural_key", "output_path",
    "read_image", "read_masks", "read_seg_npy", "seg_dict", "seg_npy_path", "write_image_tif",
    "write_flow_picture_tif", "write_json", "write_masks_tif", "write_overlay_png",
    "write_seg_dict", "write_seg_npy",
]
