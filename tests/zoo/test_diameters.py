"""runtime_diameters against the reference's CellposeModel / DenoiseModel constructors (§1.5, §2.3).

Random-weight files with chosen diam keys are written under zoo file names into a temporary
reference model folder; the reference then reports which diam_mean/diam_labels it would use.
"""

from __future__ import annotations

from pathlib import Path

import cellpose.denoise
import cellpose.models
import cellpose.resnet_torch
import pytest
import torch

from cp3rt.zoo import runtime_diameters

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def seg_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return cellpose.resnet_torch.CPnet([2, 32, 64, 128, 256], 3, 3).state_dict()


@pytest.fixture(scope="module")
def restore_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return cellpose.resnet_torch.CPnet([1, 32, 64, 128, 256], 1, 3).state_dict()


@pytest.fixture
def ref_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "ref-models"
    folder.mkdir()
    monkeypatch.setattr(cellpose.models, "MODEL_DIR", folder)
    monkeypatch.setattr(cellpose.models, "MODEL_LIST_PATH", str(folder / "gui_models.txt"))
    return folder


def _write(state: dict[str, torch.Tensor], path: Path, diam_mean: float | None,
           diam_labels: float | None) -> Path:
    sd = dict(state)
    for key, value in (("diam_mean", diam_mean), ("diam_labels", diam_labels)):
        if value is None:
            sd.pop(key)
        else:
            sd[key] = torch.full((1,), value)
    torch.save(sd, path)
    return path


def _reference_seg(**kwargs: object) -> tuple[float, float]:
    model = cellpose.models.CellposeModel(gpu=False, **kwargs)
    return float(model.diam_mean), float(model.diam_labels)


@pytest.mark.parametrize(
    ("spec", "basename", "by_name", "file_diams"),
    [
        ("cyto3", "cyto3", True, (45.0, 27.0)),  # zoo name: name-based diam_mean, file diam_labels
        ("nuclei", "nucleitorch_0", True, (30.0, 12.0)),  # nuclei by name -> 17 even if the file says 30
        ("cyto2torch_0", "cyto2torch_0", False, (45.0, 27.0)),  # a zoo file given by path is custom
        ("nucleitorch_0", "nucleitorch_0", False, (30.0, 12.0)),  # ...except nucleitorch_0
        ("my_model", "my_model", False, (21.5, 19.0)),
    ],
)
def test_segmentation_matches_reference(ref_dir: Path, seg_state: dict[str, torch.Tensor], spec: str,
                                        basename: str, by_name: bool, file_diams: tuple[float, float]) -> None:
    path = _write(seg_state, ref_dir / basename, *file_diams)
    if by_name:
        ref = _reference_seg(model_type=spec)
    else:
        ref = _reference_seg(pretrained_model=str(path))
    assert runtime_diameters(spec if by_name else path, *file_diams) == pytest.approx(ref)


@pytest.mark.parametrize("spec", ["denoise_nuclei", "upsample_cyto3", "deblur_seg_nuclei"])
def test_restoration_by_name_matches_reference(ref_dir: Path, restore_state: dict[str, torch.Tensor],
                                               spec: str) -> None:
    _write(restore_state, ref_dir / spec, 45.0, 45.0)
    ref = cellpose.denoise.DenoiseModel(gpu=False, model_type=spec).diam_mean
    assert runtime_diameters(spec, 45.0, 45.0, role="restore")[0] == ref


def test_restoration_by_path_matches_reference(ref_dir: Path, restore_state: dict[str, torch.Tensor]) -> None:
    path = _write(restore_state, ref_dir / "denoise_nuclei", 17.0, 17.0)
    ref = cellpose.denoise.DenoiseModel(gpu=False, pretrained_model=str(path)).diam_mean
    assert runtime_diameters(path, 17.0, 17.0, role="restore")[0] == ref == 30.0


def test_keyless_files_use_the_name_based_value() -> None:
    # Deliberate deviation (spec §1.5): the reference on CPU falls back to 30 even for nuclei.
    assert runtime_diameters("/models/nucleitorch_0", None, None) == (17.0, 17.0)
    assert runtime_diameters("nuclei", None, None) == (17.0, 17.0)
    assert runtime_diameters("/models/custom", None, None) == (30.0, 30.0)
    assert runtime_diameters("/models/custom", 25.0, None) == (25.0, 25.0)
