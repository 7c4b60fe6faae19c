"""``cp3rt warmup``: compile the numba kernels and resolve / export / build the engines ahead of
the first image. Flag handling and rendering only; the work is
:func:`cp3rt.runtime.batch.warmup.warmup`.
"""

from __future__ import annotations

from typing import Optional

import typer

from cp3rt import defaults as D

_EPILOG = """
**Examples**

In an install script or a service's start, with the models the runs will use:

    cp3rt warmup --model cyto3 --restore denoise_cyto3

On a GPU machine, the TensorRT plans are built (or checked) too:

    cp3rt warmup --model cyto3 --backend trt --precision fp16

**Notes**

- Every numba kernel the pipeline uses (normalisation, resizing, tile blending, 2-D and 3-D
  dynamics, outlines) is compiled into numba's on-disk cache by running synthetic images and
  volumes through the opened models; later processes load it instead of compiling (~20 s).
  The cache is the `__pycache__` folders beside cp3rt's modules, or `NUMBA_CACHE_DIR`: a
  read-only install needs `NUMBA_CACHE_DIR` set to a writable folder, for warmup and runs alike.
- Models are resolved as `cp3rt run` resolves them: a weight file is exported to ONNX once into
  cp3rt's cache, and with --backend trt (or auto on a GPU) the TensorRT plan is built into the
  plan cache. Run it again: what is already there is only loaded, and it says so.
- --no-volumes skips the 3-D kernels (for runs that never use --do-3d / --stitch-threshold);
  `cp3rt -v warmup` names every kernel it compiled. Exit code 1 when a kernel could not be kept
  on disk (an unwritable cache: set NUMBA_CACHE_DIR).
"""


def register(app: typer.Typer) -> None:
    app.command("warmup", help="Compile numba kernels and build/load engines ahead of the first image.",
                epilog=_EPILOG)(warmup)


def warmup(
    model: str = typer.Option(D.SEGMENT_MODEL, "--model", "-m", help="Segmentation model: zoo name, weight file or .onnx."),
    restore: Optional[str] = typer.Option(None, "--restore", help="Restoration model the runs will use, e.g. denoise_cyto3."),
    restore_chan2: Optional[str] = typer.Option(None, "--restore-chan2", help="Restoration model for the nucleus channel."),
    backend: str = typer.Option(D.BACKEND, "--backend", help="auto | ort | trt | torch | torch-cuda, as for cp3rt run."),
    precision: str = typer.Option(D.PRECISION, "--precision", help="fp32 | fp16, as for cp3rt run."),
    volumes: bool = typer.Option(True, "--volumes/--no-volumes", help="Also compile the 3-D (volume) kernels."),
    compile_nets: bool = typer.Option(False, "--compile", help="With --backend torch-cuda: also compile the nets with TorchInductor for the tile shapes the synthetic images use (cached on disk)."),
) -> None:
    from cp3rt.cli.app import is_verbose
    from cp3rt.runtime import PipelineConfig
    from cp3rt.runtime.batch.warmup import warmup as run_warmup

    config = PipelineConfig(segment=model, restore=restore, restore_chan2=restore_chan2, backend=backend,
                            precision=precision, compile=compile_nets)
    report = run_warmup(config, volumes=volumes, on_step=lambda name: typer.echo(f"{name} ...", err=True))
    for m in report.models:
        sha = (m.artefact_sha256 or "")[:12]
        typer.echo(f"{m.role}: {m.spec} -> {m.engine_backend} {m.artefact} (sha256 {sha}...)")
    for s in report.steps:
        typer.echo(f"{s.seconds:7.1f} s  {s.name}")
    typer.echo(f"numba kernels: {len(report.compiled)} compiled now, {len(report.already)} already "
               f"compiled, in {report.kernel_cache}")
    if is_verbose():
        for name in report.compiled:
            typer.echo(f"  compiled {name}")
    if report.cold:
        typer.echo(f"warning: {len(report.cold)} kernels could not be kept on disk ({', '.join(report.cold)}); "
                   "set NUMBA_CACHE_DIR to a writable folder.", err=True)
        raise typer.Exit(1)
    typer.echo(f"warm: {report.seconds:.1f} s in all")
