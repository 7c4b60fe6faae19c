"""`cp3rt build`: refuses in one line without TensorRT or a GPU; against the fake TensorRT it builds
plans (+ manifests) for a model and its restoration model, into --out or the plan cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))

import trt_fixtures  # noqa: E402

from cp3rt.cli.app import main  # noqa: E402
from cp3rt.models.cpnet import CPnet  # noqa: E402


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CP3RT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    seg = CPnet(trt_fixtures.TINY_NBASE, 3).save(folder / "tinyseg")
    rest = CPnet((1, *trt_fixtures.TINY_NBASE[1:]), 1).save(folder / "tinyrestore")
    return seg, rest


def test_refuses_without_tensorrt_in_one_line(weights, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    rc = main(["build", str(weights[0]), "--precision", "fp16"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert err.startswith("error: the native TensorRT backend needs TensorRT >= 10 and an NVIDIA GPU")


def test_refuses_without_a_gpu(weights, monkeypatch, capsys) -> None:  # noqa: ANN001
    trt_fixtures.install(monkeypatch, gpu=False)
    assert main(["build", str(weights[0])]) == 1
    assert capsys.readouterr().err.strip().startswith("error: no NVIDIA GPU 0 is visible here")


def test_builds_model_and_restore_into_out(weights, monkeypatch, tmp_path, capsys) -> None:  # noqa: ANN001
    trt_fixtures.install(monkeypatch, "11.0.0")
    out = tmp_path / "plans"
    rc = main(["build", str(weights[0]), "--restore", str(weights[1]), "--precision", "fp16",
               "--batch", "1:8:32", "--out", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert lines[0].startswith("built tinyseg.fp16.plan in ") and "MB, fp16, TensorRT 11.0.0" in lines[0]
    assert lines[1].startswith("built tinyrestore.fp16.plan in ")
    manifest = json.loads((out / "tinyseg.fp16.plan.json").read_text())
    assert manifest["shapes"]["min_batch"] == 1 and manifest["shapes"]["max_batch"] == 32
    assert manifest["role"] == "segment" and manifest["tensorrt_version"] == "11.0.0"
    assert json.loads((out / "tinyrestore.fp16.plan.json").read_text())["role"] == "restore"


def test_cache_build_then_found(weights, monkeypatch, capsys) -> None:  # noqa: ANN001
    trt_fixtures.install(monkeypatch)
    assert main(["build", str(weights[0]), "--precision", "fp32"]) == 0
    assert capsys.readouterr().out.startswith("built tinyseg.fp32.plan")
    assert main(["build", str(weights[0]), "--precision", "fp32"]) == 0
    assert capsys.readouterr().out.startswith("plan already built")


def test_bad_batch_is_a_config_error(weights, capsys) -> None:  # noqa: ANN001
    assert main(["build", str(weights[0]), "--batch", "4:2:8"]) == 2
    assert "error: batch='4:2:8' is not allowed; give MIN:OPT:MAX" in capsys.readouterr().err


def test_device_picks_the_gpu_the_plan_is_built_on(weights, monkeypatch, tmp_path, capsys) -> None:  # noqa: ANN001
    import fake_cuda

    trt_fixtures.install(monkeypatch, devices=[fake_cuda.DeviceProps(), trt_fixtures.A100])
    out = tmp_path / "plans"
    assert main(["build", str(weights[0]), "--precision", "fp32", "--batch", "1:2:4", "--device", "1",
                 "--out", str(out)]) == 0
    assert "Fake NVIDIA A100-SXM4-40GB sm 8.0" in capsys.readouterr().out
    manifest = json.loads((out / "tinyseg.fp32.plan.json").read_text())
    assert manifest["compute_capability"] == "8.0"
