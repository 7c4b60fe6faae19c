"""OrtEngine on stand-in ONNX nets: outputs, specs, manifests, options and the GPU-provider trap."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime
import pytest

from cp3rt.engines import EngineManifest
from cp3rt.engines.ort import OrtEngine, OrtOptions
from cp3rt.errors import BackendUnavailableError, ConfigError, EngineError, IncompatibleEngineError
from cp3rt.manifest import manifest_path_for, sha256_file

# float32 onnxruntime vs float64 loops: a 18-term dot product and a 256-wide normalisation.
FLOWS_ATOL = 1e-5
STYLE_ATOL = 1e-6


def _manifest(path: Path, **changes: object) -> EngineManifest:
    m = EngineManifest(role="segment", source_model="standin", source_sha256="0" * 64, nchan=2, nout=3,
                       diam_mean=30.0, diam_labels=30.0, precision="fp32", opset=18,
                       artefact_sha256=sha256_file(path))
    return dataclasses.replace(m, **changes)


def _worst(ours: np.ndarray, ref: np.ndarray, atol: float) -> str:
    diff = np.abs(ours - ref)
    idx = np.unravel_index(np.argmax(diff), diff.shape)
    return (f"worst at {idx}: ours {ours[idx]} ref {ref[idx]} (|d|={diff[idx]:.3g}); "
            f"mismatch rate {(diff > atol).mean():.3%}")


@pytest.mark.parametrize("shape", [(1, 2, 32, 32), (3, 2, 48, 80), (2, 2, 224, 96)])
def test_outputs_match_slow_reference(standin, standin_ref, shape: tuple[int, ...]) -> None:  # noqa: ANN001
    path, weights = standin
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    with OrtEngine(path) as eng:
        out = eng.infer(x)
    ref = standin_ref(weights, x)
    for name, atol in (("flows", FLOWS_ATOL), ("style", STYLE_ATOL)):
        assert out[name].dtype == np.float32
        assert np.allclose(out[name], ref[name], atol=atol, rtol=0), _worst(out[name], ref[name], atol)


def test_specs_backend_and_no_manifest(standin) -> None:  # noqa: ANN001
    path, _ = standin
    with OrtEngine(path) as eng:
        assert [s.describe() for s in eng.inputs] == ["image: float32[?, 2, ?, ?]"]
        assert [s.describe() for s in eng.outputs] == ["flows: float32[?, 3, ?, ?]", "style: float32[?, 256]"]
        assert eng.backend == "ort-cpu"
        assert eng.manifest is None
        assert eng.session_providers == ["CPUExecutionProvider"]


def test_an_onnxruntime_failure_while_running_is_one_engine_error(standin) -> None:  # noqa: ANN001
    path, _ = standin
    original = RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code\nStacktrace: ...")

    def run(names, feeds):  # noqa: ANN001, ANN202
        raise original

    with OrtEngine(path) as eng:
        eng._session = SimpleNamespace(run=run)
        with pytest.raises(EngineError, match=r"^engine .*\.onnx \(ort-cpu\) failed while running: RuntimeError: "
                                              r"\[ONNXRuntimeError\] : 6 : RUNTIME_EXCEPTION : Non-zero status code$") as info:
            eng.infer(np.zeros((1, 2, 32, 32), np.float32))
        assert info.value.__cause__ is original
        eng._session = SimpleNamespace(run=lambda names, feeds: None)  # so close() can delete it


def test_manifest_beside_the_file_is_read_and_enforced(standin) -> None:  # noqa: ANN001
    path, _ = standin
    _manifest(path).write(manifest_path_for(path))
    with OrtEngine(path) as eng:
        assert eng.manifest is not None and eng.manifest.source_model == "standin"
        with pytest.raises(EngineError, match="accepts batch 1..64"):
            eng.infer(np.zeros((65, 2, 32, 32), np.float32))


def test_stale_manifest_refused(standin) -> None:  # noqa: ANN001
    path, _ = standin
    _manifest(path, artefact_sha256="1" * 64).write(manifest_path_for(path))
    with pytest.raises(IncompatibleEngineError, match="cp3rt export standin"):
        OrtEngine(path)
    _manifest(path, nchan=1).write(manifest_path_for(path))
    with pytest.raises(IncompatibleEngineError, match="takes 2 channels but its manifest says 1"):
        OrtEngine(path)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        OrtEngine(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(EngineError, match="onnxruntime cannot load"):
        OrtEngine(bad)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"providers": ("gpu",)}, "providers"),
        ({"providers": ()}, "providers"),
        ({"threads": 0}, "threads"),
        ({"graph_opt": "max"}, "graph_opt"),
        ({"execution_mode": "async"}, "execution_mode"),
    ],
)
def test_option_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        OrtOptions(**kwargs)  # type: ignore[arg-type]


def test_session_options_are_applied() -> None:
    so = OrtOptions(threads=2, graph_opt="basic", execution_mode="parallel", mem_arena=False,
                    spin=False).session_options(onnxruntime)
    assert so.intra_op_num_threads == 2
    assert so.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.execution_mode == onnxruntime.ExecutionMode.ORT_PARALLEL
    assert so.enable_cpu_mem_arena is False
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.enable_mem_pattern is False  # the default: per-shape plans pile up with many tile shapes
    assert OrtOptions(mem_pattern=True).session_options(onnxruntime).enable_mem_pattern is True


def test_unlisted_provider_refused(standin, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    path, _ = standin
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailableError, match="not \\['CUDAExecutionProvider'\\].*onnxruntime-gpu"):
        OrtEngine(path, providers=("cuda",))


class _CpuOnlySession:
    """What onnxruntime-gpu does without a usable GPU: accepts CUDA, silently runs on CPU."""

    created: list[list[str]] = []

    def __init__(self, path: str, sess_options: object = None, providers: list[str] | None = None) -> None:
        type(self).created.append(list(providers or []))

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    def get_inputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name="image", type="tensor(float)", shape=["B", 2, "H", "W"])]

    get_outputs = get_inputs


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_gpu_provider_trap(standin, monkeypatch: pytest.MonkeyPatch, provider: str) -> None:  # noqa: ANN001
    path, _ = standin
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", _CpuOnlySession)
    _CpuOnlySession.created.clear()
    with pytest.raises(BackendUnavailableError, match="came up with \\['CPUExecutionProvider'\\]"):
        OrtEngine(path, providers=(provider,))
    wanted = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[provider]
    assert _CpuOnlySession.created == [[wanted, "CPUExecutionProvider"]]


def test_default_options_run(standin, standin_ref) -> None:  # noqa: ANN001
    # The benchmark-chosen defaults must still give the same numbers as every other setting.
    path, weights = standin
    x = np.random.default_rng(2).normal(size=(2, 2, 64, 64)).astype(np.float32)
    ref = standin_ref(weights, x)["flows"]
    for opts in ({}, {"graph_opt": "disable", "threads": 1}, {"execution_mode": "parallel", "mem_arena": False}):
        with OrtEngine(path, **opts) as eng:
            got = eng.infer(x)["flows"]
        assert np.allclose(got, ref, atol=FLOWS_ATOL, rtol=0), _worst(got, ref, FLOWS_ATOL)
