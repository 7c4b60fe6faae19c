"""Support for the watch tests: the numpy stand-in net behind ``Pipeline.from_config``, blob
images, a watch running in a thread, and polling with generous timeouts (no timed assertions)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import tifffile
from scale_testutil import NumpyEngine, blob_image

from cp3rt import Pipeline
from cp3rt.runtime import OutputOptions, PipelineConfig, RunConfig
from cp3rt.runtime.batch.cancel import Cancel
from cp3rt.runtime.batch.watch import WatchOptions, watch_folder

RUN = RunConfig(channels=(0, 0), diameter=20.0)


def stand_in(monkeypatch) -> None:
    monkeypatch.setattr(Pipeline, "from_config", classmethod(
        lambda cls, cfg, run=None: Pipeline.from_engines(NumpyEngine(nchan=2), run=run)))


def blobs(seed: int = 0, size: int = 96) -> np.ndarray:
    return blob_image((size, size), 6, seed, radius=7)[0]


def write_tif(path: Path, seed: int = 0, size: int = 96) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, blobs(seed, size))
    return path


def wait_until(check, seconds: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Watching:
    """``watch_folder`` in a thread: ``events`` collects its events; ``stop()`` cancels, joins
    and returns the summary."""

    def __init__(self, root: Path, out: Path | None, **options) -> None:
        options.setdefault("settle", 0.1)
        options.setdefault("give_up", 2.0)
        self.events: list = []
        self.cancel = Cancel()
        self.summary = None
        self.error: BaseException | None = None

        def go() -> None:
            try:
                self.summary = watch_folder(root, PipelineConfig(), RUN, OutputOptions(out_dir=out),
                                            WatchOptions(**options), on_event=self.events.append,
                                            cancel=self.cancel)
            except BaseException as exc:  # noqa: BLE001 - re-raised by stop()
                self.error = exc

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()
        wait_until(lambda: any(e.kind == "watching" for e in self.events) or self.error, what="watch start")

    def ended(self) -> list:
        return [e for e in self.events if e.kind == "end"]

    def stop(self):
        self.cancel.set("test")
        self.thread.join(60)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error
        return self.summary
