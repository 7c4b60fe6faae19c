"""``cp3rt degrade``: make noisy / blurred / downsampled copies of clean images (spec §6).

Flag handling and rendering only; the work is :func:`cp3rt.runtime.quality.degrade.degrade_files`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

_EPILOG = """
**Examples**

    cp3rt degrade clean/ --noise poisson --out noisy/ --seed 1
    cp3rt degrade clean/*.tif --noise poisson --pscale 5 --out noisy_p5/
    cp3rt degrade img.tif --noise blur --sigma 3 --pscale 40 --out blurred/
    cp3rt degrade clean/ --noise downsample --ds 4 --diameter 17 --out ds4/

**Random presets** (Cellpose 3 training recipes, one draw per image): `poisson` (photon
noise), `blur` (Gaussian blur + noise), `downsample` (subsample + blur + noise), `oneclick`
(one of the three at random), `aniso` (rows subsampled, blur mostly along Y).

**Fixed parameters** (for benchmarks) replace the random draws: `--pscale` photons per unit
intensity (smaller = noisier), `--sigma` blur sigma in pixels, `--ds` keep every ds-th row and
column and resize back. `poisson` takes --pscale; `blur` takes --sigma (+ --pscale);
`downsample`/`aniso` take --ds (+ --sigma, --pscale).

Each image is normalised (1/99 percentiles, clipped at 0), degraded, renormalised and written
as float32 `OUT/<name>.tif`; `OUT/cp3rt_degrade.json` records the command, seed and the
parameters every image got (rewritten after each image, so an interrupted run says what it
wrote). A file that cannot be degraded is one line on stderr naming it; the others are still
written, and the exit code is 1. Bad options stop before the first image (exit 2). The same
seed and inputs give the same files.
"""


def register(app: typer.Typer) -> None:
    app.command(
        "degrade",
        help="Synthesise degraded copies of clean images (Poisson noise, blur, downsampling).",
        epilog=_EPILOG,
        no_args_is_help=True,
    )(degrade)


def degrade(
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT...", help="Image files, folders or glob patterns."
    ),
    noise: str = typer.Option(
        ..., "--noise", "-n", help="poisson | blur | downsample | oneclick | aniso."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if missing)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    pscale: Optional[float] = typer.Option(None, "--pscale", help="Fixed photon scale (> 0)."),
    sigma: Optional[float] = typer.Option(
        None, "--sigma", help="Fixed blur sigma in pixels (>= 0)."
    ),
    ds: Optional[int] = typer.Option(None, "--ds", help="Fixed downsampling factor (>= 1)."),
    diameter: float = typer.Option(
        30.0, "--diameter", "-d",
        help="Object diameter in pixels; random blur scales with diameter/30.",
    ),
    ds_max: int = typer.Option(7, "--ds-max", help="Largest random downsampling factor."),
) -> None:
    from cp3rt.runtime.io import find_images
    from cp3rt.runtime.io.out_dir import check_output_dir
    from cp3rt.runtime.quality.degrade import check_run, degrade_files, noise_from_options

    # Every option is checked before any image is read (ConfigError: one line, exit 2).
    recipe = noise_from_options(noise, pscale=pscale, sigma=sigma, ds=ds, ds_max=ds_max)
    check_run(recipe, seed=seed, diameter=diameter)
    check_output_dir(out)
    images = find_images(inputs)
    command = " ".join(
        ["cp3rt degrade", *inputs, "--noise", noise, "--out", str(out), "--seed", str(seed),
         "--diameter", f"{diameter:g}", "--ds-max", str(ds_max)]
        + [f"--{k} {v:g}" for k, v in (("pscale", pscale), ("sigma", sigma), ("ds", ds))
           if v is not None]
    )
    run = degrade_files(
        images, recipe, out, seed=seed, diameter=diameter, noise_name=noise, command=command,
        progress=lambda i, n, name: typer.echo(f"[{i}/{n}] {name}"),
    )
    for _src, line in run.warnings:
        typer.echo(f"warning: {line}", err=True)
    for _src, line in run.failed:
        typer.echo(f"error: {line}", err=True)
    typer.echo(f"wrote {len(run.outputs)} image(s) to {out}, {len(run.failed)} failed; "
               f"record {run.record}")
    if run.failed:
        raise typer.Exit(1)
