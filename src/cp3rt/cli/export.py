"""``cp3rt export``: turn a Cellpose v3 weight file or zoo model into an ONNX file + manifest.

Only flag handling and rendering here; the work is :func:`cp3rt.export.to_onnx.export_onnx`.
torch is imported inside the command, so ``cp3rt --help`` stays torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cp3rt.defaults import (
    EXPORT_PRECISION, INT8_ACTIVATIONS, INT8_METHOD, INT8_MIN_AP50, INT8_MIN_AP75, ONNX_OPSET,
)

_EPILOG = """
**Examples**

    cp3rt export cyto3 --out engines/
    cp3rt export ~/models/my_finetuned_cyto3 --out engines/ --precision fp16
    cp3rt export cp3rt_nuclei --precision int8 --calibrate calib/ --holdout check/ --diameter 46 --out engines/
    cp3rt export cp3rt_denoise_nuclei --precision int8 --calibrate calib/ --segment-with cp3rt_nuclei --out engines/

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
- int8 (`--precision int8 --calibrate DIR`): static QDQ quantization (per-channel int8 weights)
  calibrated on the tiles `cp3rt run` feeds the net from the images in DIR (a handful, like the
  images it will see; same --diameter). The int8 pipeline's masks are matched with the fp32
  pipeline's on those images and on `--holdout` images; below the bar (AP@0.5 >= 0.98 and
  AP@0.75 >= 0.95 unless `--min-ap50/--min-ap75` say otherwise) it refuses and writes nothing.
  For a restoration net the masks are those of restore -> segment with `--segment-with MODEL`
  (fp32); a segmentation net used after a restoration takes `--restore-with MODEL`. A
  restoration net keeps the adds, scales and style layers of its last decoder level and output
  head in fp32 (`--keep-fp32` to choose). The
  manifest records the images (names, sha256), the method and the accuracy. Run it with
  `cp3rt run --model engines/NAME.int8.onnx` (onnxruntime CPU).
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
    precision: str = typer.Option(EXPORT_PRECISION, "--precision", help="fp32 | fp16 | int8 (needs --calibrate)."),
    opset: int = typer.Option(ONNX_OPSET, "--opset", help="ONNX opset version."),
    name: Optional[str] = typer.Option(None, "--name", help="Output file name (default: MODEL.PRECISION.onnx, MODEL without folders)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare with the torch net on onnxruntime CPU."),
    fold_bn: bool = typer.Option(True, "--fold-bn/--no-fold-bn", help="Fold BatchNorms into convolutions and style layers (same function, fewer passes over the activations)."),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", help="int8: folder of calibration images (a handful of your own)."),
    holdout: Optional[Path] = typer.Option(None, "--holdout", help="int8: folder of images not used for calibration, checked against the bar too."),
    method: str = typer.Option(INT8_METHOD, "--calibration-method", help="int8: minmax | entropy | percentile."),
    activations: str = typer.Option(INT8_ACTIVATIONS, "--activations", help="int8: u8 (asymmetric; fastest on onnxruntime CPU) | s8 (symmetric, zero point 0, as TensorRT takes it)."),
    diameter: Optional[float] = typer.Option(None, "--diameter", help="int8: object diameter in pixels for the calibration runs (default: the model's estimate/rule)."),
    segment_with: Optional[str] = typer.Option(None, "--segment-with", help="int8 of a restoration net: the segmentation model (fp32) whose masks judge it (restore -> segment)."),
    restore_with: Optional[str] = typer.Option(None, "--restore-with", help="int8 of a segmentation net: the restoration model (fp32) run in front of it, as in `cp3rt run --restore`."),
    min_ap50: float = typer.Option(INT8_MIN_AP50, "--min-ap50", help="int8: refuse below this AP@0.5 of int8 vs fp32 masks."),
    min_ap75: float = typer.Option(INT8_MIN_AP75, "--min-ap75", help="int8: refuse below this AP@0.75 of int8 vs fp32 masks."),
    keep_fp32: Optional[str] = typer.Option(None, "--keep-fp32", help="int8: op types left in fp32 everywhere, comma-separated, or 'none' (default: a restoration net keeps the Gemm/Add/Mul of its last decoder level and output head, a segmentation net nothing)."),
) -> None:
    if precision == "int8" or calibrate is not None:
        keep = None if keep_fp32 is None else tuple(o.strip() for o in keep_fp32.split(",") if o.strip() not in ("", "none"))
        _export_int8(model, out, precision, name, calibrate, holdout, method, activations, diameter,
                     segment_with, restore_with, min_ap50, min_ap75, keep)
        return
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


def _export_int8(model: str, out: Path, precision: str, name: Optional[str], calibrate: Optional[Path],
                 holdout: Optional[Path], method: str, activations: str, diameter: Optional[float],
                 segment_with: Optional[str], restore_with: Optional[str], min_ap50: float,
                 min_ap75: float, keep_fp32: Optional[tuple[str, ...]]) -> None:
    from cp3rt._lazy import require
    from cp3rt.errors import ConfigError

    if precision != "int8":
        raise ConfigError(f"--calibrate is for --precision int8; precision is {precision!r}.")
    if calibrate is None:
        raise ConfigError("--precision int8 needs calibration images: add --calibrate DIR (a handful of your own images).")
    require("onnx", "cp3rt export --precision int8")
    from cp3rt.calibrate import Int8Config, export_int8

    cfg = Int8Config(model, calibrate, out, holdout=holdout, method=method, activations=activations,
                     min_ap50=min_ap50, min_ap75=min_ap75, segment_with=segment_with,
                     restore_with=restore_with, diameter=diameter, name=name, keep_fp32=keep_fp32)
    result = export_int8(cfg, say=lambda msg: typer.echo(msg, err=True))
    cal = result.manifest.calibration
    kept = f", {'/'.join(cal.keep_fp32)} kept fp32{' in ' + ' '.join(cal.keep_scope) if cal.keep_scope else ''}" if cal.keep_fp32 else ""
    typer.echo(f"wrote {result.onnx_path} ({result.manifest.role}, int8, {cal.method}, {cal.activations} activations{kept})")
    typer.echo(f"wrote {result.manifest_path}")
    for label, acc in (("calibration", cal.accuracy), ("holdout", cal.holdout_accuracy)):
        if acc is not None:
            typer.echo(f"int8 vs fp32 masks on {acc.images} {label} images: AP@0.5 {acc.ap50:.3f}, "
                       f"AP@0.75 {acc.ap75:.3f} ({acc.objects_int8} vs {acc.objects_fp32} objects)")
    if holdout is None:  # the ranges were fitted to these very images: the bar is easier there
        typer.echo("note: the accuracy bar was checked only on the calibration images; add --holdout DIR "
                   "(other images of the same kind) to check it on images the calibration has not seen.", err=True)


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
