"""PipelineConfig.cpu_threads (``cp3rt run`` / ``cp3rt watch --threads``): it sizes the nets' CPU
pool and caps the dynamics' numba threads, on the calling thread and on every streaming worker,
so that an acquisition PC keeps cores for the microscope software. (How many cores a capped run
really keeps busy is measured in benchmarks/bench_threads_cap.py.)"""

from __future__ import annotations

import threading
from pathlib import Path

import numba
import pytest
from scale_testutil import NumpyEngine, blob_image

from cp3rt import Pipeline
from cp3rt.errors import ConfigError
from cp3rt.runtime.batch.stream import StreamConfig, stream_map
from cp3rt.runtime.batch.stream.batcher import default_workers
from cp3rt.runtime.config import PipelineConfig, RunConfig

MODELS = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets" / "models"
MACHINE_THREADS = numba.config.NUMBA_NUM_THREADS  # a fresh thread's numba threads


@pytest.mark.parametrize("bad", [0, -2, True, 1.5, "2"])
def test_cpu_threads_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match="cpu_threads"):
        PipelineConfig(cpu_threads=bad)


def _on_fresh_thread(fn):
    """``fn()``'s value on a new thread (numba's thread count is per thread, and the test
    runner's own must not be changed)."""
    box = {}
    t = threading.Thread(target=lambda: box.update(value=fn(), after=numba.get_num_threads()))
    t.start()
    t.join()
    return box


def test_pipeline_run_caps_the_calling_threads_dynamics():
    image = blob_image((160, 160), 6, 0)[0]

    def run(cap):
        def go():
            before = numba.get_num_threads()
            with Pipeline.from_engines(NumpyEngine(), cpu_threads=cap) as p:
                masks = p.run(image, diameter=30.0).masks
            return before, int(masks.max())
        return _on_fresh_thread(go)

    capped, free = run(1), run(None)
    assert capped["value"] == (MACHINE_THREADS, 6) and capped["after"] == 1
    assert free["value"] == (MACHINE_THREADS, 6) and free["after"] == MACHINE_THREADS


def test_a_cap_above_the_threads_in_use_leaves_them():
    def go():
        numba.set_num_threads(1)
        with Pipeline.from_engines(NumpyEngine(), cpu_threads=64) as p:
            p.run(blob_image((120, 120), 3, 1)[0], diameter=30.0)
    assert _on_fresh_thread(go)["after"] == 1


@pytest.mark.parametrize(("cap", "workers", "threads"), [(1, 1, 1), (2, 2, 1), (3, 3, 1), (8, 4, 2), (64, 8, 8)])
def test_stream_defaults_share_the_cap(cap, workers, threads):
    config = StreamConfig(cpu_threads=cap)
    assert (config.workers, config.threads_per_worker()) == (workers, threads)
    assert config.workers * config.threads_per_worker() <= cap
    assert config.workers == min(cap, default_workers(cap))


def test_stream_given_values_win_within_the_cap():
    assert StreamConfig(workers=2, cpu_threads=6).threads_per_worker() == 3
    assert StreamConfig(workers=8, cpu_threads=2).threads_per_worker() == 1  # at least one each
    assert StreamConfig(kernel_threads=2, cpu_threads=4).threads_per_worker() == 2
    with pytest.raises(ConfigError, match="kernel_threads=3 is above cpu_threads=2"):
        StreamConfig(kernel_threads=3, cpu_threads=2)
    with pytest.raises(ConfigError, match="cpu_threads"):
        StreamConfig(cpu_threads=0)


def test_stream_without_config_follows_the_pipelines_cap():
    seen, names, lock = set(), set(), threading.Lock()

    def work(view, item):
        with lock:
            seen.add(numba.get_num_threads())
            names.add(threading.current_thread().name)
        return view.run(blob_image((120, 120), 3, item)[0], run=RunConfig(diameter=30.0)).masks.max()

    with Pipeline.from_engines(NumpyEngine(), cpu_threads=1) as p:
        got = list(stream_map(p, range(4), work))
    assert sorted(int(v) for _, v, _ in got) == [3, 3, 3, 3]
    assert seen == {1} and len(names) == 1  # one worker, one numba thread


def test_stream_view_caps_an_explicit_share_above_the_pipelines_cap():
    """A library caller may size the workers' threads beyond the pipeline's cap: the image run caps them."""
    after = set()

    def work(view, item):
        view.run(blob_image((120, 120), 3, item)[0], run=RunConfig(diameter=30.0))
        after.add(numba.get_num_threads())

    with Pipeline.from_engines(NumpyEngine(), cpu_threads=1) as p:
        list(stream_map(p, range(2), work, StreamConfig(workers=2, kernel_threads=MACHINE_THREADS)))
    assert after == {1}


@pytest.mark.parametrize(("cap", "intra_op"), [(1, 1), (3, 3), (None, 0)])  # 0: onnxruntime's default, one per core
def test_onnxruntime_session_gets_the_cap(cap, intra_op):
    with Pipeline(str(MODELS / "cp3rt_nuclei.onnx"), backend="ort", cpu_threads=cap) as p:
        options = p.segment_net.engine._session.get_session_options()
    assert options.intra_op_num_threads == intra_op


def test_torch_cpu_pool_gets_the_cap(tmp_path):
    import torch

    from cp3rt.engines.torch_engine import TorchEngine
    from cp3rt.export.from_onnx import recover_weight_file

    weights = recover_weight_file(MODELS / "cp3rt_nuclei.onnx", tmp_path / "cp3rt_nuclei")
    before = torch.get_num_threads()
    try:
        with TorchEngine(weights, threads=1):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads"):
        TorchEngine(weights, threads=0)


def test_openvino_compiles_with_the_cap():
    with Pipeline(str(MODELS / "cp3rt_nuclei.onnx"), backend="openvino", cpu_threads=1) as p:
        assert int(p.segment_net.engine._compiled.get_property("INFERENCE_NUM_THREADS")) == 1
