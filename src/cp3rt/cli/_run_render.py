"""Rendering for ``cp3rt run``: a rich progress bar fed by BatchEvents, and the summary table."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as _RichProgress
from rich.table import Table

from cp3rt.runtime.batch.files import BatchEvent, BatchSummary

_err = Console(stderr=True)
_out = Console()


class Progress:
    """Two bars: images done, and tiles of the current image. Failures print one line each."""

    def __init__(self, total: int) -> None:
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
        if event.kind == "start":
            self._bar.update(self._tiles, description=event.path.name, completed=0, total=None, visible=True)
        elif event.kind == "tiles":
            self._bar.update(self._tiles, completed=event.done_tiles, total=event.total_tiles)
        else:
            self._bar.advance(self._images)
            self._bar.update(self._tiles, visible=False)
            outcome = event.outcome
            if outcome is not None and outcome.status == "failed":
                self._bar.console.print(
                    f"[red]failed[/red] {escape(outcome.error or '')}", highlight=False, soft_wrap=True
                )


def summary(result: BatchSummary) -> None:
    """Print the end-of-run tables (failures were already listed one line each while running)."""
    table = Table(title="cp3rt run", show_header=True, header_style="bold")
    table.add_column("images done", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("objects", justify="right")
    table.add_column("total s", justify="right")
    table.add_row(
        str(result.count("done")), str(result.count("skipped")), str(result.count("failed")),
        str(result.n_objects), f"{result.seconds:.2f}",
    )
    _out.print(table)
    stages = Table(title="seconds per stage (all images)", show_header=True, header_style="bold")
    per_stage = result.stage_seconds()
    for name in per_stage:
        stages.add_column(name, justify="right")
    stages.add_row(*(f"{v:.2f}" for v in per_stage.values()))
    _out.print(stages)
