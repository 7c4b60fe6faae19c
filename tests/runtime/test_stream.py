"""Streaming batch engine: same masks as the one-at-a-time runner, tiles of different images
share engine calls only when their shapes match, failures stay per image, bounded in flight."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scale_testutil import NumpyEngine, blob_image, export_tiny_onnx

from cp3rt import Pipeline
from cp3rt.errors import ConfigError, EngineError
from cp3rt.runtime.batch.files import OutputOptions, run_batch
from cp3rt.runtime.batch.stream import StreamConfig, StreamStats, TileBatcher, stream_batch, stream_map
from cp3rt.runtime.batch.stream.batcher import default_workers
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.dynamics.threads import usable_cores
from cp3rt.runtime.quality.metrics import average_precision

MIN_AP90 = 1.0  # batching must not change a single mask
SHAPES = [(200, 300), (400, 260), (224, 224), (500, 500), (90, 120), (300, 200)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("stream_in")
    for i, s in enumerate(SHAPES):
        tifffile.imwrite(d / f"im{i}.tif", blob_image(s, 15, i)[0])
    return sorted(d.glob("*.tif"))


def _masks(summary) -> list[np.ndarray]:
    return [tifffile.imread(o.outputs[-1]) for o in summary.outcomes]


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    for n, (x, y) in enumerate(zip(a, b)):
        ap = average_precision(x, y, [0.9])[0][0]
        assert ap >= MIN_AP90, f"image {n}: AP@0.9 {ap} < {MIN_AP90}; labels {x.max()} vs {y.max()}"


def test_stream_equals_one_at_a_time_and_shares_batches(folder, tmp_path):
    run = RunConfig(diameter=30.0, batch_size=4)
    with Pipeline.from_engines(NumpyEngine()) as p:
        plain = run_batch(p, folder, run, OutputOptions(out_dir=tmp_path / "a"))
    stats = StreamStats()
    events = []
    with Pipeline.from_engines(NumpyEngine()) as p:
        streamed = stream_batch(p, folder, run, OutputOptions(out_dir=tmp_path / "b"),
                                on_event=events.append, stream=StreamConfig(workers=3, max_batch=16),
                                stats=stats)
        sizes = p.segment_net.engine.batches
    assert [o.status for o in streamed.outcomes] == ["done"] * len(folder)
    assert [o.path for o in streamed.outcomes] == list(folder)  # input order, not completion
    assert [o.n_objects for o in streamed.outcomes] == [o.n_objects for o in plain.outcomes]
    _assert_same(_masks(plain), _masks(streamed))
    assert max(sizes) <= 16 and stats.tiles == sum(sizes)
    assert sum(e.kind == "end" for e in events) == len(folder)
    assert sorted(e.index for e in events if e.kind == "start") == list(range(len(folder)))


def test_resume_skips_done_images(folder, tmp_path):
    run = RunConfig(diameter=30.0)
    out = OutputOptions(out_dir=tmp_path)
    with Pipeline.from_engines(NumpyEngine()) as p:
        stream_batch(p, folder[:2], run, out)
        again = stream_batch(p, folder, run, out)
    assert [o.status for o in again.outcomes] == ["skipped"] * 2 + ["done"] * (len(folder) - 2)


class _Recorder:
    """Engine stand-in that blocks its first call until released, recording batch shapes."""

    manifest = None

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.release = threading.Event()

    def infer(self, x):
        self.release.wait(5)
        self.shapes.append(x.shape)
        return {"flows": x[:, :1] * 2, "style": np.zeros((len(x), 256), np.float32)}


def test_batcher_merges_only_same_shapes_and_splits_back():
    eng = _Recorder()
    batcher = TileBatcher(max_batch=8)
    try:
        rng = np.random.default_rng(0)
        first = batcher.submit(eng, rng.random((1, 2, 32, 32), np.float32))
        time.sleep(0.05)  # the batcher is now blocked inside the first call
        reqs = [rng.random((n, 2, *hw), np.float32)
                for n, hw in ((3, (32, 32)), (2, (48, 32)), (4, (32, 32)), (3, (32, 32)))]
        futs = [batcher.submit(eng, r) for r in reqs]
        eng.release.set()
        outs = [f.result(5) for f in [first, *futs]]
    finally:
        batcher.close()
    for req, out in zip(reqs, outs[1:]):
        np.testing.assert_array_equal(out["flows"], req[:, :1] * 2)
        assert out["style"].shape == (len(req), 256)
    # 3 + 4 tiles of 32x32 fit one call of <= 8; the 48x32 request and the last 3 go alone.
    assert eng.shapes == [(1, 2, 32, 32), (7, 2, 32, 32), (2, 2, 48, 32), (3, 2, 32, 32)]
    assert batcher.stats.shared_calls == 1


class _Failing(NumpyEngine):
    def _run(self, feeds):
        if feeds["image"].shape[-1] == 224:
            raise EngineError("the engine failed on purpose for 224-wide tiles.")
        return super()._run(feeds)


def test_engine_failure_is_per_image(folder, tmp_path):
    with Pipeline.from_engines(_Failing()) as p:
        summary = stream_batch(p, folder, RunConfig(diameter=30.0), OutputOptions(out_dir=tmp_path),
                               stream=StreamConfig(workers=2, max_batch=1))
    status = [o.status for o in summary.outcomes]
    assert "failed" in status and "done" in status
    assert all("on purpose" in o.error for o in summary.outcomes if o.status == "failed")


def test_in_flight_bounded_by_workers():
    live, peak, lock = [0], [0], threading.Lock()

    def work(view, item):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.01)
        with lock:
            live[0] -= 1
        return item * 2

    with Pipeline.from_engines(NumpyEngine()) as p:
        got = list(stream_map(p, range(20), work, StreamConfig(workers=3)))
    assert sorted(v for _, v, _ in got) == [2 * i for i in range(20)] and peak[0] <= 3


@pytest.mark.parametrize("field", ["workers", "max_batch", "kernel_threads"])
def test_config_validation(field):
    with pytest.raises(ConfigError, match=field):
        StreamConfig(**{field: 0})


@pytest.mark.parametrize(("cores", "workers"), [(1, 3), (2, 3), (8, 4), (16, 8), (128, 8)])
def test_default_workers_grow_with_the_cores(cores, workers):
    assert default_workers(cores) == workers


@pytest.mark.parametrize(("config", "expected"), [(StreamConfig(workers=2, kernel_threads=1), 1),
                                                  (StreamConfig(workers=1), None)])
def test_each_worker_runs_its_kernels_on_its_share_of_the_cores(config, expected):
    """numba's thread count is per thread: every worker sets its own before its first image."""
    import numba

    seen, lock = set(), threading.Lock()

    def work(view, item):
        with lock:
            seen.add(numba.get_num_threads())
        return item

    with Pipeline.from_engines(NumpyEngine()) as p:
        list(stream_map(p, range(6), work, config))
    want = expected or min(numba.config.NUMBA_NUM_THREADS, usable_cores())
    assert seen == {want} and config.threads_per_worker() == want


def test_stream_with_onnx_net_equals_plain(folder, tmp_path):
    onnx = export_tiny_onnx(tmp_path / "net")
    run = RunConfig(diameter=30.0, channels=(0, 0))
    with Pipeline(segment=onnx, backend="ort") as p:
        plain = run_batch(p, folder[:4], run, OutputOptions(out_dir=tmp_path / "a"))
        streamed = stream_batch(p, folder[:4], run, OutputOptions(out_dir=tmp_path / "b"),
                                stream=StreamConfig(workers=2, max_batch=32))
    assert sum(o.n_objects for o in plain.outcomes) > 0
    _assert_same(_masks(plain), _masks(streamed))


@pytest.fixture
def switch_5ms():
    import sys

    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


@pytest.mark.parametrize(("config", "inside"), [(StreamConfig(workers=3, gil_switch_s=0.0005), 0.0005),
                                                (StreamConfig(workers=3), 0.005),
                                                (StreamConfig(workers=1, gil_switch_s=0.0005), 0.005)])
def test_gil_switch_interval_is_short_while_workers_run_and_restored_after(config, inside, switch_5ms):
    """A worker coming back from a nogil kernel waits up to the switch interval for the GIL."""
    import sys

    seen = []
    with Pipeline.from_engines(NumpyEngine()) as p:
        list(stream_map(p, range(4), lambda view, item: seen.append(sys.getswitchinterval()), config))
    assert seen == pytest.approx([inside] * 4) and sys.getswitchinterval() == pytest.approx(0.005)


def test_a_stream_ending_inside_another_leaves_the_short_interval_until_the_last_ends(switch_5ms):
    import sys

    release = threading.Event()
    with Pipeline.from_engines(NumpyEngine()) as p:
        short = StreamConfig(workers=2, gil_switch_s=0.0005)
        outer = stream_map(p, range(3), lambda view, item: release.wait(30) if item else None, short)
        next(outer)  # item 0 done; item 1 holds a worker, so the outer stream is still running
        list(stream_map(p, range(2), lambda view, item: None, short))
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        release.set()
        list(outer)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_gil_switch_setting_is_validated():
    with pytest.raises(ConfigError, match="gil_switch_s"):
        StreamConfig(gil_switch_s=1.0)
