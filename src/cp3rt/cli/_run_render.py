"""Rendering for ``cp3rt run``: a rich progress bar fed by BatchEvents (on a terminal; one plain
line per image when stdout is not one: a log, a pipe, a service), the summary table, and where
the outputs and the run record went."""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import sys
import warnings
from collections.abc import Iterator
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as _RichProgress
from rich.table import Table

from cp3rt.runtime.batch.files import BatchEvent, BatchSummary, ImageOutcome, current_image

_err = Console(stderr=True)
_out = Console()


class Progress:
    """Two bars: images done, and tiles (blocks, for a huge image) of the current one. Failures
    print one line each (and their traceback with ``verbose``); an image another run holds
    prints one line and is counted when it is settled at the end."""

    def __init__(self, total: int, *, verbose: bool = False, notice: str | None = None) -> None:
        self._verbose = verbose
        self._notice = notice  # said when the first image starts (e.g. a first-run compile)
        self._bar = _RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=_err,
            transient=True,
        )
        self._images = self._bar.add_task("images", total=total)
        self._tiles = self._bar.add_task("tiles", total=None, visible=False)

    def __enter__(self) -> Progress:
        self._bar.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.__exit__(et, ev, tb)

    def update(self, event: BatchEvent) -> None:
        if event.kind == "start" and self._notice:
            self._say(escape(self._notice))
            self._notice = None
        if event.kind == "start":
            self._bar.update(self._tiles, description=event.path.name, completed=0, total=None, visible=True)
        elif event.kind == "tiles":
            self._bar.update(self._tiles, completed=event.done_tiles, total=event.total_tiles)
        else:
            self._bar.update(self._tiles, visible=False)
            outcome = event.outcome
            if outcome is not None and outcome.status == "claimed":
                self._say(f"[yellow]waiting[/yellow] {escape(str(outcome.path))}: {escape(outcome.note or '')}; "
                          "checked again at the end")
                return
            self._bar.advance(self._images)
            if outcome is not None and outcome.status == "failed":
                self._say(f"[red]failed[/red] {escape(outcome.error or '')}")
                if self._verbose and outcome.detail:
                    self._say(escape(outcome.detail.rstrip()))

    def _say(self, text: str) -> None:
        self._bar.console.print(text, highlight=False, soft_wrap=True)


class PlainLog:
    """Headless progress: one line per finished image on stdout, ``<status> <file> <objects>
    objects <seconds> s`` (a failure is its ``failed ...`` line on stderr, as on a terminal)."""

    def __init__(self, total: int, *, verbose: bool = False, notice: str | None = None) -> None:
        self._verbose, self._total, self._n, self._notice = verbose, total, 0, notice

    def __enter__(self) -> PlainLog:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, event: BatchEvent) -> None:
        outcome = event.outcome
        if event.kind == "start" and self._notice:
            say(self._notice)
            self._notice = None
        if event.kind != "end" or outcome is None:
            return
        if outcome.status == "claimed":
            _err.print(escape(f"waiting {outcome.path}: {outcome.note or ''}; checked again at the end"),
                       highlight=False, soft_wrap=True)
            return
        self._n += 1
        if outcome.status == "failed":
            _err.print(escape(f"failed {outcome.error or outcome.path}"), highlight=False, soft_wrap=True)
            if self._verbose and outcome.detail:
                _err.print(escape(outcome.detail.rstrip()), highlight=False, soft_wrap=True)
            return
        print(log_line(outcome, self._n, self._total), flush=True)


def log_line(outcome: ImageOutcome, n: int, total: int) -> str:
    """``[3/10] done img.tif 42 objects 0.81 s`` (a skipped image: its outputs existed)."""
    seconds = sum(outcome.timings.values())
    note = f" ({outcome.note})" if outcome.note else ""
    return f"[{n}/{total}] {outcome.status} {outcome.path} {outcome.n_objects} objects {seconds:.2f} s{note}"


def progress(total: int, *, verbose: bool = False, notice: str | None = None) -> Progress | PlainLog:
    """A progress bar on a terminal, plain log lines otherwise; ``notice`` is said as the first
    image starts."""
    kind = Progress if sys.stdout.isatty() else PlainLog
    return kind(total, verbose=verbose, notice=notice)


def say(text: str) -> None:
    """One plain line on stderr (a notice before or after the run)."""
    _err.print(escape(text), highlight=False, soft_wrap=True)


def wrote(out_dir: os.PathLike[str] | None, record: os.PathLike[str] | None, errors: list[str]) -> None:
    """Where the outputs and the run record went (stdout, after the summary)."""
    where = os.path.abspath(out_dir) if out_dir is not None else "next to each input"
    _out.print(escape(f"outputs: {where}"), highlight=False, soft_wrap=True)
    if record is not None and not errors and os.path.isfile(record):
        _out.print(escape(f"run record: {record}"), highlight=False, soft_wrap=True)
    for line in dict.fromkeys(errors):
        say(f"warning: {line}")


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """While a run lasts, a Python warning is one line naming the image it is about
    ('warning: <file>: <message>', no source line), and tifffile's own log lines are dropped
    (each problem they describe also reaches cp3rt as a refused file, reported once)."""
    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' API
        where = current_image()
        text = " ".join(str(message).split())
        _err.print(escape(f"warning: {where}: {text}" if where else f"warning: {text}"),
                   highlight=False, soft_wrap=True)

    quiet = logging.NullHandler()
    tiff_log = logging.getLogger("tifffile")
    tiff_log.addHandler(quiet)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            yield
    finally:
        tiff_log.removeHandler(quiet)


def _diameters(values: list[float]) -> str:
    """The diameter(s) used: one number, or the range and median when the size model chose per image."""
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    if hi - lo < 0.05:
        return f"{lo:.1f}"
    return f"{lo:.1f}-{hi:.1f} (median {statistics.median(values):.1f})"


def summary(result: BatchSummary, *, stopped_by: str | None = None) -> None:
    """Print the end-of-run tables (failures were already listed one line each while running);
    ``stopped_by`` names the signal that stopped the run early."""
    table = Table(title="cp3rt run", show_header=True, header_style="bold")
    table.add_column("images done", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("objects", justify="right")
    table.add_column("diameter px", justify="right")
    table.add_column("total s", justify="right")
    table.add_row(
        str(result.count("done")), str(result.count("skipped")), str(result.count("failed")),
        str(result.n_objects), _diameters(result.diameters()), f"{result.seconds:.2f}",
    )
    _out.print(table)
    stages = Table(title="seconds per stage (all images)", show_header=True, header_style="bold")
    per_stage = result.stage_seconds()
    for name in per_stage:
        stages.add_column(name, justify="right")
    stages.add_row(*(f"{v:.2f}" for v in per_stage.values()))
    _out.print(stages)
    by_other = sum(1 for o in result.outcomes if o.note == "done by another run")
    if by_other:
        _err.print(f"{by_other} of the skipped images were done by another cp3rt run at the same time.",
                   highlight=False)
    if stopped_by:
        left = result.not_started + result.count("claimed")
        _err.print(f"stopped by {stopped_by}: the images in flight were finished or abandoned (no partial "
                   f"files left); {left} not done. Run the same command again to resume.", highlight=False)
