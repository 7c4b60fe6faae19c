"""``cp3rt eval``: score predicted masks against ground truth (AP at IoU thresholds).

Flag handling and rendering only; the work is :func:`cp3rt.runtime.quality.evaluation.evaluate_folders`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

_EPILOG = """
**Examples**

    cp3rt eval --pred masks/ --gt ground_truth/
    cp3rt eval --pred masks/ --gt gt/ --thresholds 0.5,0.75,0.9 --json scores.json
    cp3rt eval --pred masks/ --gt gt/ -t 0.5 -t 0.8
    cp3rt eval --pred masks/ --gt gt/ --pictures eval_pictures/ --images images/

**Pairing**: files are paired by image name. A prediction `X_cp_masks.tif`, `X_masks.tif`,
`X_seg.npy` or `X.tif` pairs with ground truth `X_masks.tif`, `X_seg.npy` or `X.tif` (or
.tiff/.png). When a folder holds several files for X, the prediction is `X_cp_masks` >
`X_masks` > `X_seg.npy`, the ground truth `X_masks` > `X_seg.npy` > `X_cp_masks`, and the bare
`X.tif` is the raw image (ignored) whenever a mask-named file exists: `--pred imgs/` after
`cp3rt run imgs/` and `--gt` a Cellpose training folder (or the shipped samples) just work;
one folder may be both. Flows, overlays and restored images are never read. Files found on
one side only are listed after the table.

**Scores** (as Cellpose `metrics.average_precision`): objects are counted by the highest
label, matched one-to-one by IoU; AP = TP / (TP + FP + FN) per threshold. The overall row
gives the mean of per-image AP and the summed TP/FP/FN; AJI is the aggregated Jaccard index.
"""


def register(app: typer.Typer) -> None:
    app.command(
        "eval",
        help="Score predicted label images against ground truth: AP, TP, FP, FN per IoU threshold.",
        epilog=_EPILOG,
        no_args_is_help=True,
    )(eval_command)


def _parse_thresholds(values: list[str] | None) -> tuple[float, ...]:
    from cp3rt.errors import ConfigError
    from cp3rt.runtime.quality.metrics import AP_THRESHOLDS

    if not values:
        return AP_THRESHOLDS
    out = []
    for item in values:
        for part in item.replace(",", " ").split():
            try:
                out.append(float(part))
            except ValueError:
                raise ConfigError(
                    f"--thresholds got {part!r}; give IoU thresholds in [0, 1], e.g. 0.5,0.75,0.9."
                ) from None
    return tuple(out)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def eval_command(
    pred: Path = typer.Option(..., "--pred", "-p", help="Folder of predicted label images."),
    gt: Path = typer.Option(..., "--gt", "-g", help="Folder of ground-truth label images."),
    thresholds: Optional[list[str]] = typer.Option(
        None, "--thresholds", "-t",
        help="IoU thresholds, comma-separated or repeated (default 0.5,0.75,0.9).",
    ),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Also write all scores to this JSON file."
    ),
    pictures: Optional[Path] = typer.Option(
        None, "--pictures", help="Also write IMAGE_eval.png per image into this folder: matched objects green, "
        "missed (false negatives) magenta, extra (false positives) yellow, at the first threshold.",
    ),
    images: Optional[Path] = typer.Option(None, "--images", help="With --pictures: draw them over the images of this folder (same names)."),
) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from cp3rt.runtime.quality.evaluation import evaluate_folders

    report = evaluate_folders(pred, gt, _parse_thresholds(thresholds))
    ths = report.thresholds
    table = Table(
        box=box.SIMPLE_HEAVY,
        title=f"cp3rt eval: {pred} vs {gt}",
        caption="overall: AP = mean of per-image AP, TP/FP/FN summed",
    )
    # Never fold image names: they are what users grep for in the output.
    width = max([len("overall"), *(len(im.name) for im in report.images)])
    table.add_column("image", no_wrap=True, min_width=width)
    table.add_column("GT", justify="right")
    table.add_column("pred", justify="right")
    for th in ths:
        table.add_column(f"AP@{th:g}", justify="right", no_wrap=True)
        table.add_column(f"TP/FP/FN@{th:g}", justify="right", no_wrap=True)
    table.add_column("AJI", justify="right", no_wrap=True)
    for im in report.images:
        cells = [im.name, str(im.n_true), str(im.n_pred)]
        for k in range(len(ths)):
            cells += [_fmt(im.ap[k]), f"{im.tp[k]}/{im.fp[k]}/{im.fn[k]}"]
        table.add_row(*cells, _fmt(im.aji))
    total = ["overall", str(sum(i.n_true for i in report.images)),
             str(sum(i.n_pred for i in report.images))]
    for k in range(len(ths)):
        total += [_fmt(report.mean_ap[k]), f"{report.tp[k]}/{report.fp[k]}/{report.fn[k]}"]
    table.add_row(*total, "", end_section=True)
    console = Console()
    if not console.is_terminal:
        # Piped or captured output: do not squeeze the table into 80 columns.
        console = Console(width=max(console.width, 240))
    console.print(table)
    if report.missing_pred:
        console.print(f"no prediction for {len(report.missing_pred)} ground-truth image(s): "
                      + ", ".join(report.missing_pred), markup=False)
    if report.missing_gt:
        console.print(f"no ground truth for {len(report.missing_gt)} prediction(s): "
                      + ", ".join(report.missing_gt), markup=False)
    _files(report, json_out, (pictures, images), pred, gt, console)


def _files(report, json_out: Path | None, pictures: tuple[Path | None, Path | None], pred: Path, gt: Path,
           console) -> None:  # noqa: ANN001
    """The files ``--json`` and ``--pictures`` ask for (pictures at the first threshold)."""
    from cp3rt.runtime.io.write import write_json
    from cp3rt.runtime.quality.eval_pictures import write_eval_pictures

    if json_out is not None:
        write_json(json_out, report.to_dict())
        console.print(f"wrote {json_out}", markup=False)
    folder, images = pictures
    if folder is not None:
        written = write_eval_pictures(pred, gt, folder, report.thresholds[0], images_dir=images)
        console.print(f"wrote {len(written)} picture(s) into {folder}", markup=False)
