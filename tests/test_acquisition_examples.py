"""The acquisition-software examples (issue 18 item 3) against stand-ins that call them exactly as
the libraries document it; Micro-Manager, its device adapters, pycro-manager and pymmcore-plus
themselves are not run here (docs/acquisition-hooks.md says so).

* pycro-manager: ``Acquisition(image_process_fn=fn)`` calls ``fn(image, metadata)`` or, for a
  three-parameter function, ``fn(image, metadata, event_queue)``; ``metadata`` carries ``Axes``
  and Micro-Manager's ``XPositionUm``, ``YPositionUm``, ``PixelSizeUm``, ``Width``, ``Height``;
  the function returns ``(image, metadata)``, a list of them or None; events put into
  ``event_queue`` (dicts with ``axes``, stage ``x``/``y``) are acquired next, ``None`` ends it.
* pymmcore-plus: ``mmc.mda.events.frameReady`` is a psygnal ``Signal(np.ndarray, MDAEvent,
  dict)`` emitted once per frame from the acquisition thread; ``mmc.mda.run`` takes any iterable
  of events, e.g. ``iter(queue.get, STOP)``. The stand-in uses psygnal itself (the library
  pymmcore-plus uses without Qt), so a slot whose signature does not fit is refused as it would be.

The camera of both stand-ins crops a field of known discs around the stage position; a
follow-up chosen by an example must put the stage on a true disc.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from psygnal import Signal

from cp3rt import Pipeline
from cp3rt.runtime.batch import warmup as W

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "acquisition"
PIXEL_UM = 0.65
FOV = (192, 224)  # camera height, width


def _example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pipeline():
    with Pipeline("cp3rt_nuclei", backend="ort", diameter=17.0, channels=(0, 0)) as pipe:
        yield pipe


@pytest.fixture(scope="module")
def scene():
    """A 640 x 640 field of 160 bright discs (~16 px across) and their true labels."""
    labels = W._discs((640, 640), 160, 8.0, seed=11)
    return W._image_of(labels, seed=12), labels


class Camera:
    """The image a camera sees with the stage at (x, y) µm: the field's pixels around it."""

    def __init__(self, scene: tuple[np.ndarray, np.ndarray]) -> None:
        self.image, self.labels = scene

    def origin(self, x_um: float, y_um: float) -> tuple[int, int]:
        h, w = FOV
        return int(round(y_um / PIXEL_UM - (h - 1) / 2)), int(round(x_um / PIXEL_UM - (w - 1) / 2))

    def snap(self, x_um: float, y_um: float) -> np.ndarray:
        y0, x0 = self.origin(x_um, y_um)
        return self.image[y0 : y0 + FOV[0], x0 : x0 + FOV[1]].copy()

    def true_label_at(self, x_um: float, y_um: float) -> int:
        return int(self.labels[int(round(y_um / PIXEL_UM)), int(round(x_um / PIXEL_UM))])


# ---- pycro-manager ----------------------------------------------------------------------------
class PycroAcquisition:
    """pycro-manager's ``Acquisition`` as its docs describe the image processor's side of it."""

    def __init__(self, camera: Camera, image_process_fn: Any) -> None:
        self.camera, self._fn = camera, image_process_fn
        self._three = len(inspect.signature(image_process_fn).parameters) == 3
        self._event_queue: queue.Queue = queue.Queue()
        self.saved: list[tuple[np.ndarray, dict]] = []
        self.acquired: list[dict] = []

    def acquire(self, events: dict | list[dict]) -> None:
        for event in [events] if isinstance(events, dict) else events:
            self._event_queue.put(event)

    def await_completion(self) -> None:
        while (event := self._event_queue.get(timeout=60)) is not None:
            self.acquired.append(event)
            h, w = FOV
            metadata = {"Axes": dict(event["axes"]), "XPositionUm": event["x"], "YPositionUm": event["y"],
                        "PixelSizeUm": PIXEL_UM, "Width": w, "Height": h, "PixelType": "GRAY16"}
            image = self.camera.snap(event["x"], event["y"])
            args = (image, metadata, self._event_queue) if self._three else (image, metadata)
            out = self._fn(*args)
            if out is not None:
                self.saved.extend(out if isinstance(out, list) else [out])


def test_pycromanager_processor_segments_each_image_and_images_the_biggest_cells_next(pipeline, scene):
    ex = _example("pycromanager_processor")
    camera = Camera(scene)
    seen = []
    fn = ex.make_image_processor(pipeline, n_cells=3, min_area=50,
                                 on_result=lambda masks, cells, md: seen.append((masks, cells)))
    acq = PycroAcquisition(camera, fn)
    assert acq._three  # the documented three-argument form, with the event queue
    acq.acquire({"axes": {"time": 0}, "x": 200.0, "y": 210.0})
    acq.await_completion()

    survey, *follow = acq.acquired
    assert [e["axes"] for e in follow] == [{"time": 0, "cell": k} for k in range(3)]
    for event in follow:  # each follow-up puts the stage on a true cell
        assert camera.true_label_at(event["x"], event["y"]) > 0, event
    assert len(acq.saved) == 4  # every image goes on to pycro-manager's saving
    image, metadata = acq.saved[0]
    direct = pipeline.run(camera.snap(survey["x"], survey["y"])).masks
    np.testing.assert_array_equal(seen[0][0], direct)  # the warm Pipeline's own masks
    assert metadata["cp3rt_objects"] == len(seen[0][1]) > 3
    assert all(isinstance(v, float) for yx in metadata["cp3rt_centroids_yx"] for v in yx)
    for (_, follow_md), _event in zip(acq.saved[1:], follow):  # follow-ups queue nothing more
        assert follow_md["Axes"]["cell"] in (0, 1, 2)


# ---- pymmcore-plus ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MDAEvent:
    """The fields of ``useq.MDAEvent`` the example reads and writes."""

    index: dict = dataclasses.field(default_factory=dict)
    x_pos: float | None = None
    y_pos: float | None = None
    metadata: dict = dataclasses.field(default_factory=dict)


class MDAEvents:
    frameReady = Signal(np.ndarray, MDAEvent, dict)  # pymmcore-plus: (img, event, meta)


class MDARunner:
    """``mmc.mda``: ``run(iterable of events)`` emits frameReady once per frame, from its own
    acquisition thread as pymmcore-plus does, and blocks until the events are exhausted."""

    def __init__(self, camera: Camera) -> None:
        self.camera, self.events, self.ran = camera, MDAEvents(), []

    def run(self, events: Any) -> None:
        def acquire() -> None:
            for event in events:
                self.ran.append(event)
                img = self.camera.snap(event.x_pos, event.y_pos)
                self.events.frameReady.emit(img, event, {"pixel_size_um": PIXEL_UM})

        thread = threading.Thread(target=acquire)
        thread.start()
        thread.join(timeout=120)


def test_pymmcore_plus_frame_segmenter_keeps_every_frame_and_queues_cells(pipeline, scene):
    ex = _example("pymmcore_plus_frame")
    camera = Camera(scene)
    mda = MDARunner(camera)
    follow_ups: queue.Queue = queue.Queue()
    seg = ex.FrameSegmenter(pipeline, pixel_size_um=PIXEL_UM, n_cells=2, follow_ups=follow_ups, make_event=MDAEvent)
    mda.events.frameReady.connect(seg.on_frame)  # psygnal checks the slot takes (img, event, meta)
    survey = [MDAEvent(index={"p": 0}, x_pos=150.0, y_pos=150.0), MDAEvent(index={"p": 1}, x_pos=260.0, y_pos=250.0)]
    mda.run(survey)
    mda.events.frameReady.disconnect(seg.on_frame)
    seg.close()
    assert seg.errors == []
    assert set(seg.results) == {(("p", 0),), (("p", 1),)}
    for event in survey:
        masks, cells = seg.results[tuple(event.index.items())]
        np.testing.assert_array_equal(masks, pipeline.run(camera.snap(event.x_pos, event.y_pos)).masks)
        assert len(cells) > 2

    follow_ups.put(ex.STOP)
    mda.run(iter(follow_ups.get, ex.STOP))  # pymmcore-plus's event-driven pattern
    chosen = mda.ran[2:]
    assert sorted((e.index["p"], e.index["cell"]) for e in chosen) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for event in chosen:
        assert camera.true_label_at(event.x_pos, event.y_pos) > 0, event
        assert event.metadata["cp3rt_label"] > 0


def test_a_slot_with_the_wrong_signature_is_refused_by_psygnal():
    """The stand-in signal is psygnal's: a slot needing four arguments cannot connect."""
    events = MDAEvents()
    with pytest.raises(ValueError):
        events.frameReady.connect(lambda img, event, meta, extra: None)
