"""The zoo table against the reference package (names, file names, size models) and its rules."""

from __future__ import annotations

import cellpose.denoise
import cellpose.models
import pytest

from cp3rt.errors import ConfigError, ModelNotFoundError
from cp3rt.zoo import ZOO, ModelInfo, Registry, resolve_weights


# The reference's zoo; cp3rt's own packaged starter models (source "package") come on top.
CELLPOSE_ZOO = [m for m in ZOO if m.source == "zoo"]


@pytest.fixture
def reference_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reference resolves names through cache_model_path, which would download; make it
    # return the basename so the naming rules can be compared offline.
    monkeypatch.setattr(cellpose.models, "cache_model_path", lambda basename: basename)


def test_segmentation_names_match_reference() -> None:
    ours = {m.name for m in CELLPOSE_ZOO if m.role == "segment"}
    assert ours == set(cellpose.models.MODEL_NAMES)


def test_restoration_names_match_reference_in_order() -> None:
    ours = [m.name for m in CELLPOSE_ZOO if m.role == "restore"]
    assert ours == list(cellpose.denoise.MODEL_NAMES)
    assert len(ours) == 38


@pytest.mark.usefixtures("reference_paths")
def test_basenames_match_reference() -> None:
    for info in CELLPOSE_ZOO:
        assert info.basename == cellpose.models.model_path(info.name), info.name


@pytest.mark.usefixtures("reference_paths")
def test_size_models_match_reference() -> None:
    for info in CELLPOSE_ZOO:
        if info.name in ("cyto", "cyto2", "cyto3", "nuclei"):
            assert info.size_model == cellpose.models.size_model_path(info.name)
        else:
            assert info.size_model is None
            with pytest.raises(FileNotFoundError):
                cellpose.models.size_model_path(info.name)


def test_roles_channels_and_diam_mean() -> None:
    for info in CELLPOSE_ZOO:
        if info.role == "restore":
            assert (info.nchan, info.nout) == (1, 1)
            assert info.diam_mean == (17.0 if "nuclei" in info.name else 30.0)
        else:
            assert info.nout == 3
            assert info.diam_mean == (17.0 if info.name == "nuclei" else 30.0)
    assert ZOO.get("neurips_cellpose_default").nchan == 3
    assert ZOO.get("neurips_grayscale_cyto2").nchan is None
    assert ZOO.get("upsample_nuclei").upsamples and not ZOO.get("denoise_nuclei").upsamples


def test_packaged_starter_models_are_registered() -> None:
    packaged = {m.name: m for m in ZOO if m.source == "package"}
    assert set(packaged) == {"cp3rt_nuclei", "cp3rt_denoise_nuclei"}
    assert packaged["cp3rt_nuclei"].role == "segment"
    assert packaged["cp3rt_denoise_nuclei"].role == "restore"
    assert all(m.diam_mean == 17.0 and m.resource.endswith(".onnx") for m in packaged.values())


@pytest.mark.parametrize("name", ["transformer_cp3", "neurips_cellpose_transformer"])
def test_transformer_models_refused_before_any_download(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CP3RT_ZOO_URL", "http://127.0.0.1:9/{basename}")  # would fail loudly
    assert not ZOO.get(name).supported
    with pytest.raises(ModelNotFoundError, match="not a CPnet"):
        resolve_weights(name)


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_weights("cyt03")
    assert "cyto3" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="denoise_cyto3"):
        resolve_weights("denoise_cyt3")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_weights("some/dir/model.pth")


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("role", {"role": "classify"}),
        ("diam_mean", {"diam_mean": 0.0}),
        ("nchan", {"nchan": 5}),
        ("nout", {"nout": 2}),
        ("sha256", {"sha256": "abc"}),
        ("resource", {"source": "package"}),
        ("basename", {"basename": "a/b"}),
    ],
)
def test_model_info_validation_names_the_field(field: str, kwargs: dict[str, object]) -> None:
    base: dict[str, object] = dict(name="m", basename="m", role="segment", diam_mean=30.0, nchan=2, nout=3)
    base.update(kwargs)
    with pytest.raises(ConfigError, match=field):
        ModelInfo(**base)  # type: ignore[arg-type]


def test_registry_rejects_duplicates_and_extends_without_mutation() -> None:
    extra = ModelInfo("cp3rt_test", "cp3rt_test", "segment", 17.0, 2, 3)
    bigger = ZOO.with_models(extra)
    assert "cp3rt_test" in bigger and "cp3rt_test" not in ZOO
    assert len(bigger) == len(ZOO) + 1
    with pytest.raises(ConfigError, match="twice"):
        Registry([extra, extra])
