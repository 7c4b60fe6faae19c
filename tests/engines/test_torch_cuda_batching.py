"""The torch-CUDA runner's fixed-batch loop, on CPU with a host stand-in for the GPU graphs.

Every engine call must carry exactly ``batch`` tiles (so each tile shape has one cuDNN algorithm
and one CUDA graph), results must come back per input array, in order, with the padding cut
off, and no more batches may be in flight than there are slots.
"""

from __future__ import annotations

import numpy as np
import pytest

from cp3rt.engines.base import BaseEngine
from cp3rt.engines.cuda_runner import GraphRunner
from cp3rt.errors import EngineError


class _HostRunner(GraphRunner):
    """_submit/_result replaced by numpy: a per-tile function, and a record of every call."""

    def __init__(self, batch: int, slots: int) -> None:
        self._batch = batch
        self._slots = [None] * slots
        self.shapes: list[tuple[int, ...]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def _submit(self, array: np.ndarray):  # noqa: ANN202
        self.shapes.append(array.shape)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        return {"y": array * 2.0 + 1.0, "style": array.mean(axis=(2, 3))}

    def _result(self, g):  # noqa: ANN001, ANN202
        self.in_flight -= 1
        return g


def _want(array: np.ndarray) -> dict[str, np.ndarray]:
    return {"y": array * 2.0 + 1.0, "style": array.mean(axis=(2, 3))}


@pytest.mark.parametrize("slots", [1, 2, 3])
@pytest.mark.parametrize("sizes", [[8], [1], [7, 9], [0, 3], [16, 1, 25, 8], [40]])
def test_every_call_carries_the_fixed_batch_and_results_come_back_per_array(sizes, slots) -> None:  # noqa: ANN001
    batch = 8
    rng = np.random.default_rng(sum(sizes))
    arrays = [rng.normal(size=(n, 2, 16, 24)).astype(np.float32) for n in sizes]
    runner = _HostRunner(batch, slots)
    got = list(runner._pipelined(iter(arrays)))
    assert all(shape == (batch, 2, 16, 24) for shape in runner.shapes)
    assert len(runner.shapes) == sum(max(1, -(-n // batch)) for n in sizes)
    assert runner.most_in_flight <= slots
    assert len(got) == len(arrays)
    for out, array in zip(got, arrays):
        for name, want in _want(array).items():
            np.testing.assert_array_equal(out[name], want)


def test_padding_tiles_are_zeros() -> None:
    runner = _HostRunner(4, 2)
    array = np.ones((3, 1, 8, 8), np.float32)
    seen: list[np.ndarray] = []
    submit = runner._submit
    runner._submit = lambda chunk: (seen.append(chunk.copy()), submit(chunk))[1]  # type: ignore[method-assign]
    list(runner._pipelined([array]))
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0][:3], array)
    np.testing.assert_array_equal(seen[0][3], 0.0)


def test_staging_copies_in_and_out_without_aliasing_the_reused_buffers() -> None:
    import torch

    from cp3rt.engines.cuda_runner import copy_out, stage_in

    rng = np.random.default_rng(7)
    array = rng.normal(size=(4, 2, 32, 48)).astype(np.float32)
    array.flags.writeable = False  # e.g. a memory-mapped file: must be staged without a warning
    staging = torch.empty(array.shape, dtype=torch.float32)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stage_in(torch, staging, array)
    np.testing.assert_array_equal(staging.numpy(), array)
    buffers = {"flows": torch.from_numpy(rng.normal(size=(4, 3, 32, 48)).astype(np.float32))}
    out = copy_out(torch, buffers)
    want = buffers["flows"].numpy().copy()
    buffers["flows"].fill_(0.0)  # the next batch reuses the buffer
    np.testing.assert_array_equal(out["flows"], want)


class _FailingGpu(_HostRunner):
    """The runner as the engines wire it (BaseEngine's error guard), with a GPU that fails."""

    _guard = BaseEngine._backend_errors
    backend, _label = "torch-cuda", "seg.pth"

    def _submit(self, array: np.ndarray):  # noqa: ANN202
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors ...")


def test_a_gpu_failure_is_one_engine_error_but_the_callers_own_errors_pass() -> None:
    runner = _FailingGpu(4, 2)
    with pytest.raises(EngineError, match=r"^engine seg.pth \(torch-cuda\) failed while running: "
                                          r"RuntimeError: CUDA error: an illegal memory access was encountered$"):
        list(runner._pipelined(iter([np.ones((3, 1, 8, 8), np.float32)])))

    def cutting():  # noqa: ANN202 - the host side that feeds the engine (the tiling runner's cutting)
        raise ValueError("a bug in the caller")
        yield

    with pytest.raises(ValueError, match="a bug in the caller"):
        list(_HostRunner(4, 2)._pipelined(cutting()))
    with pytest.raises(ValueError, match="a bug in the caller"):
        list(_FailingGpu(4, 2)._pipelined(cutting()))

