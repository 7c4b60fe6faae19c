"""``cp3rt watch``: segment images as they are written into a folder tree, engines opened once.

The command takes ``cp3rt run``'s own options (the same typer definitions, read from
``cli.run.run``'s signature, so the two never drift) minus those that name inputs or route huge
images, adds the watch options, builds the configs, calls
:func:`cp3rt.runtime.batch.watch.watch_folder` and renders its events
(``cli._watch_render``).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from cp3rt import defaults as D

_EPILOG = f"""
**Examples**

Segment every image an acquisition writes under `acq/` (subfolders too), masks into `masks/`:

    cp3rt watch acq/ --model cyto3 --diameter 25 --out masks/

A network share (no file events arrive from other machines): look every 5 s; only channel-1 files:

    cp3rt watch /mnt/scope/plate7 --poll 5 --pattern "*_w1*.tif" --out /data/masks/plate7

**Notes**

- A file is read only when it is complete: its size and modification time unchanged for
  --settle seconds (default {D.WATCH_SETTLE:g}) and it parses as a whole image (a TIFF's pages and strips
  all inside the file, a PNG's end chunk...). A file still incomplete after --give-up seconds
  unchanged (default {D.WATCH_GIVE_UP:g}) is processed anyway and reported as failed.
- Nothing is dropped: files that arrive faster than they are segmented wait in order; the
  backlog is shown (a status line on a terminal, each log line otherwise).
- `{D.WATCH_JOURNAL}` in the output folder records every file's fate (done, skipped, failed, with
  its size and time); a restarted watch skips what it lists and does the rest. A file written
  again later is done again; a failed file is not retried until it changes. Each session also
  writes a run record `cp3rt_watch_<UTC time>.json` (models and sha256, parameters, versions,
  per-image seconds).
- With --out the watched tree is mirrored under it (`acq/A1/t01.tif` ->
  `masks/A1/t01_cp_masks.tif`); without it outputs go next to each image. Outputs are written
  atomically; a bad file is one `failed` line and the watch goes on.
- Ctrl-C (SIGINT) or SIGTERM stops after the image in flight (no partial file is left); exit code
  130 / 143. --once processes what is there and exits (1 if a file failed).
- A TIFF over {D.HUGE_IMAGE_SIDE} px a side is segmented in blocks, as `cp3rt run` does (labels to a
  BigTIFF `<stem>_cp_masks.tif`, masks only; a stop is heard between two blocks); every other
  file is read whole. Zarr folders, plates and clusters are `cp3rt run`'s.
"""

# `cp3rt run` options that do not apply to a watched folder.
_NOT_FOR_WATCH = ("inputs", "cluster", "blocks", "block_size", "workers", "dynamics_threads")  # one image at a time
# run option -> config field, where the names differ; chan/chan2/niter/table are converted below.
_FIELD = {"model": "segment", "compile_nets": "compile", "do_3d": "do_3D", "out": "out_dir", "threads": "cpu_threads"}


def register(app: typer.Typer) -> None:
    app.command(
        "watch",
        help="Segment images as they are written into a folder tree (engines stay open).",
        epilog=_EPILOG,
        no_args_is_help=True,
    )(watch)


def _run_options() -> list[inspect.Parameter]:
    from cp3rt.cli.run import run

    params = inspect.signature(run, eval_str=True).parameters.values()
    return [p for p in params if p.name not in _NOT_FOR_WATCH]


def _watch(
    folder: Path = typer.Argument(..., metavar="DIR", help="Folder to watch (subfolders too)."),
    pattern: Optional[list[str]] = typer.Option(None, "--pattern", help="Only files whose name (or path under DIR) matches this glob; repeat for several. Default: every .tif/.tiff/.flex/.png/.jpg/.jpeg."),
    poll: Optional[float] = typer.Option(None, "--poll", min=0.01, metavar="SECONDS", help="Rescan the folder every SECONDS instead of listening to file events (network shares)."),
    settle: float = typer.Option(D.WATCH_SETTLE, "--settle", min=0.0, metavar="SECONDS", help="A file must keep its size and time this long (and parse whole) before it is read; set it above the longest pause of software that closes a multi-page TIFF between pages."),
    give_up: float = typer.Option(D.WATCH_GIVE_UP, "--give-up", min=0.0, metavar="SECONDS", help="A file unchanged this long that still does not parse whole is processed anyway (and reported)."),
    once: bool = typer.Option(False, "--once", help="Process the files present (once complete) and exit."),
) -> None:
    """The watch options; the run options are appended to this signature (see ``watch``)."""


def watch(**options: Any) -> None:
    from cp3rt.runtime.batch.watch import WatchOptions

    watch_opts = WatchOptions(patterns=tuple(options.pop("pattern") or ()), settle=options.pop("settle"),
                              give_up=options.pop("give_up"), poll=options.pop("poll"), once=options.pop("once"))
    folder = options.pop("folder")
    config, run_cfg, outputs = build_configs(options)
    _execute(folder, config, run_cfg, outputs, watch_opts)


watch.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [*inspect.signature(_watch, eval_str=True).parameters.values(), *_run_options()])


def build_configs(options: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(PipelineConfig, RunConfig, OutputOptions) from ``cp3rt run``'s option values by name;
    an option that is no field of the three raises (a new run option needs a line here)."""
    from cp3rt.runtime.batch.object_outputs import table_format
    from cp3rt.runtime import OutputOptions, PipelineConfig, RunConfig

    values = {_FIELD.get(k, k): v for k, v in options.items()}
    values["channels"] = (values.pop("chan"), values.pop("chan2"))
    values["niter"] = values["niter"] or None
    values["table"] = table_format(values["table"])
    parts = []
    for cls in (PipelineConfig, RunConfig, OutputOptions):
        names = {f.name for f in dataclasses.fields(cls)}
        parts.append(cls(**{k: values.pop(k) for k in list(values) if k in names}))
    if values:
        raise TypeError(f"cp3rt watch: run options without a config field: {sorted(values)}")
    return tuple(parts)


def _execute(folder: Path, config: Any, run_cfg: Any, outputs: Any, watch_opts: Any) -> None:
    from cp3rt.cli import _run_render
    from cp3rt.cli import _watch_render as render
    from cp3rt.cli._signals import cancel_on_signals, exit_code
    from cp3rt.cli.app import command_line, is_verbose
    from cp3rt.runtime.batch.cancel import Cancel
    from cp3rt.runtime.batch.run_record import start_run_record
    from cp3rt.runtime.batch.watch import check_folders, watch_folder

    check_folders(folder, outputs)  # before the run record is written into one of them
    cancel = Cancel()
    record = start_run_record(config, None, outputs.out_dir or folder, run=run_cfg, outputs=outputs,
                              tool="cp3rt watch", extra_parameters={"watch": dataclasses.asdict(watch_opts)},
                              command=command_line())
    with _run_render.one_line_warnings(), cancel_on_signals(cancel) as got, \
            render.Status(folder, verbose=is_verbose()) as status:
        summary = watch_folder(folder, config, run_cfg, outputs, watch_opts, on_event=status.update,
                               cancel=cancel, record=record)
    render.summary(summary, stopped_by=cancel.reason)
    if got:
        raise typer.Exit(exit_code(got[0]))
    if watch_opts.once and not summary.batch.ok:
        raise typer.Exit(1)
