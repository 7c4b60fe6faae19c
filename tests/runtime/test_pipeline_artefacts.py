"""cp3rt.artefacts: model spec -> ONNX artefact (given as is, or exported once into the cache)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from cp3rt import artefacts
from cp3rt.errors import BackendUnavailableError, ConfigError, InternalError, ModelNotFoundError, WeightFileError
from cp3rt.manifest import EngineManifest, manifest_path_for, sha256_file


class FakeExporter:
    """Writes a placeholder .onnx + manifest like export_onnx does; counts calls."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay = delay
        self.fail = fail

    def __call__(self, weights, out_dir, *, precision, source_model=None, diam_mean=None):
        self.calls += 1
        time.sleep(self.delay)
        onnx = Path(out_dir) / f"{Path(weights).name}.{precision}.onnx"
        onnx.write_bytes(b"graph")
        if self.fail:
            raise RuntimeError("export died half way")
        EngineManifest(
            role="segment", source_model=source_model or Path(weights).name,
            source_sha256=sha256_file(weights), nchan=2, nout=3, diam_mean=diam_mean or 30.0,
            diam_labels=30.0, precision=precision, opset=17,
        ).write(manifest_path_for(onnx))


@pytest.fixture
def weights(tmp_path) -> Path:
    p = tmp_path / "my_model"
    p.write_bytes(b"not really weights, but hashed like them")
    return p


@pytest.fixture
def exporter(monkeypatch) -> FakeExporter:
    fake = FakeExporter()
    monkeypatch.setattr(artefacts, "_export_function", lambda *a: fake)
    return fake


def test_weight_file_is_exported_once_then_reused(weights, exporter, tmp_path):
    cache = tmp_path / "cache"
    first = artefacts.resolve_model(weights, cache_root=cache)
    second = artefacts.resolve_model(weights, cache_root=cache)
    assert exporter.calls == 1 and first.exported and not second.exported
    assert first.path == second.path and first.path.suffix == ".onnx"
    assert first.path.parent.name.startswith(sha256_file(weights)[:20]) and "fp32" in first.path.parent.name
    assert second.manifest.source_sha256 == sha256_file(weights) and second.weights == weights
    fp16 = artefacts.resolve_model(weights, precision="fp16", cache_root=cache)
    assert exporter.calls == 2 and fp16.path.parent != first.path.parent


def test_given_onnx_is_used_as_is(weights, exporter, tmp_path):
    exported = artefacts.resolve_model(weights, cache_root=tmp_path / "cache").path
    given = artefacts.resolve_model(exported, cache_root=tmp_path / "other")
    assert given.path == exported and given.manifest.nchan == 2 and exporter.calls == 1
    with pytest.raises(ConfigError, match="torch"):
        artefacts.resolve_model(exported, backend="torch")


def test_missing_onnx_or_manifest(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        artefacts.resolve_model(tmp_path / "nothing.onnx")
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(b"graph")
    with pytest.raises(Exception, match="manifest"):
        artefacts.resolve_model(lone)


def test_torch_backend_skips_the_export(weights, exporter, tmp_path):
    src = artefacts.resolve_model(weights, backend="torch", cache_root=tmp_path)
    assert exporter.calls == 0 and src.manifest is None and Path(src.path) == Path(str(weights))


def test_concurrent_resolvers_export_once(weights, tmp_path, monkeypatch):
    fake = FakeExporter(delay=0.5)
    monkeypatch.setattr(artefacts, "_export_function", lambda *a: fake)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        artefacts.resolve_model(weights, cache_root=tmp_path))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.calls == 1 and len({r.path for r in results}) == 1


def test_failed_export_leaves_nothing_that_looks_finished(weights, tmp_path, monkeypatch):
    fake = FakeExporter(fail=True)
    monkeypatch.setattr(artefacts, "_export_function", lambda *a: fake)
    with pytest.raises(RuntimeError, match="half way"):
        artefacts.resolve_model(weights, cache_root=tmp_path)
    folder = tmp_path / "onnx"
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] == []
    good = FakeExporter()
    monkeypatch.setattr(artefacts, "_export_function", lambda *a: good)
    assert artefacts.resolve_model(weights, cache_root=tmp_path).exported


def test_an_exporter_that_writes_nothing_is_a_cp3rt_bug(weights, tmp_path, monkeypatch):
    monkeypatch.setattr(artefacts, "_export_function", lambda *a: lambda *args, **kw: None)
    with pytest.raises(InternalError, match="holds no single .onnx with its manifest.*cp3rt bug"):
        artefacts.resolve_model(weights, cache_root=tmp_path)


def test_without_torch_the_error_says_how_to_export(weights, tmp_path, monkeypatch):
    weights.write_bytes(b"PK\x03\x04" + bytes(60))  # starts like torch.save's zip archive
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(BackendUnavailableError) as info:
        artefacts.resolve_model(weights, cache_root=tmp_path)
    msg = str(info.value)
    assert f"cp3rt export {weights}" in msg and "cp3rt[export]" in msg and str(tmp_path) in msg


@pytest.mark.parametrize("hide_torch", [True, False])
@pytest.mark.parametrize(("content", "seen"), [(bytes(range(7, 200)), "starts with bytes 07 08 09 0a"),
                                                (b"", "it is empty")])
def test_random_bytes_are_not_a_weight_file_with_or_without_torch(tmp_path, monkeypatch, content, seen,
                                                                   hide_torch):
    """Issue 13 item 9: a random-bytes .pth was answered "needs torch"."""
    bad = tmp_path / "random.pth"
    bad.write_bytes(content)
    if hide_torch:
        monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(WeightFileError, match=rf"random.pth: not a Cellpose weight file \(.*{seen}\)\.$"):
        artefacts.resolve_model(bad, cache_root=tmp_path / "cache")

