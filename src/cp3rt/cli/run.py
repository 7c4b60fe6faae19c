"""``cp3rt run``: restore (optional) + segment image files and write masks.

The command only turns flags into frozen configs, calls :func:`cp3rt.runtime.run_inputs` (which
routes plates, huge images and image files, here or on a cluster) and renders progress and the
summary; all logic lives in the library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cp3rt import defaults as D

_EPILOG = f"""
**Examples**

Segment every image in a folder with cyto3, masks next to the images:

    cp3rt run images/

Denoise, then segment cells of ~25 px, writing masks, Cellpose _seg.npy files and an overlay:

    cp3rt run "plates/*.tif" --restore denoise_cyto3 --diameter 25 --save-seg --overlay --out masks/

Cytoplasm in green, nuclei in red, an exported ONNX model (`cp3rt export cyto3 --out models/`):

    cp3rt run img.tif --chan 2 --chan2 1 --model models/cyto3.fp32.onnx --backend ort

**Notes**

- --model/--restore take Cellpose zoo names (`cp3rt models`), weight files or exported .onnx files.
  A weight file is exported to ONNX once and cached (needs the `export` extra the first time).
- Outputs are `<stem>_cp_masks.tif` (+ `_seg.npy`, with --save-flows Cellpose's `_flows.tif`
  = RGB flow picture, `_dP.tif` = raw dY,dX and `_cellprob.tif`,
  `_restored.tif`, `_overlay.png` on request; the overlay names the object count, diameter and
  models, and shows the raw image beside the restored one with --restore). Screening outputs:
  --table csv (`_cp_objects.csv`, per object), --rois (`_rois.zip`, Fiji), --outlines
  (`_cp_outlines.txt`), --exclude-on-edges. Masks keep the input TIFF's pixel size and unit.
  Existing outputs are skipped, so re-running a
  stopped batch resumes it; --overwrite redoes everything.
- Output names never collide, checked before any work: inputs with the same name in different
  folders (`d1/x.tif`, `d2/x.tif`) get the input tree mirrored under --out (`out/d1/x_cp_masks.tif`);
  two inputs in one folder that differ only in extension (`img.png`, `img.jpg`) are refused, naming
  both (outputs keep Cellpose's `<stem>_cp_masks.tif` so other tools still pair them with images).
- Two runs on one folder share it: each image is claimed by the run computing it (a
  `.<output>.lock` file, released when that run ends or dies); the other run reports it as
  claimed, waits for it at the end and counts it as skipped (done by another run).
- Ctrl-C (SIGINT) or SIGTERM stops cleanly: images in flight are finished (a huge image is
  abandoned between blocks), no partial file is left, the summary says what was done; a second
  signal stops at once. Re-run the same command to resume.
- Volumes: `cp3rt run stack.tif --do-3d --anisotropy 2` (or `--stitch-threshold 0.25`) writes a
  3-D uint16/uint32 `<stem>_cp_masks.tif`; --overlay shows a montage of Z planes; --save-seg,
  --rois and --outlines are 2-D only.
- Huge images: a zarr/OME-Zarr folder or a TIFF over {D.HUGE_IMAGE_SIDE} px a side (every TIFF with --blocks)
  is segmented in blocks of --block-size with a {D.BLOCK_HALO_DIAMETERS:g}-diameter halo, seams merged; labels go into
  the OME-Zarr's `labels/cp3rt` group or a BigTIFF `<stem>_cp_masks.tif` (masks only; the
  diameter is --diameter or the model's own). Done images are skipped on a re-run. With
  --do-3d, volumes over {D.HUGE_IMAGE_SIDE} px a side or 2^{D.HUGE_VOLUME_VOXELS.bit_length() - 1} voxels go the same way in 3-D blocks.
- OME-Zarr HCS plates (`cp3rt run plate.zarr`): every field is segmented into its own
  `labels/cp3rt`, done fields are skipped on a re-run, and `<plate>_wells.csv` (objects and
  mean area per well) is written next to the plate (or into --out); --table adds
  `<plate>_objects.csv` (every object, with its well and field), --overlay `<plate>_wells.png`
  (a heat-map of objects per well).
- Many images: several are in flight at once (--workers; each holds its image, so memory grows
  with them: about 0.39 GiB more per worker for 2048² images and 0.94 GiB for 4096², restore ->
  segment, on the CPU backend) and their tiles share network calls; --dynamics-threads sets
  each one's numba threads. Both default from the usable cores. On the CPU backends the masks
  do not depend on either (identical in benchmarks/results/cores.md and workers_memory.md).
- Sharing the PC (acquisition software on the same cores): --threads N sizes the network's CPU
  threads and the dynamics' to N, with at most N images in flight sharing them; the network of
  one image and the dynamics of another still overlap in a folder run
  (benchmarks/results/threads_cap.md: cores kept busy, with and without it).
- Clusters: `--cluster local:4` (worker processes here) or `--cluster tcp://HOST:8786` (a running
  Dask scheduler; inputs and outputs must be on a filesystem every worker sees). Each image
  file, each block of a huge 2-D image and each plate field is a task; failed tasks are
  retried. A huge volume (--do-3d) runs its 3-D blocks in this process.
- Exit codes: 0 every image done or skipped; 1 some image failed (each failure is one line naming
  its file, -v adds tracebacks) or an input cannot be found; 2 a bad option or colliding output
  names (nothing run); 130 stopped by SIGINT, 143 by SIGTERM.
"""


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        help="Restore (optional) and segment images; write masks and other outputs.",
        epilog=_EPILOG,
        no_args_is_help=True,
    )(run)


# long: one line per typer option (the command's whole surface); the body is 20 lines
def run(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...", help="Image files, folders or glob patterns."),
    model: str = typer.Option(D.SEGMENT_MODEL, "--model", "-m", help="Segmentation model: zoo name, weight file or .onnx."),
    restore: Optional[str] = typer.Option(None, "--restore", help="Restoration model run first, e.g. denoise_cyto3."),
    restore_chan2: Optional[str] = typer.Option(None, "--restore-chan2", help="Restoration model for the nucleus channel (e.g. denoise_nuclei)."),
    diameter: Optional[float] = typer.Option(None, "--diameter", "-d", help="Object diameter in pixels; 0 or unset = estimate (size model) or the model's default."),
    chan: int = typer.Option(0, "--chan", min=0, max=3, help="Channel to segment: 0 = gray (mean of all), 1 = R, 2 = G, 3 = B."),
    chan2: int = typer.Option(0, "--chan2", min=0, max=3, help="Optional nucleus channel: 0 = none, 1 = R, 2 = G, 3 = B."),
    flow_threshold: float = typer.Option(D.FLOW_THRESHOLD, "--flow-threshold", help="Max flow error of a mask; 0 disables the check."),
    cellprob_threshold: float = typer.Option(D.CELLPROB_THRESHOLD, "--cellprob-threshold", help="Pixels with a cell-probability logit above this are foreground."),
    niter: int = typer.Option(0, "--niter", min=0, help=f"Dynamics iterations; 0 = automatic ({D.NITER_AT_RESCALE_1} x diameter / diam_mean)."),
    min_size: int = typer.Option(D.MIN_SIZE, "--min-size", help="Drop masks smaller than this many pixels; -1 keeps all."),
    tile_overlap: float = typer.Option(D.TILE_OVERLAP, "--tile-overlap", min=D.TILE_OVERLAP_RANGE[0], max=D.TILE_OVERLAP_RANGE[1], help="Fraction of overlap between tiles."),
    batch_size: int = typer.Option(D.BATCH_SIZE, "--batch-size", min=1, help="Tiles per network call."),
    tile_size: int = typer.Option(D.TILE_SIZE, "--tile-size", help=f"Tile side in pixels (the reference's bsize): a multiple of {D.TILE_MULTIPLE} >= {D.MIN_TILE}; larger tiles: fewer of them (less work where the resized image is a little over 224), masks change (per-tile style)."),
    augment: bool = typer.Option(False, "--augment", help="Test-time augmentation (flipped, overlapping tiles; slower)."),
    backend: str = typer.Option(D.BACKEND, "--backend", help="auto | ort | trt | torch | torch-cuda | openvino (auto: TensorRT, ONNX Runtime CUDA, ONNX Runtime CPU, first that works; openvino: CPU, the openvino extra)."),
    precision: str = typer.Option(D.PRECISION, "--precision", help="fp32 | fp16 (half-precision graph, meant for GPU backends) | bf16 (--backend openvino: bf16 arithmetic on the fp32 graph, fast on AMX CPUs) | int8 (only a calibrated MODEL.int8.onnx from `cp3rt export --precision int8 --calibrate DIR`; onnxruntime CPU)."),
    gpu_resident: bool = typer.Option(False, "--gpu-resident", help="With --backend torch-cuda, 2-D images: keep every stage from upload to masks on the GPU (normalise, resize, tiles, nets, blend, numba-cuda dynamics); default normalisation, no --augment, give --diameter."),
    compile_nets: bool = typer.Option(False, "--compile", help="With --backend torch-cuda: compile the nets with TorchInductor (about 2.8x the net's GPU speed on an H200; the first use of each tile shape compiles for 10-20 s, cached on disk for later runs)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: next to each input)."),
    save_flows: bool = typer.Option(False, "--save-flows", help="Also write STEM_flows.tif (RGB flow picture), STEM_dP.tif (dY, dX) and STEM_cellprob.tif (float32), as Cellpose names them."),
    save_restored: bool = typer.Option(False, "--save-restored", help="Also write STEM_restored.tif (with --restore)."),
    save_seg: bool = typer.Option(False, "--save-seg", help="Also write a Cellpose-compatible STEM_seg.npy."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write STEM_overlay.png (outlines on the image; for a huge image done in blocks an overview at 1 in N pixels, at most 2048 px a side; a plate gets a count heat-map)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images whose outputs already exist."),
    table: Optional[str] = typer.Option(None, "--table", help="Also write STEM_cp_objects.csv (csv) or .parquet (parquet, needs pyarrow): one row per object with area, centroid, box, mean/summed intensity per input channel, touches-edge."),
    rois: bool = typer.Option(False, "--rois", help="Also write STEM_rois.zip: one polygon ROI per object for Fiji's ROI Manager."),
    outlines: bool = typer.Option(False, "--outlines", help="Also write STEM_cp_outlines.txt (one x,y,x,y... line per object; ImageJ/QuPath import)."),
    exclude_on_edges: bool = typer.Option(False, "--exclude-on-edges", help="Drop objects touching the image border and renumber the rest (before every output)."),
    do_3d: bool = typer.Option(False, "--do-3d", help="Segment each file as a volume: the net on YX, ZX and ZY planes, 3-D dynamics."),
    anisotropy: Optional[float] = typer.Option(None, "--anisotropy", help="With --do-3d: Z step / XY pixel size (Z is resized by it; aniso_* restore models restore the axial planes)."),
    stitch_threshold: float = typer.Option(0.0, "--stitch-threshold", min=0.0, max=1.0, help="Segment a volume plane by plane and join masks of consecutive planes with IoU above this (0 = off)."),
    z_axis: Optional[int] = typer.Option(None, "--z-axis", help="Axis of the file that holds Z (default: a bare 3-D TIFF is Z, Y, X with --do-3d/--stitch-threshold)."),
    channel_axis: Optional[int] = typer.Option(None, "--channel-axis", help="Axis of the file that holds channels (default: as the file declares them: ImageJ/OME C, RGB; a stack whose extra axis the file does not name is refused, never averaged)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Run on Dask: local[:N] worker processes or tcp://HOST:PORT (needs the scale extra). Image files, blocks of huge 2-D images and plate fields are tasks (a huge volume's 3-D blocks run in this process); a failed task is retried."),
    blocks: bool = typer.Option(False, "--blocks", help=f"Process every TIFF in blocks (automatic for zarr/OME-Zarr inputs and TIFFs over {D.HUGE_IMAGE_SIDE} px a side)."),
    block_size: Optional[int] = typer.Option(None, "--block-size", min=D.MIN_BLOCK_SIDE, help=f"Side of a block (pixels) for huge images (default {D.BLOCK_SIZE}; {D.BLOCK_SIZE_3D} in Y/X for huge volumes with --do-3d); a halo of {D.BLOCK_HALO_DIAMETERS:g} diameters is added around it."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help=f"Images (or blocks of a huge 2-D image) in flight at once, their tiles sharing network calls; each holds its image in memory. Default: {D.STREAM_WORKERS}, or one per {D.STREAM_CORES_PER_WORKER} cores up to {D.STREAM_WORKERS_MAX}. Not with --cluster."),
    dynamics_threads: Optional[int] = typer.Option(None, "--dynamics-threads", min=1, help="numba threads of each worker's dynamics (default: the usable cores shared out among the workers, at least 2; with --threads N: N shared out, at least 1). Not with --cluster."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads cp3rt may use (default: the usable cores): the network's on the CPU backends (onnxruntime, OpenVINO, torch) and the dynamics' numba threads, shared out among the images in flight (at most N of them). For a PC whose cores the acquisition software needs. On a cluster: per worker process."),
) -> None:
    from cp3rt.runtime import OutputOptions, PipelineConfig, RunConfig, route_inputs, run_inputs
    from cp3rt.runtime.batch.object_outputs import table_format

    stream = _stream_config(workers, dynamics_threads, threads, cluster)
    run_cfg = RunConfig(
        diameter=diameter, channels=(chan, chan2), flow_threshold=flow_threshold,
        cellprob_threshold=cellprob_threshold, niter=niter or None, min_size=min_size,
        tile_overlap=tile_overlap, batch_size=batch_size, augment=augment, tile_size=tile_size, do_3D=do_3d,
        anisotropy=anisotropy, stitch_threshold=stitch_threshold, z_axis=z_axis, channel_axis=channel_axis, gpu_resident=gpu_resident,
    )
    pipe_cfg = PipelineConfig(segment=model, restore=restore, restore_chan2=restore_chan2, backend=backend,
                              precision=precision, compile=compile_nets, cpu_threads=threads)
    outputs = OutputOptions(out_dir=out, save_flows=save_flows, save_restored=save_restored, save_seg=save_seg,
                            overlay=overlay, overwrite=overwrite, table=table_format(table), rois=rois,
                            outlines=outlines, exclude_on_edges=exclude_on_edges)
    _execute(lambda: route_inputs(inputs, run_cfg, force_blocks=blocks),
             lambda routes, **kw: run_inputs(routes, pipe_cfg, run_cfg, outputs, block_size=block_size, stream=stream, **kw),
             cluster, out=out, do_3D=run_cfg.do_3D, config=pipe_cfg, record=lambda routes: _start_record(
                 routes, pipe_cfg, run_cfg, outputs, stream, inputs=inputs, cluster=cluster, blocks=blocks, block_size=block_size))


def _stream_config(workers: int | None, dynamics_threads: int | None, threads: int | None,
                   cluster: str | None):  # noqa: ANN202
    """The streaming engine's workers and threads as given; None (the defaults, which follow
    --threads) when neither is."""
    from cp3rt.errors import ConfigError
    from cp3rt.runtime.batch.stream import StreamConfig

    if cluster is not None:
        if workers is not None or dynamics_threads is not None:
            raise ConfigError("--workers and --dynamics-threads size this process's streaming engine; with --cluster "
                              "the tasks run on the cluster's workers (local:N sets their number).")
    if threads is not None and dynamics_threads is not None and dynamics_threads > threads:
        raise ConfigError(f"--dynamics-threads {dynamics_threads} is above --threads {threads}, the cap on "
                          "every CPU thread pool; lower it or raise --threads.")
    if workers is None and dynamics_threads is None:
        return None
    return StreamConfig(workers=workers, kernel_threads=dynamics_threads, cpu_threads=threads)


def _start_record(routes, pipe_cfg, run_cfg, outputs, stream, **parameters):  # noqa: ANN001, ANN003 - the run's own values
    """The run record (``cp3rt_run_<UTC>.json``) in --out, or in the inputs' common folder;
    ``stream``'s workers and threads as they resolved (None: the defaults)."""
    from cp3rt.cli.app import command_line
    from cp3rt.runtime.batch.run_record import record_dir, start_run_record

    parameters.update(workers=stream.workers if stream else None,
                      dynamics_threads=stream.threads_per_worker() if stream else None)
    where = record_dir(outputs.out_dir, [*routes.images, *routes.huge, *routes.plates])
    return start_run_record(pipe_cfg, None, where, run=run_cfg, outputs=outputs, extra_parameters=parameters,
                            command=command_line())


def _execute(route, go, cluster: str | None, *, out: Path | None = None, do_3D: bool = False,
             config=None, record=None) -> None:  # noqa: ANN001
    """``route()`` the inputs (first, to size the progress bar), start the run ``record``, run
    ``go(routes, ...)`` with a progress bar (plain lines when stdout is not a terminal) and
    SIGINT/SIGTERM as a clean stop, then print the summary, where the outputs and the record
    went, and exit with the code the epilog documents. A first run says what it compiles first
    (exports, plans: before the engines open; numba kernels: as the first image starts)."""
    from cp3rt.cli import _run_render as render
    from cp3rt.cli._signals import cancel_on_signals, exit_code
    from cp3rt.cli.app import is_verbose
    from cp3rt.distributed import open_cluster
    from cp3rt.runtime.batch.cancel import Cancel
    from cp3rt.runtime.batch.kernel_cache import COLD_NOTICE, first_run_cold
    from cp3rt.runtime.batch.warmup import first_use_work

    cancel = Cancel()
    with render.one_line_warnings():
        routes = route()
        recorder = record(routes) if record is not None else None
        for line in first_use_work(config) if config is not None and cluster is None else ():
            render.say(line)
        notice = COLD_NOTICE if cluster is None and first_run_cold(do_3D=do_3D) else None
        with cancel_on_signals(cancel) as got, render.progress(routes.total, verbose=is_verbose(), notice=notice) as progress, \
                open_cluster(cluster) as on_cluster:
            summary = go(routes, cluster=on_cluster, on_event=progress.update, cancel=cancel, record=recorder)
    render.summary(summary, stopped_by=cancel.reason)
    if recorder is not None:
        render.wrote(out, recorder.path, recorder.errors)
    if got:
        raise typer.Exit(exit_code(got[0]))
    if not summary.ok:
        raise typer.Exit(1)
