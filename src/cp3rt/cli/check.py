"""``cp3rt check``: the same tiles through an engine and a reference; errors, worst element, mask AP.

Flag handling and rendering only; the work is :func:`cp3rt.check.run_check`. Exit code 1 when
the engine is out of tolerance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cp3rt import defaults as D

_EPILOG = """
**Examples**

    cp3rt check cyto3                                  # onnxruntime fp32 vs the torch reference
    cp3rt check cyto3 --precision fp16 --against ort   # the fp16 graph vs the fp32 graph (CPU)
    cp3rt check cyto3 --backend trt --precision fp16 --images my_images/

**Notes**

- Tiles are cut as `cp3rt run` cuts them (normalised, padded, 224 x 224 with 10 % overlap) from
  the images in --images (default: two synthetic images).
- Per output: max abs error, max error relative to the reference's output range, share of
  elements beyond the tolerance (default per precision: fp32 1e-4, fp16 1e-2, bf16 3e-2 of the
  range), and the worst element (image, tile, channel, y, x).
- Segmentation models also run both full pipelines and match the engine's masks with the
  reference's (AP at IoU 0.5 / 0.75 / 0.9). Exit code 1 if any output or the mean AP@0.5 fails.
"""


def register(app: typer.Typer) -> None:
    app.command(
        "check",
        help="Compare an engine with a reference on the same tiles: errors, worst element, mask AP.",
        epilog=_EPILOG,
        no_args_is_help=True,
    )(check)


def check(
    model: str = typer.Argument(..., metavar="MODEL", help="Zoo name or Cellpose v3 weight file."),
    backend: str = typer.Option("ort", "--backend", help="Engine under test: ort | trt | torch-cuda."),
    against: str = typer.Option("torch", "--against", help="Reference: torch (CPU fp32) | ort (fp32 graph)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | fp16 (| bf16 for torch-cuda)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of images to cut tiles from."),
    max_images: int = typer.Option(4, "--max-images", help="Use at most this many images."),
    batch_size: int = typer.Option(D.BATCH_SIZE, "--batch-size", help="Tiles per engine call."),
    tolerance: Optional[float] = typer.Option(None, "--tolerance", help="Allowed |error| / output range (default per precision)."),
    min_ap50: Optional[float] = typer.Option(None, "--min-ap50", help="Lowest acceptable mean mask AP@0.5."),
    flow_threshold: float = typer.Option(D.FLOW_THRESHOLD, "--flow-threshold", help="Flow QC of the mask pipelines (0 = off)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the full report as JSON."),
    pictures: Optional[Path] = typer.Option(None, "--pictures", help="Also write IMAGE_check.png per image into this folder: the engine's masks against the reference's (in both green, reference only magenta, engine only yellow)."),
) -> None:
    from cp3rt.check import CheckConfig, describe_position, run_check

    cfg = CheckConfig(model, backend=backend, against=against, precision=precision, images=images,
                      max_images=max_images, batch_size=batch_size, tolerance=tolerance,
                      min_ap50=min_ap50, flow_threshold=flow_threshold)
    report = run_check(cfg, progress=lambda stage, done, total: typer.echo(f"{stage} {done}/{total}", err=True),
                       on_masks=_picture_writer(pictures, f"{backend} {precision}", against))
    typer.echo(f"{report.engine} ({precision}) vs {report.reference} on {report.tiles} tiles; "
               f"tolerance {cfg.tol:g} x output range, at most {cfg.max_share:.2%} of elements beyond it")
    for o in report.outputs:
        typer.echo(f"  {o.name:9s} max abs {o.max_abs:.3g}  max rel {o.max_rel:.3g}  beyond tolerance "
                   f"{o.share_out:.3%}  worst at {describe_position(o.worst_at)} (got {o.worst_got:.6g}, "
                   f"reference {o.worst_want:.6g})  {'ok' if o.ok else 'FAIL'}")
    for m in report.masks:
        aps = " ".join(f"AP@{t:g} {a:.3f}" for t, a in zip(D.AP_THRESHOLDS, m.ap))
        typer.echo(f"  masks {m.image}: {aps} ({m.n_engine} vs {m.n_reference} reference objects)")
    if report.masks:
        typer.echo(f"  mean AP@0.5 {report.mean_ap50:.3f} (lowest acceptable {cfg.ap_limit:g})")
    if json_out is not None:
        from cp3rt.runtime.io.write import write_json

        write_json(json_out, report.to_dict())
        typer.echo(f"wrote {json_out}")
    typer.echo("PASS" if report.ok else "FAIL: the engine is out of tolerance")
    if not report.ok:
        raise typer.Exit(1)


def _picture_writer(folder: Path | None, engine_name: str, reference_name: str):  # noqa: ANN202
    if folder is None:
        return None

    def write(name: str, image, reference, engine) -> None:  # noqa: ANN001
        from cp3rt.runtime.quality.eval_pictures import write_check_picture

        path = write_check_picture(folder, name, image, reference, engine, engine_name=engine_name,
                                   reference_name=reference_name)
        typer.echo(f"wrote {path}", err=True)

    return write
