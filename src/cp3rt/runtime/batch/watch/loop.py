"""``watch_folder``: segment the images of a folder tree as they are written, with the nets
opened once, until told to stop (``Cancel``) or, with ``once``, until what is there is done.

Two threads. The detector (this module's ``_Detector``) notices files (``detect``: file events
or polling, plus a full scan at the start and a safety rescan), waits until each is complete
(``complete.Settler``) and puts it on an unbounded first-in-first-out queue: back-pressure is
that queue, nothing is dropped, and its length (the backlog) goes out with every event. The
caller's thread takes files off the queue one by one through ``batch.files.process_file`` (its
claims, atomic outputs and one-line failures; a bad file is recorded and the loop goes on; a
huge TIFF goes through ``blocks.files.segment_file`` instead, as ``cp3rt run`` routes it) and
writes one journal record per file (``journal``), so a restart resumes without redoing or
skipping anything. A set ``Cancel`` stops the loop after the image in flight.

With an output folder, outputs mirror the watched tree under it (plates and time-lapse folders
often repeat file names in every subfolder); without one they go next to each image.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.batch.blocks.files import segment_file, split_inputs
from cp3rt.runtime.batch.cancel import Cancel, Cancelled
from cp3rt.runtime.batch.claims import wait_released
from cp3rt.runtime.batch.files import BatchSummary, ImageOutcome, OutputOptions, process_file
from cp3rt.runtime.batch.watch.complete import FileKey, Settler, file_key
from cp3rt.runtime.batch.watch.detect import Finder, open_events
from cp3rt.runtime.batch.watch.journal import Journal
from cp3rt.runtime.config import PipelineConfig, RunConfig
from cp3rt.runtime.io.out_dir import check_output_dir
from cp3rt.runtime.pipeline import ImageRunner, Pipeline

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.batch.run_record import RunRecorder


@dataclasses.dataclass(frozen=True)
class WatchOptions:
    """How files are found and judged ready (seconds; see ``cp3rt.defaults``)."""

    patterns: tuple[str, ...] = ()  # globs on the file name or the path under the folder
    settle: float = D.WATCH_SETTLE
    give_up: float = D.WATCH_GIVE_UP
    poll: float | None = None  # rescan every this many seconds instead of listening to file events
    rescan: float = D.WATCH_RESCAN
    once: bool = False  # process what is in the folder, then return

    def __post_init__(self) -> None:
        for name in ("settle", "give_up", "poll", "rescan"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and value < float("inf")):
                raise ConfigError(f"watch {name}={value!r} is not allowed; give seconds >= 0.")
        if self.poll == 0 or self.rescan == 0:
            raise ConfigError("watch poll/rescan interval 0 is not allowed; give seconds > 0.")


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    """``watching`` (started: ``note`` says how files are noticed), ``queued`` (a file became
    ready; sent from the detector thread), ``start`` / ``end`` (one image; ``end`` carries the
    outcome and ``latency``, seconds from ready to outputs written)."""

    kind: Literal["watching", "queued", "start", "end"]
    path: Path | None = None
    backlog: int = 0  # ready files waiting in the queue
    settling: int = 0  # files seen that are not complete yet
    outcome: ImageOutcome | None = None
    latency: float | None = None
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class WatchSummary:
    batch: BatchSummary  # the outcomes; ``not_started`` = the backlog left when it stopped
    source: str  # how files were noticed ('inotify', 'polling every 2 s (...)')
    journal: Path
    latencies: tuple[float, ...] = ()  # per processed image, ready -> outputs written


@dataclasses.dataclass(frozen=True)
class _Ready:
    path: Path
    key: FileKey
    complete: bool
    at: float  # time.time() when found ready


_DONE = object()  # the detector's last item in once mode


def watch_folder(
    root: str | os.PathLike[str],
    config: PipelineConfig | None = None,
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    options: WatchOptions | None = None,
    *,
    on_event: Callable[[WatchEvent], None] | None = None,
    cancel: Cancel | None = None,
    record: RunRecorder | None = None,
) -> WatchSummary:
    """Watch ``root`` (recursively) and segment each new image once complete (module docstring).
    Returns when ``cancel`` is set (after the image in flight) or, with ``options.once``, when
    the files present at the start are done. ``record`` (``batch.run_record.start_run_record``,
    tool 'cp3rt watch') gets the nets once open, every image as it ends and the session's summary."""
    root = Path(root)
    config, run, options = config or PipelineConfig(), run or RunConfig(), options or WatchOptions()
    outputs = outputs or OutputOptions()
    check_folders(root, outputs)
    if outputs.out_dir is not None:
        outputs = dataclasses.replace(outputs, mirror_root=Path(os.path.abspath(root)))
    cancel = cancel or Cancel()
    emit = on_event or (lambda _e: None)
    finder = Finder(root, options.patterns, skip=outputs.out_dir)
    t0 = time.perf_counter()
    with Journal(Path(outputs.out_dir or root) / D.WATCH_JOURNAL, root) as journal, \
            Pipeline.from_config(config, run=run) as pipeline:
        if not run.diameter and run.estimate_diameter:
            pipeline.size_model()  # a missing size model fails the watch now, not each image
        if record is not None:
            from cp3rt.runtime.batch.provenance import describe_nets

            record.set_models(describe_nets(pipeline))
            emit = _recording(record, emit)
        detector = _Detector(finder, journal, options, emit)
        detector.start()
        try:
            emit(WatchEvent("watching", root, note=detector.wait_source()))
            done = _work(pipeline, detector, journal, run, outputs, emit, cancel)
        finally:
            detector.halt.set()
            detector.join(timeout=10)
    outcomes, latencies = zip(*done) if done else ((), ())
    batch = BatchSummary(tuple(outcomes), time.perf_counter() - t0, detector.backlog())
    if record is not None:
        record.finish(batch, stopped_by=cancel.reason if cancel.is_set() else None)
    return WatchSummary(batch, detector.source, journal.path, tuple(latencies))


def check_folders(root: Path, outputs: OutputOptions) -> None:
    """Refuse a watched folder that is not one, and an output folder that cannot be one."""
    if not Path(root).is_dir():
        raise InputError(f"{root} is not a folder; cp3rt watch watches a folder (and its subfolders).")
    if outputs.out_dir is not None:
        check_output_dir(outputs.out_dir)


def _recording(record: RunRecorder, emit: Callable[[WatchEvent], None]) -> Callable[[WatchEvent], None]:
    def handler(event: WatchEvent) -> None:
        if event.kind == "end" and event.outcome is not None:
            record.add(event.outcome)
        emit(event)
    return handler


def _work(pipeline: ImageRunner, detector: _Detector, journal: Journal, run: RunConfig,
          outputs: OutputOptions, emit: Callable[[WatchEvent], None],
          cancel: Cancel) -> list[tuple[ImageOutcome, float]]:
    """Take ready files off the queue until cancelled or (once) the detector says done."""
    done: list[tuple[ImageOutcome, float]] = []
    # masks file -> the input that wrote it, this session or (journal) an earlier one
    owners: dict[Path, Path] = {outputs.paths_for(p)["masks"]: p for p in journal.with_outputs()}
    while not cancel.is_set():
        try:
            item = detector.queue.get(timeout=0.1)
        except queue.Empty:
            detector.raise_error()
            continue
        if item is _DONE:
            break
        emit(WatchEvent("start", item.path, detector.backlog(), len(detector.settler)))
        again = journal.changed(item.path, item.key)  # written anew: its old outputs are replaced
        outcome = _one(pipeline, item, run, dataclasses.replace(outputs, overwrite=True) if again else outputs,
                       owners, cancel)
        if outcome is None:  # cancelled while another run held it
            break
        journal.record(item.path, item.key, outcome.status, objects=outcome.n_objects,
                       error=outcome.error, note=outcome.note, ready=item.at,
                       seconds=round(sum(outcome.timings.values()), 4))
        latency = time.time() - item.at
        done.append((outcome, latency))
        emit(WatchEvent("end", item.path, detector.backlog(), len(detector.settler), outcome, latency))
    return done


def _one(pipeline: ImageRunner, item: _Ready, run: RunConfig, outputs: OutputOptions,
         owners: dict[Path, Path], cancel: Cancel) -> ImageOutcome | None:
    masks = outputs.paths_for(item.path)["masks"]
    other = owners.setdefault(masks, item.path)
    if other != item.path:
        return ImageOutcome(item.path, "failed", error=f"{item.path}: its outputs would overwrite those "
                            f"of {other} ({masks.name}); rename one of them.")
    try:
        outcome = _segment(pipeline, item.path, run, outputs, cancel)
        while outcome.status == "claimed":  # another live run computes it: wait, then look again
            if not wait_released(outcome.outputs[0], cancel):
                return None
            outcome = _segment(pipeline, item.path, run, outputs, cancel)
    except Cancelled:  # a huge image abandoned between two blocks (its partial output removed)
        return None
    if outcome.status == "failed" and not item.complete:
        outcome = dataclasses.replace(outcome, error=f"{outcome.error} (the file never became a complete "
                                      "image while unchanged; a copy that died?)")
    return outcome


def _segment(pipeline: ImageRunner, path: Path, run: RunConfig, outputs: OutputOptions,
             cancel: Cancel) -> ImageOutcome:
    """``path`` as ``cp3rt run`` would route it: a huge TIFF (or, in a volume run, a huge volume)
    in blocks, labels to a BigTIFF, so that it never has to fit in memory whole; anything else
    whole. A stop is heard between two blocks of a huge image, and after a whole one."""
    huge, _ = split_inputs([path], volumes=run.is_volume)
    if huge:
        return segment_file(pipeline, path, run, outputs, cancel=cancel)
    return process_file(pipeline, path, run, outputs, lambda _d, _n: None)


class _Detector(threading.Thread):
    """Finds files, waits for each to be complete, queues it (see the module docstring)."""

    def __init__(self, finder: Finder, journal: Journal, options: WatchOptions,
                 emit: Callable[[WatchEvent], None]) -> None:
        super().__init__(name="cp3rt-watch-detector", daemon=True)
        self.finder, self.journal, self.options, self.emit = finder, journal, options, emit
        self.settler = Settler(options.settle, options.give_up)
        self.queue: queue.Queue[object] = queue.Queue()
        self.halt = threading.Event()
        self.source = "starting"
        self._source_known = threading.Event()
        self._handed: dict[Path, FileKey] = {}
        self._error: BaseException | None = None

    def backlog(self) -> int:
        return sum(1 for item in list(self.queue.queue) if item is not _DONE)

    def wait_source(self) -> str:
        self._source_known.wait(30)
        return self.source

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc
        finally:
            self._source_known.set()

    def _loop(self) -> None:
        opts = self.options
        events, why = (None, "asked to poll") if opts.poll else open_events(self.finder.root)
        interval = opts.rescan if events is not None else (opts.poll or D.WATCH_SETTLE)
        self.source = why if events is not None else f"polling every {interval:g} s ({why})"
        self._source_known.set()
        tick = max(0.02, min(0.1, opts.settle / 5))
        try:
            self._look(self.finder.scan())
            last_scan = time.monotonic()
            while not self.halt.is_set():
                if events is not None:
                    self._look(events.drain())
                if time.monotonic() - last_scan >= interval:
                    self._look(self.finder.scan())
                    last_scan = time.monotonic()
                for path, key, complete in self.settler.ready():
                    self._handed[path] = key
                    self.queue.put(_Ready(path, key, complete, time.time()))
                    self.emit(WatchEvent("queued", path, self.backlog(), len(self.settler)))
                if opts.once and not len(self.settler):
                    self.queue.put(_DONE)
                    return
                self.halt.wait(tick)
        finally:
            if events is not None:
                events.close()

    def _look(self, paths: object) -> None:
        for path in paths:  # type: ignore[attr-defined]
            if path.is_dir():
                self._look(self.finder.scan(path))
                continue
            if not self.finder.wanted(path):
                continue
            key = file_key(path)
            if key is None or self._handed.get(path) == key or self.journal.seen(path, key):
                continue
            self.settler.add(path)
