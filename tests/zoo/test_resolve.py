"""Resolution order: explicit path, packaged file, Cellpose env dir, Cellpose cache, cp3rt cache."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cp3rt.defaults import MIN_WEIGHT_FILE_BYTES
from cp3rt.errors import ModelNotFoundError, WeightFileError
from cp3rt.zoo import ZOO, ModelInfo, locate, resolve_size_model, resolve_weights, search_dirs


def _fake_weights(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with open(path, "wb") as fh:  # sparse file: passes the size check without writing 20 MB
        fh.truncate(MIN_WEIGHT_FILE_BYTES + 1)
    return path


@pytest.fixture
def everywhere(isolated_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A copy of 'cyto2torch_0' in each search location."""
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(isolated_dirs["cellpose_env"]))
    return {
        "cellpose-env": _fake_weights(isolated_dirs["cellpose_env"], "cyto2torch_0"),
        "cellpose-cache": _fake_weights(isolated_dirs["home"] / ".cellpose" / "models", "cyto2torch_0"),
        "cp3rt-cache": _fake_weights(isolated_dirs["cp3rt"] / "models", "cyto2torch_0"),
    }


def test_order_env_then_cellpose_cache_then_cp3rt_cache(everywhere: dict[str, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in ("cellpose-env", "cellpose-cache", "cp3rt-cache"):
        loc = locate(ZOO.get("cyto2"))
        assert loc is not None and loc.kind == kind
        assert resolve_weights("cyto2", download=False) == everywhere[kind]
        everywhere[kind].unlink()
    assert locate(ZOO.get("cyto2")) is None


def test_search_dirs_without_env(isolated_dirs: dict[str, Path]) -> None:
    assert search_dirs() == [
        ("cellpose-cache", isolated_dirs["home"] / ".cellpose" / "models"),
        ("cp3rt-cache", isolated_dirs["cp3rt"] / "models"),
    ]


def test_explicit_path_wins_over_a_zoo_name(everywhere: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    local = _fake_weights(tmp_path / "cwd", "cyto2")
    monkeypatch.chdir(tmp_path / "cwd")
    assert resolve_weights("cyto2") == local.resolve()
    assert resolve_weights(str(everywhere["cp3rt-cache"])) == everywhere["cp3rt-cache"]


def test_too_small_cached_file_is_an_error(isolated_dirs: dict[str, Path]) -> None:
    folder = isolated_dirs["home"] / ".cellpose" / "models"
    folder.mkdir(parents=True)
    (folder / "cyto3").write_bytes(b"not a model")
    with pytest.raises(WeightFileError, match="11 bytes"):
        resolve_weights("cyto3", download=False)


def test_packaged_model_resolves_through_importlib_resources(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "site" / "fake_cp3rt_assets"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    weights = _fake_weights(pkg / "models", "tiny_nuclei")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "fake_cp3rt_assets", raising=False)
    info = ModelInfo("cp3rt_fake", "tiny_nuclei", "segment", 17.0, 2, 3, source="package",
                     package="fake_cp3rt_assets", resource="models/tiny_nuclei")
    zoo = ZOO.with_models(info)
    assert resolve_weights("cp3rt_fake", registry=zoo) == weights
    loc = locate(info)
    assert loc is not None and loc.kind == "package"
    weights.unlink()
    with pytest.raises(ModelNotFoundError, match="reinstall"):
        resolve_weights("cp3rt_fake", registry=zoo)
    assert locate(info) is None


def test_size_model_beside_a_weight_file(tmp_path: Path) -> None:
    weights = _fake_weights(tmp_path, "my_model")
    with pytest.raises(ModelNotFoundError, match="my_model_size.npy"):
        resolve_size_model(weights)
    size = tmp_path / "my_model_size.npy"
    size.write_bytes(b"x")
    assert resolve_size_model(weights) == size


def test_size_model_from_cellpose_cache(isolated_dirs: dict[str, Path]) -> None:
    folder = isolated_dirs["home"] / ".cellpose" / "models"
    folder.mkdir(parents=True)
    (folder / "size_cyto3.npy").write_bytes(b"\x93NUMPY" + b"\0" * 2000)
    assert resolve_size_model("cyto3", download=False) == folder / "size_cyto3.npy"


def test_packaged_model_from_a_zipped_install(tmp_path: Path, isolated_dirs: dict[str, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    payload = b"\x80\x02weights" * 1000
    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped_cp3rt_assets/__init__.py", "")
        zf.writestr("zipped_cp3rt_assets/models/tiny", payload)
    monkeypatch.syspath_prepend(str(archive))
    monkeypatch.delitem(sys.modules, "zipped_cp3rt_assets", raising=False)
    info = ModelInfo("cp3rt_zipped", "tiny", "segment", 17.0, 2, 3, source="package",
                     package="zipped_cp3rt_assets", resource="models/tiny")
    path = resolve_weights("cp3rt_zipped", registry=ZOO.with_models(info))
    assert path == isolated_dirs["cp3rt"] / "models" / "tiny"  # extracted once to a real file
    assert path.read_bytes() == payload


def test_check_torch_file_knows_what_torch_save_writes(tmp_path: Path) -> None:
    import io
    import pickle

    import torch

    from cp3rt.zoo.resolve import check_torch_file

    zipped, legacy = tmp_path / "zip.pth", tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(2)}, zipped)
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf, _use_new_zipfile_serialization=False)
    legacy.write_bytes(buf.getvalue())
    for path in (zipped, legacy):
        check_torch_file(path)  # no error
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(WeightFileError, match=r"notes.pth: not a Cellpose weight file \(.*68 65 6c 6c\)"):
        check_torch_file(text)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"w": 1}, protocol=4))
    check_torch_file(plain)  # a pickle: read_weight_file (with torch) says what is wrong with it
    with pytest.raises(WeightFileError, match="cannot read the weight file"):
        check_torch_file(tmp_path / "missing.pth")
