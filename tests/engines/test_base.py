"""BaseEngine.infer: every kind of wrong batch gets one exact EngineError before the backend runs;
a backend library's failure is one EngineError naming the engine; cp3rt's own broken promise is
an InternalError; infer_many is part of every engine."""

from __future__ import annotations

import numpy as np
import pytest

from cp3rt.engines import BaseEngine, Engine, EngineManifest, ShapeRange, TensorSpec
from cp3rt.errors import Cp3rtError, EngineError, InternalError

IMAGE = TensorSpec("image", "float32", (None, 2, None, None))
FLOWS = TensorSpec("flows", "float32", (None, 3, None, None))


class EchoEngine(BaseEngine):
    """Returns its input under the output name; counts backend calls."""

    backend = "echo"

    def __init__(self, inputs=(IMAGE,), manifest=None, outputs=(FLOWS,)) -> None:  # noqa: ANN001
        super().__init__(tuple(inputs), tuple(outputs), manifest, label="echo.onnx")
        self.runs = 0
        self.released = 0

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.runs += 1
        return {self.outputs[0].name: next(iter(feeds.values()))}

    def _release(self) -> None:
        self.released += 1


def _manifest(**shapes: object) -> EngineManifest:
    return EngineManifest(role="segment", source_model="m", source_sha256="0" * 64, nchan=2, nout=3,
                          diam_mean=30.0, diam_labels=30.0, precision="fp32", opset=17,
                          shapes=ShapeRange(**shapes))  # type: ignore[arg-type]


def _x(b: int = 2, c: int = 2, h: int = 64, w: int = 96, dtype: type = np.float32) -> np.ndarray:
    return np.zeros((b, c, h, w), dtype)


def test_array_and_dict_batches_run() -> None:
    eng = EchoEngine()
    x = _x()
    assert eng.infer(x)["flows"] is x
    assert eng.infer({"image": x})["flows"] is x
    assert eng.runs == 2
    assert isinstance(eng, Engine)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (_x(dtype=np.float64), "dtype float64, engine echo.onnx needs float32"),
        (np.zeros((2, 64, 96), np.float32), r"shape \(2, 64, 96\) \(3 dims\)"),
        (_x(c=3), "size 3 on axis 1; engine echo.onnx needs 2"),
        ({"img": _x()}, r"missing \['image'\], unknown \['img'\]"),
        ({"image": _x(), "extra": _x()}, r"unknown \['extra'\]"),
        ({"image": [[1.0]]}, "must be a numpy array, got list"),
        ([1.0, 2.0], "numpy array or a dict of arrays, got list"),
    ],
)
def test_bad_batches(batch: object, message: str) -> None:
    eng = EchoEngine()
    with pytest.raises(EngineError, match=message):
        eng.infer(batch)  # type: ignore[arg-type]
    assert eng.runs == 0


def test_single_array_needs_single_input() -> None:
    other = TensorSpec("mask", "float32", (None, 1, None, None))
    eng = EchoEngine(inputs=(IMAGE, other))
    with pytest.raises(EngineError, match="pass a dict by name"):
        eng.infer(_x())
    with pytest.raises(EngineError, match="disagree on the batch size"):
        eng.infer({"image": _x(b=2), "mask": _x(b=3, c=1)})


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((9, 2, 64, 64), "batch 9 and tile 64x64; engine echo.onnx accepts batch 1..8"),
        ((1, 2, 16, 64), "tile 16x64.*tiles 32x32 .. 224x224"),
        ((1, 2, 240, 224), "tile 240x224"),
        ((1, 2, 64, 36), "not a multiple of 8"),
    ],
)
def test_manifest_shape_range(shape: tuple[int, ...], message: str) -> None:
    eng = EchoEngine(manifest=_manifest(max_batch=8))
    with pytest.raises(EngineError, match=message):
        eng.infer(np.zeros(shape, np.float32))
    assert eng.runs == 0
    eng.infer(np.zeros((8, 2, 224, 32), np.float32))  # the bounds themselves are fine
    assert eng.runs == 1


def test_missing_output_is_a_cp3rt_bug_not_a_user_error() -> None:
    eng = EchoEngine(outputs=(TensorSpec("other", "float32", (None,)), FLOWS))
    with pytest.raises(InternalError, match=r"echo.onnx \(echo\) did not produce outputs \['flows'\]") as info:
        eng.infer(_x())
    assert not isinstance(info.value, Cp3rtError)  # never recorded as a bad image
    assert "cp3rt bug; please report it" in str(info.value)


class BrokenBackend(EchoEngine):
    """A backend library that fails while running, as onnxruntime / torch / TensorRT do."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise self.exc


def test_a_backend_failure_is_one_engine_error_chained_to_the_original() -> None:
    original = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nsee the docs for more")
    with pytest.raises(EngineError) as info:
        BrokenBackend(original).infer(_x())
    assert str(info.value) == ("engine echo.onnx (echo) failed while running: "
                               "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert info.value.__cause__ is original


@pytest.mark.parametrize("exc", [EngineError("own words"), InternalError("own bug"), KeyboardInterrupt()])
def test_cp3rt_errors_and_interrupts_pass_through_unchanged(exc: BaseException) -> None:
    with pytest.raises(type(exc)) as info:
        BrokenBackend(exc).infer(_x())
    assert info.value is exc


def test_infer_many_is_declared_and_runs_each_batch_in_order() -> None:
    eng = EchoEngine()
    xs = [np.full((b, 2, 32, 32), b, np.float32) for b in (1, 3, 2)]
    outs = eng.infer_many(iter(xs))
    assert eng.runs == 0  # lazy, like the tiling runner's map(infer, batches) it replaces
    assert [o["flows"] is x for o, x in zip(outs, xs)] == [True, True, True]
    assert eng.runs == 3
    with pytest.raises(EngineError, match="size 3 on axis 1"):
        list(eng.infer_many([_x(c=3)]))  # validated like infer
    assert "infer_many" in Engine.__dict__ and not eng.device_resident


def test_close_and_context_manager() -> None:
    with EchoEngine() as eng:
        eng.infer(_x())
    assert eng.released == 1
    eng.close()  # idempotent
    assert eng.released == 1
    with pytest.raises(EngineError, match="is closed"):
        eng.infer(_x())


def test_tensor_spec_describe() -> None:
    assert IMAGE.describe() == "image: float32[?, 2, ?, ?]"
    assert "image: float32[?, 2, ?, ?]" in repr(EchoEngine())
