"""read_weight_file: real v3 files load; everything else is refused with one clear sentence."""

from __future__ import annotations

import collections
import hashlib
import pickle
from pathlib import Path

import pytest
import torch

from cp3rt.errors import WeightFileError
from cp3rt.models.weights import load_cpnet, read_weight_file


class NotATensor:
    """A pickled custom object: weights_only loading must refuse it."""


def _ref_state(ref_seg) -> collections.OrderedDict:
    return torch.load(ref_seg.path, map_location="cpu", weights_only=True)


def _refused(path: Path, *phrases: str) -> str:
    with pytest.raises(WeightFileError) as info:
        read_weight_file(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    for phrase in phrases:
        assert phrase in msg, msg
    return msg


@pytest.mark.reference
def test_reads_reference_segmentation_file(ref_seg) -> None:
    wf = read_weight_file(ref_seg.path)
    assert (wf.nchan, wf.nout, wf.nbase) == (2, 3, (2, 32, 64, 128, 256))
    assert (wf.diam_mean, wf.diam_labels) == (30.0, 21.5)
    assert wf.sha256 == hashlib.sha256(ref_seg.path.read_bytes()).hexdigest()
    assert len(wf.state_dict) == 313


@pytest.mark.reference
def test_reads_reference_restoration_file(ref_restore) -> None:
    wf = read_weight_file(ref_restore.path)
    assert (wf.nchan, wf.nout, wf.nbase) == (1, 1, (1, 32, 64, 128, 256))


def test_missing_diameters_are_none_and_net_still_loads(ref_seg, tmp_path: Path) -> None:
    sd = _ref_state(ref_seg)
    del sd["diam_mean"], sd["diam_labels"]
    torch.save(sd, tmp_path / "nodiam")
    wf = read_weight_file(tmp_path / "nodiam")
    assert wf.diam_mean is None and wf.diam_labels is None
    net = load_cpnet(wf)
    assert float(net.diam_mean) == 30.0 and not net.training


def test_module_prefix_is_stripped(ref_seg, tmp_path: Path) -> None:
    sd = {f"module.{k}": v for k, v in _ref_state(ref_seg).items()}
    torch.save(sd, tmp_path / "dp")
    assert "output.2.weight" in read_weight_file(tmp_path / "dp").state_dict


def test_state_dict_wrapper_is_unwrapped(ref_seg, tmp_path: Path) -> None:
    torch.save({"state_dict": _ref_state(ref_seg), "epoch": 3}, tmp_path / "ckpt")
    assert read_weight_file(tmp_path / "ckpt").nout == 3


def test_legacy_torch_format_loads(ref_seg, tmp_path: Path) -> None:
    torch.save(_ref_state(ref_seg), tmp_path / "legacy", _use_new_zipfile_serialization=False)
    assert read_weight_file(tmp_path / "legacy").nbase == (2, 32, 64, 128, 256)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_refuses_cellpose4_sam_file(tmp_path: Path, prefix: str) -> None:
    sd = {
        "encoder.patch_embed.proj.weight": torch.zeros(8, 3, 8, 8),
        "encoder.pos_embed": torch.zeros(1, 4, 4, 8),
        "encoder.blocks.0.attn.qkv.weight": torch.zeros(24, 8),
        "out.weight": torch.zeros(192, 8, 1, 1),
        "out.bias": torch.zeros(192),
        "W2": torch.zeros(192, 3, 8, 8),
        "diam_labels": torch.tensor([30.0]),
        "diam_mean": torch.tensor([30.0]),
    }
    torch.save({prefix + k: v for k, v in sd.items()}, tmp_path / "cpsam")
    _refused(tmp_path / "cpsam", "Cellpose 4", "Cellpose-SAM", "Cellpose 3 CPnet")


def test_refuses_v3_transformer_file(tmp_path: Path) -> None:
    sd = {
        "net.encoder.patch_embed1.proj.weight": torch.zeros(8, 3, 7, 7),
        "net.decoder.p5.weight": torch.zeros(8, 8),
        "net.segmentation_head.0.weight": torch.zeros(3, 8, 3, 3),
    }
    torch.save(sd, tmp_path / "transformer_cp3")
    _refused(tmp_path / "transformer_cp3", "transformer", "not a CPnet")


def test_refuses_truncated_file(ref_seg, tmp_path: Path) -> None:
    data = ref_seg.path.read_bytes()
    (tmp_path / "half").write_bytes(data[: len(data) // 2])
    _refused(tmp_path / "half", "truncated, corrupt")


def test_refuses_pickled_list(tmp_path: Path) -> None:
    torch.save([torch.zeros(2), torch.ones(3)], tmp_path / "list.pt")
    _refused(tmp_path / "list.pt", "pickled list", "not a state dict")


def test_refuses_plain_pickle(tmp_path: Path) -> None:
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    _refused(tmp_path / "plain.pkl", "cannot be read as a PyTorch weight file")


def test_refuses_arbitrary_python_objects(tmp_path: Path) -> None:
    torch.save({"x": NotATensor()}, tmp_path / "objects")
    _refused(tmp_path / "objects", "Python objects other than tensors")


def test_refuses_training_checkpoint(ref_seg, tmp_path: Path) -> None:
    ckpt = {"model_state": _ref_state(ref_seg), "optimizer": {"lr": 0.1}, "epoch": 4}
    torch.save(ckpt, tmp_path / "ckpt")
    _refused(tmp_path / "ckpt", "'model_state'", "'optimizer'", "training checkpoint")


def test_refuses_wrong_shapes(ref_seg, tmp_path: Path) -> None:
    sd = _ref_state(ref_seg)
    sd["downsample.down.res_down_1.conv.conv_1.2.weight"] = torch.zeros(64, 64, 5, 5)
    sd["upsample.up.res_up_2.conv.conv_3.full.weight"] = torch.zeros(128, 255)
    torch.save(sd, tmp_path / "shapes")
    _refused(
        tmp_path / "shapes",
        "2 wrong shapes",
        "downsample.down.res_down_1.conv.conv_1.2.weight (64, 64, 5, 5) instead of (64, 64, 3, 3)",
    )


def test_refuses_missing_and_unexpected_keys(ref_seg, tmp_path: Path) -> None:
    sd = _ref_state(ref_seg)
    del sd["upsample.up.res_up_0.proj.1.bias"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "keys")
    _refused(tmp_path / "keys", "1 missing keys (upsample.up.res_up_0.proj.1.bias)",
             "1 unexpected keys (extra.weight)")


def test_refuses_dict_of_something_else(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other")
    _refused(tmp_path / "other", "not a Cellpose v3 CPnet state dict", "output.2.weight")


def test_refuses_non_finite_weights(ref_seg, tmp_path: Path) -> None:
    sd = _ref_state(ref_seg)
    sd["output.2.bias"][0] = float("nan")
    torch.save(sd, tmp_path / "nan")
    _refused(tmp_path / "nan", "NaN", "output.2.bias")


def test_refuses_missing_file(tmp_path: Path) -> None:
    _refused(tmp_path / "nope", "does not exist")
