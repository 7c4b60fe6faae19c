"""cp3rt inside a pycro-manager acquisition: segment every image as it is acquired, and image the
biggest cells of a survey image next.

A ``Pipeline`` is opened once, before the acquisition (engines and numba kernels warm: run
``cp3rt warmup`` in the install script); pycro-manager then calls the image processor below for
every image, with the documented three-argument signature ``image_process_fn(image, metadata,
event_queue)``. For each image it

* segments it (``Pipeline.run``) and puts the object count and centroids into the image's
  metadata (saved with the image by pycro-manager);
* for a survey image (no ``"cell"`` axis), queues one acquisition event per chosen cell: the
  stage moved to the cell's centroid (``"x"``, ``"y"`` in µm), axes ``{"cell": k, ...}``; then
  ``None``, which pycro-manager documents as "no more events" (the acquisition ends after them).

Needs Micro-Manager with its pycro-manager server running (Tools > Options > Run server on port
4827) and ``pip install pycromanager``. Run: ``python pycromanager_processor.py --help``.
The stage position of a pixel assumes the camera's axes are the stage's (no rotation or flip
between them: check Micro-Manager's pixel-size affine transform on your system).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from cp3rt import Pipeline
from cp3rt.runtime.io.objects_table import object_table


def find_cells(pipeline: Pipeline, image: np.ndarray, *, min_area: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Masks of one camera frame and its cells, biggest first: label, centroid (y, x) in
    pixels, area in pixels. Cells touching the border or under ``min_area`` are left out."""
    masks = pipeline.run(np.asarray(image)).masks
    table = object_table(masks)
    keep = (table["area_px"] >= min_area) & (table["touches_edge"] == 0)
    cells = [{"label": int(k), "y": float(y), "x": float(x), "area_px": int(a)}
             for k, y, x, a in zip(table["label"][keep], table["centroid_y"][keep],
                                   table["centroid_x"][keep], table["area_px"][keep])]
    return masks, sorted(cells, key=lambda c: -c["area_px"])


def stage_position(cell: dict, metadata: dict) -> tuple[float, float]:
    """Stage (x, y) in µm that centres ``cell`` in the field of view, from Micro-Manager's
    image metadata (XPositionUm, YPositionUm, PixelSizeUm, Width, Height)."""
    size = float(metadata["PixelSizeUm"])
    dx = (cell["x"] - (int(metadata["Width"]) - 1) / 2) * size
    dy = (cell["y"] - (int(metadata["Height"]) - 1) / 2) * size
    return float(metadata["XPositionUm"]) + dx, float(metadata["YPositionUm"]) + dy


def make_image_processor(pipeline: Pipeline, *, n_cells: int = 3, min_area: int = 50,
                         on_result: Callable[[np.ndarray, list[dict], dict], None] | None = None,
                         ) -> Callable[[np.ndarray, dict, Any], tuple[np.ndarray, dict]]:
    """pycro-manager's ``image_process_fn`` (three-argument form) around a warm ``pipeline``.
    ``on_result(masks, cells, metadata)`` receives each image's masks (e.g. to save them)."""

    def image_process_fn(image: np.ndarray, metadata: dict, event_queue: Any) -> tuple[np.ndarray, dict]:
        masks, cells = find_cells(pipeline, image, min_area=min_area)
        metadata["cp3rt_objects"] = len(cells)  # plain JSON values: the metadata goes to Java
        metadata["cp3rt_centroids_yx"] = [[round(c["y"], 2), round(c["x"], 2)] for c in cells]
        if on_result is not None:
            on_result(masks, cells, metadata)
        axes = dict(metadata.get("Axes", {}))
        if "cell" not in axes:  # a survey image: image its biggest cells next, then stop
            for k, cell in enumerate(cells[:n_cells]):
                x, y = stage_position(cell, metadata)
                event_queue.put({"axes": {**axes, "cell": k}, "x": x, "y": y})
            event_queue.put(None)
        return image, metadata

    return image_process_fn


def main() -> None:  # pragma: no cover - needs Micro-Manager and a microscope (or its demo config)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="where pycro-manager saves the acquisition")
    parser.add_argument("--model", default="cyto3")
    parser.add_argument("--diameter", type=float, default=30.0, help="cell diameter in pixels")
    parser.add_argument("--cells", type=int, default=3, help="cells to image after the survey")
    args = parser.parse_args()

    from pycromanager import Acquisition, multi_d_acquisition_events

    with Pipeline(args.model, diameter=args.diameter, channels=(0, 0)) as pipeline:
        process = make_image_processor(pipeline, n_cells=args.cells)
        # With feedback, not `with Acquisition(...)`: that would finish before the new events
        # are queued (pycro-manager's docs); the processor queues None to finish instead.
        acq = Acquisition(directory=args.directory, name="cp3rt_survey", image_process_fn=process)
        acq.acquire(multi_d_acquisition_events(num_time_points=1))
        acq.await_completion()


if __name__ == "__main__":
    main()
