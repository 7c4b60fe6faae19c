"""Size models: parity with the reference regression and safe reading of the pickled .npy."""

from __future__ import annotations

import io
import pathlib
import pickle
from pathlib import Path

import cellpose.models
import numpy as np
import pytest

from cp3rt.errors import WeightFileError
from cp3rt.zoo import SizeModel

# Same formula and same dtypes as the reference, so only summation order may differ.
DIAM_RTOL = 1e-12


def _params(rng: np.random.Generator, diam_mean: float = 17.0) -> dict[str, object]:
    # float64 A and float32 smean, as the reference's ridge regression leaves them.
    return {
        "A": rng.normal(0, 0.3, 256),
        "smean": rng.normal(0, 0.06, 256).astype(np.float32),
        "diam_mean": diam_mean,
        "ymean": float(rng.normal(0, 0.1)),
    }


def _save(path: Path, params: dict[str, object]) -> Path:
    np.save(path, params, allow_pickle=True)
    return path


def _reference(params: dict[str, object], style: np.ndarray) -> np.ndarray:
    ref = object.__new__(cellpose.models.SizeModel)  # skip __init__: it needs a full CellposeModel
    ref.params = params
    ref.diam_mean = params["diam_mean"]
    return ref._size_estimation(style)


def _styles(rng: np.random.Generator, n: int) -> np.ndarray:
    s = rng.normal(0, 1, (n, 256)).astype(np.float32)
    return s / np.linalg.norm(s, axis=1, keepdims=True)


def test_matches_reference_regression(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    params = _params(rng)
    model = SizeModel.from_file(_save(tmp_path / "size.npy", params))
    styles = _styles(rng, 64)
    ours = np.array([model.estimate_diameter(s) for s in styles])
    ref = np.array([_reference(params, s) for s in styles], dtype=np.float64)
    worst = int(np.argmax(np.abs(ours - ref) / ref))
    np.testing.assert_allclose(
        ours, ref, rtol=DIAM_RTOL,
        err_msg=f"worst style {worst}: ours {ours[worst]} reference {ref[worst]}",
    )
    np.testing.assert_allclose(model.estimate_diameter(styles), ref, rtol=DIAM_RTOL)
    assert (ours >= 5.0).all()
    assert model.diam_mean == 17.0


def test_clamp_and_nan_fallback(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    params = _params(rng, diam_mean=30.0)
    params["ymean"] = -50.0  # exp(...) ~ 0 -> clamped to 5 like the reference
    model = SizeModel.from_file(_save(tmp_path / "s.npy", params))
    style = _styles(rng, 1)[0]
    assert model.estimate_diameter(style) == 5.0 == float(_reference(params, style))
    nan_style = np.full(256, np.nan, np.float32)
    assert model.estimate_diameter(nan_style) == 30.0  # reference eval(): NaN -> diam_mean


def test_numpy1_written_file_reads(tmp_path: Path) -> None:
    # Zoo size files were written by numpy 1.x (np.save: pickle protocol 3), whose pickles
    # name numpy.core.multiarray.
    rng = np.random.default_rng(2)
    params = _params(rng)
    arr = np.empty((), dtype=object)
    arr[()] = params
    blob = pickle.dumps(arr, protocol=3).replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n" in blob
    path = tmp_path / "old.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        fh.write(blob)
    model = SizeModel.from_file(path)
    np.testing.assert_array_equal(model.A, params["A"])


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.touch, (self.target,))


def test_pickled_code_is_not_run(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {"A": _Evil(target)}
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(WeightFileError, match="more than numpy data"):
        SizeModel.from_file(path)
    assert not target.exists()
    np.load(path, allow_pickle=True)  # what a plain loader would do: it runs the payload
    assert target.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello", "not a .npy"),
        ("array", "holds a float64 array"),
        ("missing", "lacks the entries"),
        ("shape", "'A' must be a \\(256,\\) array"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "bad.npy"
    rng = np.random.default_rng(3)
    if content == "array":
        np.save(path, np.zeros(3))
    elif content == "missing":
        np.save(path, {"A": np.zeros(256)}, allow_pickle=True)
    elif content == "shape":
        params = _params(rng)
        params["A"] = np.zeros(10)
        np.save(path, params, allow_pickle=True)
    elif content == "truncated":
        buf = io.BytesIO()
        np.save(buf, _params(rng), allow_pickle=True)
        path.write_bytes(buf.getvalue()[:400])
    else:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(WeightFileError, match=message):
        SizeModel.from_file(path)
