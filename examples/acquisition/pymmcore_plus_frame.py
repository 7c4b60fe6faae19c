"""cp3rt on pymmcore-plus frames: segment every frame of a multi-dimensional acquisition as it
arrives, and image the biggest cells of each survey position next.

A ``Pipeline`` is opened once, before the acquisition (run ``cp3rt warmup`` in the install
script so the first frame does not compile anything). ``FrameSegmenter.on_frame`` is connected to
pymmcore-plus's documented signal ``mmc.mda.events.frameReady(img, event, meta)``; it only
hands the frame to a worker thread, so the acquisition thread (which emits the signal) never
waits for a segmentation. The worker segments the frame and keeps its masks and cell centroids
by the event's index; for a survey frame (no ``"cell"`` index key) it puts one follow-up
``useq.MDAEvent`` per chosen cell, the stage at the cell's centroid, into ``follow_ups``: a
queue that ``mmc.run_mda(iter(follow_ups.get, STOP))`` executes (pymmcore-plus's documented
event-driven acquisition pattern).

Needs ``pip install pymmcore-plus`` and a Micro-Manager installation with its device adapters
(``mmcore install``); the demo configuration runs without a microscope. Run:
``python pymmcore_plus_frame.py --help``. The stage position of a pixel assumes the camera's axes
are the stage's (check the pixel-size affine transform on your system).
"""

from __future__ import annotations

import argparse
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from cp3rt import Pipeline
from cp3rt.runtime.io.objects_table import object_table

STOP = object()  # the end of the follow-up queue: iter(follow_ups.get, STOP)


def find_cells(pipeline: Pipeline, image: np.ndarray, *, min_area: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Masks of one frame and its cells, biggest first: label, centroid (y, x) in pixels, area
    in pixels. Cells touching the border or under ``min_area`` are left out."""
    masks = pipeline.run(np.asarray(image)).masks
    table = object_table(masks)
    keep = (table["area_px"] >= min_area) & (table["touches_edge"] == 0)
    cells = [{"label": int(k), "y": float(y), "x": float(x), "area_px": int(a)}
             for k, y, x, a in zip(table["label"][keep], table["centroid_y"][keep],
                                   table["centroid_x"][keep], table["area_px"][keep])]
    return masks, sorted(cells, key=lambda c: -c["area_px"])


def _mda_event(**fields: Any) -> Any:
    import useq

    return useq.MDAEvent(**fields)


class FrameSegmenter:
    """Segments pymmcore-plus frames off the acquisition thread (see the module docstring).

    ``results[index]`` holds ``(masks, cells)`` per frame, ``index`` being the event's index as
    a sorted tuple of (axis, value) pairs. ``pixel_size_um`` is the camera's (``mmc.getPixelSizeUm()``).
    ``make_event`` builds a follow-up event from MDAEvent fields (``useq.MDAEvent`` by default).
    """

    def __init__(self, pipeline: Pipeline, *, pixel_size_um: float, n_cells: int = 3, min_area: int = 50,
                 follow_ups: queue.Queue | None = None, make_event: Callable[..., Any] = _mda_event) -> None:
        self.pipeline, self.pixel_size_um, self.n_cells, self.min_area = pipeline, pixel_size_um, n_cells, min_area
        self.follow_ups, self.make_event = follow_ups, make_event
        self.results: dict[tuple, tuple[np.ndarray, list[dict]]] = {}
        self.errors: list[str] = []
        self._inbox: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="cp3rt-frames", daemon=True)
        self._worker.start()

    def on_frame(self, img: np.ndarray, event: Any, meta: dict) -> None:
        """The frameReady slot: ``(img, event, meta)`` as pymmcore-plus emits it; returns at once."""
        self._inbox.put((np.array(img, copy=True), event, meta))

    def close(self) -> None:
        """Segment what is still queued, then stop the worker."""
        self._inbox.put(None)
        self._worker.join()

    def _work(self) -> None:
        while (item := self._inbox.get()) is not None:
            img, event, _meta = item
            try:
                self._segment(img, event)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the others
                self.errors.append(f"{dict(event.index)}: {exc}")

    def _segment(self, img: np.ndarray, event: Any) -> None:
        masks, cells = find_cells(self.pipeline, img, min_area=self.min_area)
        index = dict(event.index)
        self.results[tuple(sorted(index.items()))] = (masks, cells)
        if self.follow_ups is None or "cell" in index or event.x_pos is None:
            return
        h, w = img.shape[-2:]
        for k, cell in enumerate(cells[: self.n_cells]):
            x = event.x_pos + (cell["x"] - (w - 1) / 2) * self.pixel_size_um
            y = event.y_pos + (cell["y"] - (h - 1) / 2) * self.pixel_size_um
            self.follow_ups.put(self.make_event(index={**index, "cell": k}, x_pos=x, y_pos=y,
                                                metadata={"cp3rt_label": cell["label"]}))


def main() -> None:  # pragma: no cover - needs Micro-Manager's device adapters
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="Micro-Manager configuration (default: the demo one)")
    parser.add_argument("--model", default="cyto3")
    parser.add_argument("--diameter", type=float, default=30.0, help="cell diameter in pixels")
    args = parser.parse_args()

    import useq
    from pymmcore_plus import CMMCorePlus

    mmc = CMMCorePlus()
    mmc.loadSystemConfiguration(args.config) if args.config else mmc.loadSystemConfiguration()
    follow_ups: queue.Queue = queue.Queue()
    with Pipeline(args.model, diameter=args.diameter, channels=(0, 0)) as pipeline:
        seg = FrameSegmenter(pipeline, pixel_size_um=mmc.getPixelSizeUm() or 1.0, follow_ups=follow_ups)
        mmc.mda.events.frameReady.connect(seg.on_frame)
        x, y = mmc.getXPosition(), mmc.getYPosition()
        survey = useq.MDASequence(stage_positions=[(x, y), (x + 500, y)])
        mmc.mda.run(survey)  # blocking: the survey; its frames are segmented meanwhile
        mmc.mda.events.frameReady.disconnect(seg.on_frame)
        seg.close()  # every survey frame segmented: the follow-ups are queued
        follow_ups.put(STOP)
        mmc.mda.run(iter(follow_ups.get, STOP))  # then the chosen cells are imaged
        print({k: len(cells) for k, (_, cells) in seg.results.items()}, seg.errors)


if __name__ == "__main__":
    main()
