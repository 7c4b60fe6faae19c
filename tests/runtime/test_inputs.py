"""``run_inputs``: the routing of ``cp3rt run`` as a library call — plates, huge images and image
files each to their runner, here or on a cluster, silently (progress only through the callback)."""

from __future__ import annotations

import tifffile
from scale_testutil import FIELDS, WELLS, NumpyEngine, blob_image, write_plate

from cp3rt import Pipeline
from cp3rt import defaults as D
from cp3rt.runtime import BatchSummary, OutputOptions, PipelineConfig, RunConfig, route_inputs, run_inputs
from cp3rt.runtime.batch.blocks.image_files import local_runner
from cp3rt.runtime.batch.files import ImageOutcome
from cp3rt.runtime.batch.plates import finish_plate, plate_fields
from cp3rt.runtime.io.zarr_io import write_ngff_image

DIAM, BLOCK = 20.0, 128
RUN = RunConfig(channels=(0, 0), diameter=DIAM)


def _inputs(tmp_path):
    image, _ = blob_image((200, 180), 30, 3, radius=7)
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, image[:120, :120])
    write_ngff_image(tmp_path / "big.ome.zarr", image, chunks=64)
    write_plate(tmp_path / "plate.ome.zarr")
    return [tmp_path / "plate.ome.zarr", tmp_path / "big.ome.zarr", tmp_path / "a.tif", tmp_path / "b.tif"]


def _stand_in(monkeypatch, opened: list | None = None):
    def from_config(cls, cfg, run=None):
        if opened is not None:
            opened.append(cfg)
        return Pipeline.from_engines(NumpyEngine(nchan=2), run=run)

    monkeypatch.setattr(Pipeline, "from_config", classmethod(from_config))


def test_routes_and_one_outcome_per_item_without_printing(tmp_path, monkeypatch, capsys):
    inputs = _inputs(tmp_path)
    _stand_in(monkeypatch)
    routes = route_inputs(inputs, RUN)
    assert routes.plates == (inputs[0],) and routes.huge == (inputs[1],) and routes.images == tuple(inputs[2:])
    assert routes.total == 2 + 1 + len(WELLS) * FIELDS
    ends = []
    out = OutputOptions(out_dir=tmp_path / "out")
    summary = run_inputs(inputs, PipelineConfig(), RUN, out, block_size=BLOCK,
                         on_event=lambda e: e.kind == "end" and ends.append(e.path))
    assert capsys.readouterr() == ("", "")
    assert summary.ok and summary.count("done") == routes.total == len(ends)
    # images first, then the huge image, then the plate's fields
    assert [o.path for o in summary.outcomes][:3] == [*inputs[2:], inputs[1]]
    assert (tmp_path / "out" / "plate_wells.csv").is_file()
    again = run_inputs(routes, PipelineConfig(), RUN, out, block_size=BLOCK)
    assert again.count("skipped") == routes.total


class RecordingCluster:
    """A Cluster that runs its 'tasks' here and records what it was given."""

    def __init__(self, pipeline):
        self.pipeline, self.calls = pipeline, []

    def run_files(self, config, images, run, outputs, *, on_event):
        self.calls.append(("files", tuple(images)))
        return BatchSummary(tuple(ImageOutcome(p, "done") for p in images), 0.0)

    def run_plate(self, config, root, run, outputs, *, block_size, on_event):
        self.calls.append(("plate", root, block_size))
        fields = plate_fields(root)
        return finish_plate(root, fields, [ImageOutcome(f.path, "done") for f in fields], outputs, 0.0)

    def block_runner(self, config, run, *, nchan):
        self.calls.append(("blocks", nchan))
        return local_runner(self.pipeline)


def test_with_a_cluster_files_and_fields_are_tasks_and_huge_images_run_here(tmp_path, monkeypatch):
    inputs = _inputs(tmp_path)
    opened: list = []
    _stand_in(monkeypatch, opened)
    with Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN) as here:
        cluster = RecordingCluster(here)
        summary = run_inputs(inputs, PipelineConfig(), RUN, OutputOptions(out_dir=tmp_path / "out"),
                             cluster=cluster)
    assert cluster.calls == [("files", tuple(inputs[2:])), ("plate", inputs[0], D.BLOCK_SIZE), ("blocks", 2)]
    assert len(opened) == 1 and summary.ok  # nets opened here only for the huge image
    assert summary.outcomes[-1].path == inputs[1]
    opened.clear()
    run_inputs(inputs[2:], PipelineConfig(), RUN, OutputOptions(out_dir=tmp_path / "o2"), cluster=cluster)
    assert opened == []  # nothing runs here: no nets are opened


def _worker_pools(monkeypatch) -> list[tuple[int, int]]:
    """(workers, numba threads each) of every worker pool the streaming engine starts from now on."""
    from cp3rt.runtime.batch.stream import map as stream_map_module

    pools: list[tuple[int, int]] = []
    workers_class = stream_map_module._Workers

    def spy(n, kernel_threads, items, work):
        pools.append((n, kernel_threads))
        return workers_class(n, kernel_threads, items, work)

    monkeypatch.setattr(stream_map_module, "_Workers", spy)
    return pools


def test_the_stream_config_sizes_every_in_process_runner(tmp_path, monkeypatch):
    """``stream`` (``cp3rt run --workers/--dynamics-threads``) reaches the image files' streaming
    engine, the huge image's blocks and every plate field's blocks; without it each takes the defaults."""
    from cp3rt.runtime.batch.stream import StreamConfig

    inputs = _inputs(tmp_path)
    _stand_in(monkeypatch)
    pools = _worker_pools(monkeypatch)
    routes = route_inputs(inputs, RUN)
    summary = run_inputs(routes, PipelineConfig(), RUN, OutputOptions(out_dir=tmp_path / "out"), block_size=BLOCK,
                         stream=StreamConfig(workers=2, kernel_threads=1))
    assert summary.ok
    # one pool for the two files, one for the huge image, one per plate field
    assert pools == [(2, 1)] * (2 + len(WELLS) * FIELDS)
    pools.clear()
    run_inputs(routes, PipelineConfig(), RUN, OutputOptions(out_dir=tmp_path / "o2"), block_size=BLOCK)
    default = StreamConfig()
    assert pools == [(default.workers, default.threads_per_worker())] * (2 + len(WELLS) * FIELDS)


def test_one_image_file_runs_on_the_calling_thread_unless_threads_are_given(tmp_path, monkeypatch):
    """A single file keeps the lowest latency (this thread, all cores) by default; with an explicit
    ``stream`` (``--dynamics-threads`` on a shared node) it runs on a worker that applies it."""
    from cp3rt.runtime.batch.stream import StreamConfig

    inputs = _inputs(tmp_path)[2:3]
    _stand_in(monkeypatch)
    pools = _worker_pools(monkeypatch)
    assert run_inputs(inputs, PipelineConfig(), RUN, OutputOptions(out_dir=tmp_path / "a")).ok
    assert pools == []
    assert run_inputs(inputs, PipelineConfig(), RUN, OutputOptions(out_dir=tmp_path / "b"),
                      stream=StreamConfig(workers=1, kernel_threads=1)).ok
    assert pools == [(1, 1)]
    assert (tmp_path / "a" / "a_cp_masks.tif").read_bytes() == (tmp_path / "b" / "a_cp_masks.tif").read_bytes()
