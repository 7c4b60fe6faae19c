"""``cp3rt export``: turn a Cellpose v3 weight file or zoo model into an ONNX file + manifest.

Only flag handling and rendering here; the work is :func:`cp3rt.export.to_onnx.export_onnx`.
torch is imported inside the command, so ``cp3rt --help`` stays torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cp3rt.defaults import EXPORT_PRECISION, ONNX_OPSET

_EPILOG = """
**Examples**

    cp3rt export cyto3 --out engines/
    cp3rt export ~/models/my_finetuned_cyto3 --out engines/ --precision fp16

**Notes**

- Writes `<name>.<precision>.onnx` and its manifest `<name>.<precision>.onnx.json`.
- The graph takes `image` (B, nchan, H, W) float32 with any batch and any H, W that are
  multiples of 8; segmentation nets give `flows` and `style`, restoration nets `restored`.
- fp16 files keep float32 inputs/outputs and the style path in fp32 (for TensorRT strongly
  typed builds). Each export is checked against the torch net on onnxruntime CPU.
- BatchNorms are folded into the convolutions and style layers unless `--no-fold-bn`: the same
  function (within float rounding) with about half the normalisation passes.
- Zoo models use the zoo's diam_mean (17 for nuclei models, else 30); weight files use the
  diameters stored in the file.
"""


def register(app: typer.Typer) -> None:
    app.command(
        "export",
        help="Export a Cellpose v3 model (zoo name or weight file) to ONNX with a manifest.",
        epilog=_EPILOG,
        no_args_is_help=True,
    )(export)


def export(
    model: str = typer.Argument(..., metavar="MODEL", help="Zoo name (cyto3, denoise_cyto3, ...) or a Cellpose v3 weight file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if missing)."),
    precision: str = typer.Option(EXPORT_PRECISION, "--precision", help="fp32 | fp16."),
    opset: int = typer.Option(ONNX_OPSET, "--opset", help="ONNX opset version."),
    name: Optional[str] = typer.Option(None, "--name", help="Output file name (default: MODEL.PRECISION.onnx, MODEL without folders)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare with the torch net on onnxruntime CPU."),
    fold_bn: bool = typer.Option(True, "--fold-bn/--no-fold-bn", help="Fold BatchNorms into convolutions and style layers (same function, fewer passes over the activations)."),
) -> None:
    from cp3rt._lazy import require
    from cp3rt.zoo.resolve import check_torch_file

    weights, builtin = _resolve(model)
    check_torch_file(weights)  # "not a weight file" before "install torch"
    require("torch", "cp3rt export")
    from cp3rt.export.to_onnx import export_onnx

    result = export_onnx(
        weights,
        out,
        precision=precision,
        opset=opset,
        name=name,
        source_model=model if builtin else None,
        verify=verify,
        fold_bn=fold_bn,
    )
    m = result.manifest
    typer.echo(f"wrote {result.onnx_path} ({m.role}, {m.precision}, nchan {m.nchan}, opset {m.opset})")
    typer.echo(f"wrote {result.manifest_path}")
    if result.max_abs_error:
        errs = ", ".join(f"{k} {v:.2g}" for k, v in result.max_abs_error.items())
        typer.echo(f"max abs difference to the torch net: {errs}")


def _resolve(model: str) -> tuple[Path, bool]:
    """(weight file, is a built-in zoo model). An existing path always counts as a custom file."""
    path = Path(model).expanduser()
    if path.exists():
        return path, False
    try:
        from cp3rt.zoo.resolve import resolve_weights
    except ModuleNotFoundError as exc:
        if exc.name != "cp3rt.zoo.resolve":
            raise
        from cp3rt.errors import ModelNotFoundError

        raise ModelNotFoundError(
            f"{model} is not an existing weight file, and this cp3rt has no model zoo to look "
            "the name up in."
        ) from exc
    return Path(resolve_weights(model)), True
