"""TensorRT and the CUDA bindings must be built for one CUDA major the driver supports. The extras
pair them; a mismatch, a missing or too old driver is refused in one line naming the CUDA error
and the exact install command; and whatever still breaks TensorRT's constructors is a
BackendUnavailableError, so ``--backend auto`` moves on."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from cp3rt.engines import open_engine
from cp3rt.engines.tensorrt import BuildConfig, TrtEngine, build_plan
from cp3rt.engines.tensorrt.builder import default_shapes
from cp3rt.errors import BackendUnavailableError

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


def _extras() -> dict[str, list[Requirement]]:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    return {name: [Requirement(r) for r in reqs] for name, reqs in extras.items()}


@pytest.mark.parametrize("major", [12, 13])
def test_each_trt_extra_pairs_one_cuda_major(major: int) -> None:
    reqs = {r.name: r for r in _extras()[f"trt-cu{major}"]}
    assert f"tensorrt-cu{major}" in reqs, reqs
    bindings = reqs["cuda-bindings"].specifier
    assert bindings.contains(f"{major}.9.0") and not bindings.contains(f"{major + 1}.0.0") \
        and not bindings.contains(f"{major - 1}.9.0"), bindings


def test_no_extra_leaves_the_cuda_major_to_the_resolver() -> None:
    for name, reqs in _extras().items():
        names = {r.name for r in reqs}
        assert "tensorrt" not in names, f"extra {name}: bare 'tensorrt' resolves to the newest CUDA major"
        assert "cuda-python" not in names or name.startswith("trt-cu"), name


def _refusal(call) -> str:  # noqa: ANN001
    with pytest.raises(BackendUnavailableError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text
    return text


def test_no_driver_names_the_cuda_error(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    fake_trt(driver=0)
    text = _refusal(lambda: build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32")))
    assert "cudaErrorInsufficientDriver" in text and "no NVIDIA driver" in text, text


def test_a_driver_too_old_for_cu13_says_which_extra_to_take(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    fake_trt("11.4.0.106", trt_cuda=13, bindings_cuda=13, driver=12040)
    text = _refusal(lambda: build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32")))
    assert "cudaErrorInsufficientDriver" in text and "supports CUDA up to 12.4" in text, text
    assert text.endswith("pip install 'cp3rt[trt-cu12]'."), text


@pytest.mark.parametrize(("driver", "extra"), [(13000, "trt-cu13"), (12080, "trt-cu12")])
def test_tensorrt_and_bindings_of_different_majors_are_refused(fake_trt, exports, tmp_path, driver, extra) -> None:  # noqa: ANN001
    fake_trt("11.4.0.106", trt_cuda=13, bindings_cuda=12, driver=driver)
    text = _refusal(lambda: build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32")))
    assert "TensorRT 11.4.0.106 is built for CUDA 13" in text and "CUDA bindings are for CUDA 12" in text, text
    assert text.endswith(f"pip install 'cp3rt[{extra}]'."), text


def test_a_failing_builder_or_runtime_constructor_is_backend_unavailable(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    fake_trt()
    plan = build_plan(exports.fp32, tmp_path / "p.plan",
                      BuildConfig(precision="fp32", shapes=default_shapes((1, 2, 4)))).plan_path
    # TensorRT's own metadata hidden (a source build, say): the mismatch only shows in TensorRT.
    fake_trt(trt_cuda=13, bindings_cuda=12, driver=13000, dist=False)
    assert "TensorRT could not initialise CUDA" in _refusal(lambda: TrtEngine(plan))
    text = _refusal(lambda: build_plan(exports.fp32, tmp_path / "q.plan", BuildConfig(precision="fp32")))
    assert "TypeError" in text and "pip install 'cp3rt[trt-cu" in text, text
    with open_engine(exports.fp32, "auto") as engine:  # auto moves on
        assert engine.backend == "ort-cpu"
        assert np.isfinite(engine.infer(np.zeros((1, 2, 64, 64), np.float32))["flows"]).all()


def test_info_sees_a_per_major_wheel(fake_trt) -> None:  # noqa: ANN001
    """tensorrt-cu12 installs no distribution named 'tensorrt': `cp3rt info` must still see it."""
    from cp3rt.engines import probe

    fake_trt("10.16.1.11")
    status = probe._tensorrt_status()
    assert status.available and status.detail.startswith("tensorrt 10.16.1.11 "), status.detail
