"""``cp3rt build``: build TensorRT plans for a segmentation (and optional restoration) model.

Flag handling and rendering only; the work is :func:`cp3rt.build.build_for_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cp3rt import defaults as D

_EPILOG = f"""
**Examples**

    cp3rt build cyto3 --precision fp16
    cp3rt build cyto3 --restore denoise_cyto3 --precision fp16 --batch 1:64:256 --out engines/

**Notes**

- Needs TensorRT >= 10 and an NVIDIA GPU (`pip install 'cp3rt[trt-cu12]'`, or `[trt-cu13]` with
  an R580+ driver); refuses otherwise, naming the CUDA error and the install command.
- Plans are built from cp3rt's ONNX export at the same precision (exported on first use; fp16
  plans come from the fp16 graph: strongly typed, fp32 inputs/outputs).
- Two optimisation profiles: 224 x 224 tiles (nearly all tiles) and 32..224 for the rest; the
  batch range is --batch MIN:OPT:MAX (default {':'.join(map(str, D.TRT_BATCH))}).
- Without --out the plan goes to the plan cache, where `cp3rt run --backend trt` finds it.
- A plan is tied to its TensorRT version and GPU; cp3rt refuses a foreign or corrupted plan
  and prints the command that rebuilds it.
"""


def register(app: typer.Typer) -> None:
    app.command(
        "build",
        help="Build TensorRT plans (fp16/fp32) for a model and optional restoration model.",
        epilog=_EPILOG,
        no_args_is_help=True,
    )(build)


def build(
    model: str = typer.Argument(..., metavar="MODEL", help="Segmentation model: zoo name, weight file or exported .onnx."),
    restore: Optional[str] = typer.Option(None, "--restore", help="Restoration model to build as well."),
    precision: str = typer.Option("fp16", "--precision", help="fp16 | fp32."),
    batch: str = typer.Option(":".join(map(str, D.TRT_BATCH)), "--batch", help="Batch range MIN:OPT:MAX."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: the plan cache)."),
    opt_level: int = typer.Option(D.TRT_OPT_LEVEL, "--opt-level", help="TensorRT builder optimisation level 0..5."),
    workspace_mib: Optional[int] = typer.Option(None, "--workspace-mib", help="Builder workspace limit in MiB."),
    device: int = typer.Option(0, "--device", help="GPU index."),
) -> None:
    from cp3rt.build import build_for_model
    from cp3rt.engines.tensorrt import BuildConfig, parse_batch
    from cp3rt.manifest import ShapeRange
    from cp3rt.engines.tensorrt.builder import default_shapes

    lo, opt, hi = parse_batch(batch)
    shapes: ShapeRange = default_shapes((lo, opt, hi))
    config = BuildConfig(precision=precision, shapes=shapes, optimization_level=opt_level,
                         workspace_mib=workspace_mib, device=device)
    for spec in [model] + ([restore] if restore else []):
        built = build_for_model(spec, config, out_dir=out, progress=lambda msg: typer.echo(msg, err=True))
        env = built.environment
        mb = built.plan_bytes / 1e6
        if built.built:
            typer.echo(f"built {built.plan_path.name} in {built.seconds:.1f} s ({mb:.1f} MB, "
                       f"{built.manifest.precision}, TensorRT {env.tensorrt_version}, {env.gpu_name} "
                       f"sm {env.compute_capability}): {built.plan_path}")
        else:
            typer.echo(f"plan already built ({mb:.1f} MB, TensorRT {env.tensorrt_version}, "
                       f"{env.gpu_name}): {built.plan_path}")
