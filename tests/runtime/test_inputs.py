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
