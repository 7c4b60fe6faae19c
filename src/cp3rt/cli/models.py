"""``cp3rt models``: the Cellpose v3 zoo and where each weight file is present on this machine.

Flag handling and rendering only; the data comes from :func:`cp3rt.zoo.inventory` and
downloads from :func:`cp3rt.zoo.resolve_weights`.
"""

from __future__ import annotations

from typing import Optional

import typer

_EPILOG = """
**Examples**

    cp3rt models
    cp3rt models --role restore
    cp3rt models --download cyto3 --download denoise_cyto3

**Notes**

- Weight files are looked for in `$CELLPOSE_LOCAL_MODELS_PATH`, `~/.cellpose/models` and
  cp3rt's cache (`$CP3RT_CACHE_DIR/models`), in that order; downloads go to cp3rt's cache.
- `CP3RT_ZOO_URL` points downloads at a mirror (a URL with `{basename}`, or a folder URL).
"""

_ROLES = ("segment", "restore")


def register(app: typer.Typer) -> None:
    app.command(
        "models",
        help="List the Cellpose v3 models cp3rt knows and which are present here; download some.",
        epilog=_EPILOG,
    )(models)


def models(
    role: Optional[str] = typer.Option(None, "--role", help="Only 'segment' or 'restore' models."),
    download: list[str] = typer.Option(
        [], "--download", "-d", metavar="NAME", help="Download this model (and its size model) first; repeatable."
    ),
) -> None:
    from rich.console import Console

    from cp3rt.errors import ConfigError
    from cp3rt.zoo import inventory, search_dirs

    if role is not None and role not in _ROLES:
        raise ConfigError(f"--role is {role!r}; allowed: {', '.join(_ROLES)}.")
    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console = Console(width=200)
    for name in download:
        _download(console, name)
    console.print(_table(inventory(role)))
    dirs = ", ".join(f"{kind} = {folder}" for kind, folder in search_dirs())
    console.print(f"Searched, in order: {dirs}.", highlight=False, soft_wrap=True)


def _download(console: object, name: str) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from cp3rt.zoo import ZOO, resolve_size_model, resolve_weights

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console, transient=True) as bar:  # type: ignore[arg-type]
        task = bar.add_task(name, total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        path = resolve_weights(name, progress=progress)
        if name in ZOO and ZOO.get(name).size_model is not None:
            resolve_size_model(name, progress=progress)
    console.print(f"{name}: {path}", highlight=False)  # type: ignore[attr-defined]


def _table(rows: list) -> object:  # list[tuple[ModelInfo, Location | None]]
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in ("name", "role", "diam_mean", "channels", "size model", "local copy"):
        table.add_column(column, no_wrap=True)
    table.add_column("notes")
    for info, location in rows:
        table.add_row(
            info.name,
            info.role,
            f"{info.diam_mean:g}",
            "from file" if info.nchan is None else str(info.nchan),
            "yes" if info.size_model else "-",
            "not downloaded" if location is None else location.kind,
            escape(info.notes) if info.supported else f"[red]{escape(info.notes)} (refused)[/red]",
        )
    return table
