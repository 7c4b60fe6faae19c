"""`cp3rt export`: weight file or zoo name -> ONNX + manifest; user errors are one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cp3rt.cli.app import main
from cp3rt.models.cpnet import CPnet


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CP3RT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return CPnet((2, 8, 16, 32, 64), 3, diam_mean=30.0).save(tmp_path_factory.mktemp("w") / "tiny")


def _manifest(folder: Path) -> dict:
    (path,) = folder.glob("*.onnx.json")
    return json.loads(path.read_text())


def test_exports_a_weight_file(weights: Path, tmp_path: Path, capsys) -> None:
    rc = main(["export", str(weights), "--out", str(tmp_path / "out"), "--precision", "fp16"])
    out = capsys.readouterr().out
    assert rc == 0
    assert (tmp_path / "out" / "tiny.fp16.onnx").is_file()
    assert "wrote" in out and "max abs difference to the torch net: flows" in out
    m = _manifest(tmp_path / "out")
    assert (m["role"], m["precision"], m["opset"], m["source_model"]) == ("segment", "fp16", 17, "tiny")


def test_zoo_name_goes_through_the_resolver(weights, tmp_path, monkeypatch) -> None:
    import cp3rt.zoo.resolve as resolve

    asked: list[str] = []

    def fake_resolve(name, **kwargs):
        asked.append(str(name))
        return weights

    monkeypatch.setattr(resolve, "resolve_weights", fake_resolve)
    rc = main(["export", "nuclei", "--out", str(tmp_path), "--no-verify", "--opset", "18"])
    assert rc == 0 and asked == ["nuclei"]
    m = _manifest(tmp_path)
    # Built-in models use the name-based diam_mean (17 for nuclei), not the file's 30 (§1.5).
    assert (m["source_model"], m["diam_mean"], m["diam_labels"], m["opset"]) == ("nuclei", 17.0, 30.0, 18)


def test_v4_file_is_one_line_error(tmp_path: Path, capsys) -> None:
    torch.save({"encoder.pos_embed": torch.zeros(1), "W2": torch.zeros(1)}, tmp_path / "cpsam")
    rc = main(["export", str(tmp_path / "cpsam"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and "Cellpose 4" in err
    assert not (tmp_path / "o").exists()


def test_random_bytes_are_not_a_weight_file_even_without_torch(tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    bad = tmp_path / "random.pth"
    bad.write_bytes(bytes(range(3, 103)))
    monkeypatch.setitem(sys.modules, "torch", None)  # this machine has no torch: the file is judged first
    rc = main(["export", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {bad}: not a Cellpose weight file (") and "starts with bytes 03 04 05 06" in err


def test_bad_precision_exits_2(weights: Path, tmp_path: Path, capsys) -> None:
    rc = main(["export", str(weights), "--out", str(tmp_path), "--precision", "fp8"])
    assert rc == 2 and "precision='fp8'" in capsys.readouterr().err


def test_unknown_model_name_is_one_line_error(tmp_path: Path, capsys) -> None:
    rc = main(["export", "no_such_model_xyz", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("error: ") and err.count("\n") == 1


def test_command_module_does_not_import_torch() -> None:
    code = "import sys, cp3rt.cli.export; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
