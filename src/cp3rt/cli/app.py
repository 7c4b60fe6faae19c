"""The ``cp3rt`` command: a typer app assembled from one module per command.

Each module in ``_COMMAND_MODULES`` defines ``register(app)``. Command modules import heavy
libraries inside the command function only, so ``cp3rt --help`` stays fast and torch-free.
"""

from __future__ import annotations

import importlib
import sys

import typer

from cp3rt._version import __version__
from cp3rt.errors import Cp3rtError

# Order = order in `cp3rt --help`.
_COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "watch",
    "warmup",
    "export",
    "models",
    "info",
    "eval",
    "degrade",
    "train",
    "build", "check",
)

app = typer.Typer(
    name="cp3rt",
    help=(
        "Run Cellpose 3 restoration + segmentation fast, outside PyTorch.\n\n"
        "Typical use: `cp3rt run images/ --model cyto3 --restore denoise_cyto3 --out masks/`.\n"
        "Models are Cellpose zoo names or weight-file paths; `cp3rt models` lists them."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

_state: dict = {"verbose": False, "argv": None}


def is_verbose() -> bool:
    """Whether ``-v`` was given (set by the root callback); commands that show more with it ask here."""
    return _state["verbose"]


def command_line() -> list[str]:
    """The command as typed (``cp3rt`` and its arguments), for the run record."""
    args = _state["argv"] if _state["argv"] is not None else sys.argv[1:]
    return ["cp3rt", *map(str, args)]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cp3rt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show full tracebacks for errors."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    _state["verbose"] = verbose


def _register_commands() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"cp3rt.cli.{name}").register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: user errors become one line on stderr and a non-zero code.

    Typer's standalone mode handles usage errors (exit 2), --help and Ctrl-C itself and ends
    with SystemExit; only our own Cp3rtError needs translating here.
    """
    _state["argv"] = list(argv) if argv is not None else None
    try:
        app(args=argv, standalone_mode=True)
    except Cp3rtError as err:
        if _state["verbose"]:
            raise
        typer.echo(f"error: {err}", err=True)
        return err.exit_code
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
