"""Config validation (one sentence naming field and range) and the `cp3rt train` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cp3rt.cli.app import main
from cp3rt.errors import ConfigError
from cp3rt.models.weights import read_weight_file
from cp3rt.train.config import RestoreTrainConfig, SegmentTrainConfig

from conftest import TINY_NBASE


@pytest.mark.parametrize("field,value,pattern", [
    ("epochs", 0, "epochs=0 .*>= 1"),
    ("crop", 100, "crop=100 .*multiple of 16"),
    ("crop", 16, "crop=16 .*>= 32"),
    ("learning_rate", -1.0, "learning_rate=-1.0 .*> 0"),
    ("nbase", (32,), "nbase=\\[32\\]"),
    ("scale_range", 3.0, "scale_range=3.0 .*<= 2"),
    ("diam_mean", 0.0, "diam_mean=0.0"),
])
def test_segment_config_errors_name_field_and_range(field, value, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        SegmentTrainConfig(images=Path("i"), out=Path("o"), **{field: value})


def test_restore_config_errors() -> None:
    base = dict(segmenter=Path("s"), images=Path("i"), out=Path("o"))
    with pytest.raises(ConfigError, match="task='denoize'.*denoise"):
        RestoreTrainConfig(task="denoize", **base)
    with pytest.raises(ConfigError, match="all 0"):
        RestoreTrainConfig(task="denoise", lam_per=0, lam_seg=0, lam_rec=0, **base)
    with pytest.raises(ConfigError, match="canvas=64 .*>= 224"):
        RestoreTrainConfig(task="denoise", canvas=64, **base)
    cfg = RestoreTrainConfig(task="denoise", **base)
    assert cfg.lam == (1.0, 1.5, 0.0)  # §7.1 defaults, [per, seg, rec]
    assert cfg.checkpoint_path == Path("o.ckpt")


def test_cli_train_segment_then_restore(synth_set: Path, tmp_path: Path, capsys) -> None:
    seg = tmp_path / "seg"
    nbase = ",".join(map(str, TINY_NBASE))
    rc = main(["train", "segment", "--images", str(synth_set / "images"), "--masks",
               str(synth_set / "masks"), "--out", str(seg), "--nbase", nbase, "--diam-mean", "17",
               "--epochs", "2", "--crop", "32", "--batch-size", "6"])
    assert rc == 0, capsys.readouterr()
    wf = read_weight_file(seg)
    assert (wf.nchan, wf.nout, wf.diam_mean) == (2, 3, 17.0)
    assert wf.nbase == (2, *TINY_NBASE)
    assert "wrote" in capsys.readouterr().out
    dn = tmp_path / "dn"
    rc = main(["train", "restore", "--task", "denoise", "--segmenter", str(seg), "--images",
               str(synth_set / "images"), "--masks", str(synth_set / "masks"), "--out", str(dn),
               "--nbase", nbase, "--epochs", "1", "--crop", "32", "--canvas", "64",
               "--images-per-epoch", "3", "--lam-per", "0", "--lam-seg", "0", "--lam-rec", "1"])
    assert rc == 0, capsys.readouterr()
    wf = read_weight_file(dn)
    assert (wf.nchan, wf.nout, wf.diam_mean) == (1, 1, 17.0)  # diam_mean from the segmenter
    state = torch.load(str(dn) + ".ckpt", weights_only=True)
    assert state["settings"]["lam_rec"] == 1.0 and state["settings"]["lam_seg"] == 0.0


def test_cli_user_errors_are_one_line(tmp_path: Path, capsys) -> None:
    rc = main(["train", "segment", "--images", str(tmp_path), "--out", str(tmp_path / "o"),
               "--nbase", "16,x"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "--nbase" in err
    rc = main(["train", "segment", "--images", str(tmp_path / "nope"), "--out",
               str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and "nope is not a folder" in err


def _conv_weights(state: dict) -> dict:
    # Conv/Linear weights only: BatchNorm running statistics move even at learning rate 0.
    return {k: v for k, v in state.items() if k.endswith(".weight") and v.ndim >= 2}


def test_cli_fine_tunes_from_a_weight_file(synth_set: Path, tiny_segmenter: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ft"
    nbase = ",".join(map(str, TINY_NBASE))
    # One epoch runs at learning rate 0 (warm-up starts at 0), so the weights must come back
    # exactly as the pretrained file holds them: a random initialisation would not.
    rc = main(["train", "segment", "--images", str(synth_set / "images"), "--masks", str(synth_set / "masks"),
               "--out", str(out), "--nbase", nbase, "--diam-mean", "17", "--epochs", "1", "--crop", "32",
               "--batch-size", "6", "--pretrained", str(tiny_segmenter)])
    assert rc == 0, capsys.readouterr()
    before = _conv_weights(read_weight_file(tiny_segmenter).state_dict)
    after = read_weight_file(out)
    assert before and all(torch.equal(after.state_dict[k], v) for k, v in before.items())
    # diam_labels comes from the new training set, as when training from scratch.
    assert after.diam_labels != read_weight_file(tiny_segmenter).diam_labels


def test_cli_fine_tunes_a_shipped_onnx_model(synth_set: Path, tmp_path: Path, capsys) -> None:
    from cp3rt.export.from_onnx import recover_weight_file
    from cp3rt.zoo.resolve import resolve_weights

    out = tmp_path / "ft"
    rc = main(["train", "segment", "--images", str(synth_set / "images"), "--masks", str(synth_set / "masks"),
               "--out", str(out), "--nbase", "16,32,64,128", "--diam-mean", "17", "--epochs", "1",
               "--crop", "32", "--batch-size", "6", "--pretrained", "cp3rt_nuclei"])
    assert rc == 0, capsys.readouterr()
    shipped = read_weight_file(recover_weight_file(resolve_weights("cp3rt_nuclei"), tmp_path / "recovered"))
    after = read_weight_file(out)
    assert all(torch.equal(after.state_dict[k], v) for k, v in _conv_weights(shipped.state_dict).items())


def test_cli_pretrained_of_another_shape_is_one_line(synth_set: Path, tiny_segmenter: Path, tmp_path: Path,
                                                     capsys) -> None:
    rc = main(["train", "segment", "--images", str(synth_set / "images"), "--masks", str(synth_set / "masks"),
               "--out", str(tmp_path / "o"), "--nbase", "16,32,64,128", "--diam-mean", "17", "--epochs", "1",
               "--crop", "32", "--pretrained", str(tiny_segmenter)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.count("\n") == 0
    assert "--pretrained" in err and "nbase [2, 8, 16, 32, 64]" in err and "nbase [2, 16, 32, 64, 128]" in err
    assert not (tmp_path / "o").exists()


def test_cli_refits_a_shipped_restorer_to_another_segmenter(synth_set: Path, tiny_segmenter: Path,
                                                            tmp_path: Path, capsys) -> None:
    from cp3rt.export.from_onnx import recover_weight_file
    from cp3rt.zoo.resolve import resolve_weights

    out = tmp_path / "dn"
    rc = main(["train", "restore", "--task", "denoise", "--segmenter", str(tiny_segmenter), "--images",
               str(synth_set / "images"), "--masks", str(synth_set / "masks"), "--out", str(out),
               "--nbase", "16,32,64,128", "--epochs", "1", "--crop", "32", "--canvas", "64",
               "--images-per-epoch", "3", "--pretrained", "cp3rt_denoise_nuclei"])
    assert rc == 0, capsys.readouterr()
    shipped = read_weight_file(recover_weight_file(resolve_weights("cp3rt_denoise_nuclei"), tmp_path / "rec"))
    after = read_weight_file(out)
    assert all(torch.equal(after.state_dict[k], v) for k, v in _conv_weights(shipped.state_dict).items())
