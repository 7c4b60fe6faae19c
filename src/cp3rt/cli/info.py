"""``cp3rt info``: versions, onnxruntime providers, and which backends load here (and why not).

Rendering only; the facts come from :mod:`cp3rt.engines.probe`, which never imports torch.
"""

from __future__ import annotations

import typer

_EPILOG = """
**Examples**

    cp3rt info
    cp3rt info --json > env.json

**Notes**

- Backends are listed in the order `--backend auto` tries them (torch is only used when asked for).
- GPU providers are tested by opening a tiny model with them: a provider can be listed and
  still not work (missing driver or CUDA libraries).
"""


def register(app: typer.Typer) -> None:
    app.command("info", help="Show versions and which inference backends work on this machine.", epilog=_EPILOG)(info)


def info(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    import json

    from cp3rt.engines.probe import backend_report, onnxruntime_providers, versions

    facts = versions()
    providers = onnxruntime_providers()
    backends = backend_report()
    if as_json:
        data = {
            "versions": facts,
            "onnxruntime_providers": providers,
            "backends": [{"name": b.name, "available": b.available, "detail": b.detail} for b in backends],
        }
        typer.echo(json.dumps(data, indent=2))
        return

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    table = Table("component", "version", box=None, show_edge=False, pad_edge=False, header_style="bold")
    for name, version in facts.items():
        table.add_row(name, version or "not installed")
    console.print(table)
    console.print(f"\nonnxruntime providers: {', '.join(providers) or 'none'}", highlight=False)
    table = Table("backend", "loads", "detail", box=None, show_edge=False, pad_edge=False, header_style="bold")
    for status in backends:
        table.add_row(status.name, "yes" if status.available else "no", escape(status.detail))
    console.print()
    console.print(table)
