"""The run record: one JSON file beside the outputs of every ``cp3rt run`` (and ``watch`` session)
saying what ran: models with the sha256 of their weight and engine files, backend, precision,
every parameter, package versions, the host, and per image its status, objects and seconds.

Usage (``run_inputs(..., record=...)`` does the middle part itself)::

    recorder = start_run_record(config, describe_nets(pipeline), out_dir, run=run, outputs=outputs)
    recorder.add(outcome)          # after each image (written now and then, never half: at most
                                   # every 2 s, and at most once per 50x its last write's time)
    recorder.finish(summary)       # complete: True, the summary's outcomes are the last word

The file is ``cp3rt_run_<UTC time>.json`` (``cp3rt_watch_...`` for ``tool="cp3rt watch"``); it
appears with the first finished image (a run refused before any image leaves none) or an explicit
``write()``, and is always replaced whole through a temporary file and a rename (``cp3rt._fs``), so
a reader - or a killed run - never sees half a record; a record whose ``complete`` is false is from
a run that was stopped or is still going. A record that cannot be written (read-only folder, full
disk) never stops the run: ``add`` / ``finish`` keep the reason in ``errors``; ``write`` raises.
What the nets are and their hashes: ``batch.provenance``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cp3rt._fs import atomic_write_bytes
from cp3rt.runtime.batch.provenance import (
    ModelInfo,
    describe_config,
    describe_net,
    describe_nets,
    file_sha256,
    host_info,
    package_versions,
)
from cp3rt.runtime.batch.record_files import PREFIX, remove_dead_partials, writer_tag

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.batch.files import BatchEvent, BatchSummary, ImageOutcome, OutputOptions
    from cp3rt.runtime.config import PipelineConfig, RunConfig

__all__ = ["ModelInfo", "RunRecord", "RunRecorder", "describe_config", "describe_net", "describe_nets",
           "file_sha256", "host_info", "package_versions", "record_dir", "record_path", "start_run_record"]

SCHEMA = "cp3rt.run_record/1"
FLUSH_SECONDS = 2.0  # add() rewrites the file at most this often; finish() always does
# ... and, as the record grows, at most once per this many times its last write took: a day-long
# watch must not spend its time rewriting (50k images: 0.8 s a write, benchmarks/results/run_record.md).
FLUSH_COST_FACTOR = 50


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What a run is, written at its top: everything but the per-image entries."""

    tool: str
    started: str  # UTC, ISO 8601
    command: tuple[str, ...]
    backend: str  # as asked for (auto...); each model says what it opened
    precision: str
    models: tuple[ModelInfo, ...]
    parameters: Mapping[str, Any]
    versions: Mapping[str, str | None]
    host: Mapping[str, Any]
    out_dir: str

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["models"] = [dataclasses.asdict(m) for m in self.models]
        return {"schema": SCHEMA, **data}


def _plain(value: Any) -> Any:
    """A config value as JSON: dataclasses as dicts, paths and enums as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def outcome_entry(outcome: ImageOutcome) -> dict[str, Any]:
    """One image's line of the record: file, status, objects, the diameter it was segmented at
    (px; None when not computed in this run), seconds (and per stage)."""
    return {"file": os.fspath(outcome.path), "status": outcome.status, "objects": int(outcome.n_objects),
            "diameter": None if outcome.diameter is None else round(float(outcome.diameter), 4),
            "seconds": round(sum(outcome.timings.values()), 6),
            "timings": {k: round(float(v), 6) for k, v in outcome.timings.items()},
            "outputs": [os.fspath(p) for p in outcome.outputs], "error": outcome.error, "note": outcome.note}


def record_json(head: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> str:
    """The record's text: ``head`` indented, then ``"images"`` with one entry per line. The same
    JSON as ``json.dumps(..., indent=2)`` gives, but each entry goes through the C encoder
    (which ``indent`` turns off): half the time at 10k images, and a line per image to grep."""
    top = json.dumps(dict(head), indent=2, allow_nan=False)
    lines = ",\n".join("    " + json.dumps(e, allow_nan=False) for e in entries)
    return f'{top[:-2]},\n  "images": [' + (f"\n{lines}\n  ]" if entries else "]") + "\n}\n"


# ---- the recorder -----------------------------------------------------------------------------
class RunRecorder:
    """Collects per-image entries and keeps the record file up to date (see the module docstring).
    Thread-safe: ``add`` may be called from worker threads."""

    def __init__(self, record: RunRecord, path: Path, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.record = record
        self.path = path
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flush = flush_seconds
        self._last = 0.0
        self._write_seconds = 0.0  # how long the last write took
        self._extra: dict[str, Any] = {}
        self.errors: list[str] = []  # why a write failed (add / finish never raise for it)
        self._write_lock = threading.Lock()
        self._published = False

    def set_models(self, models: Sequence[ModelInfo]) -> None:
        """Name the nets once they are open (when the record was started before them)."""
        with self._lock:
            self.record = dataclasses.replace(self.record, models=tuple(models))

    def add(self, outcome: ImageOutcome) -> None:
        """One image's outcome; the file is rewritten if the last write is ``flush_seconds`` old."""
        with self._lock:
            self._entries.append(outcome_entry(outcome))
            elapsed = time.monotonic() - self._last
            # flush_seconds=0: every add writes (strict callers, tests); else the growing interval
            due = elapsed >= self._flush and (self._flush == 0 or elapsed >= FLUSH_COST_FACTOR * self._write_seconds)
        if due:
            self._try_write()

    def listen(self, on_event: Callable[[BatchEvent], None] | None) -> Callable[[BatchEvent], None]:
        """An ``on_event`` for the batch runners that adds each finished image, then calls ``on_event``."""
        def handler(event: BatchEvent) -> None:
            if event.kind == "end" and event.outcome is not None and event.outcome.status != "claimed":
                self.add(event.outcome)
            if on_event is not None:
                on_event(event)
        return handler

    def write(self, *, complete: bool = False, summary: Mapping[str, Any] | None = None) -> Path:
        """Replace the file with the record so far (atomically)."""
        with self._write_lock:  # one writer at a time, snapshot taken inside: the newest lands last
            t0 = time.monotonic()
            with self._lock:
                head = {**self.record.to_dict(), "complete": complete,
                        "finished": _utc_now().isoformat(timespec="seconds") if complete else None,
                        **self._extra, "summary": summary}
                entries = list(self._entries)
                self._last = t0
            text = record_json(head, entries)
            if self._published:
                atomic_write_bytes(self.path, text.encode("utf-8"), owner=writer_tag())
            else:  # first write: never onto another run's record of the same second
                self.path = _publish_new(self.path, text.encode("utf-8"))
                self._published = True
            self._write_seconds = time.monotonic() - t0
        return self.path

    def finish(self, summary: BatchSummary | None = None, *, stopped_by: str | None = None) -> Path:
        """The last write: ``complete`` true; with ``summary`` its outcomes replace the entries
        (images another run finished are settled there) and its totals are added."""
        totals = None
        if summary is not None:
            with self._lock:
                self._entries = [outcome_entry(o) for o in summary.outcomes]
            totals = {status: summary.count(status) for status in ("done", "skipped", "failed", "claimed")}
            totals.update(objects=summary.n_objects, seconds=round(summary.seconds, 6),
                          not_started=summary.not_started)
        with self._lock:
            self._extra["stopped_by"] = stopped_by
        return self._try_write(complete=stopped_by is None, summary=totals)

    def _try_write(self, **kw: Any) -> Path:
        try:
            return self.write(**kw)
        except OSError as exc:
            self.errors.append(f"{self.path}: the run record cannot be written ({exc.strerror or exc}).")
            return self.path

    def __len__(self) -> int:
        return len(self._entries)


def _publish_new(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, or to the next free name if another process has just taken it:
    a complete temporary file (``cp3rt._fs`` naming) is hard-linked to the name - atomic, and
    refused when the name exists; where links are not supported, renamed onto a free name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{writer_tag()}.", suffix=".part.json", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        while True:
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                path = record_path(path.parent, base=path)
            except OSError:  # no hard links here (some network shares)
                os.replace(tmp, path)
                return path
    finally:
        tmp.unlink(missing_ok=True)


_TAKEN = re.compile(r"-\d+$")


def record_path(out_dir: str | os.PathLike[str], tool: str = "cp3rt run", when: _dt.datetime | None = None,
                *, base: Path | None = None) -> Path:
    """A free ``cp3rt_<run|watch>_<YYYYmmddTHHMMSSZ>.json`` in ``out_dir`` (``-2``, ``-3``... when
    taken); with ``base`` (a name already taken) the next free one of that name."""
    if base is None:
        kind = tool.split()[-1].replace("-", "_")
        stamp = (when or _utc_now()).strftime("%Y%m%dT%H%M%SZ")
        stem = f"{PREFIX}{kind}_{stamp}"
    else:
        stem = _TAKEN.sub("", base.name.removesuffix(".json"))
    path, n = Path(out_dir) / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = Path(out_dir) / f"{stem}-{n}.json"
    return path


def start_run_record(
    config: PipelineConfig,
    nets_info: Sequence[ModelInfo] | None,
    out_dir: str | os.PathLike[str],
    *,
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    tool: str = "cp3rt run",
    command: Sequence[str] | None = None,
    extra_parameters: Mapping[str, Any] | None = None,
    flush_seconds: float = FLUSH_SECONDS,
) -> RunRecorder:
    """Start the record of a run whose outputs go to ``out_dir`` (nothing is written yet);
    ``nets_info`` may be None and set later (``set_models``). ``command`` defaults to this
    process's ``sys.argv``; ``flush_seconds=0`` rewrites the file after every image."""
    started = _utc_now()
    remove_dead_partials(out_dir)  # before this run's own writes: what a killed run left
    parameters = {"pipeline": _plain(config), "run": _plain(run) if run is not None else None,
                  "outputs": _plain(outputs) if outputs is not None else None, **_plain(extra_parameters or {})}
    record = RunRecord(
        tool=tool, started=started.isoformat(timespec="seconds"),
        command=tuple(command if command is not None else sys.argv), backend=config.backend,
        precision=config.precision, models=tuple(nets_info or ()), parameters=parameters,
        versions=package_versions(), host=host_info(), out_dir=os.path.abspath(out_dir),
    )
    return RunRecorder(record, record_path(out_dir, tool, started), flush_seconds=flush_seconds)


def record_dir(out_dir: str | os.PathLike[str] | None, inputs: Sequence[str | os.PathLike[str]]) -> Path:
    """Where a run's record goes: ``out_dir``, else the folder the inputs have in common (their
    outputs are written next to them), else the current folder."""
    if out_dir is not None:
        return Path(out_dir)
    folders = [os.path.dirname(os.path.abspath(p)) for p in inputs]
    try:
        return Path(os.path.commonpath(folders)) if folders else Path.cwd()
    except ValueError:  # different drives (Windows)
        return Path(folders[0])
