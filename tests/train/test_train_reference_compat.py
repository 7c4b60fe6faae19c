"""Weight files written by the cp3rt trainers load in cellpose==3.1.1.2 and agree with cp3rt.

A standard-width net (nbase [2, 32, 64, 128, 256], as Cellpose builds it) is trained briefly on
synthetic nuclei, then segmented by the reference CellposeModel and by the cp3rt Pipeline;
masks are compared by matching (AP), never label by label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cellpose import denoise as ref_denoise
from cellpose import models as ref_models

from cp3rt.models.weights import load_cpnet
from cp3rt.runtime.quality.metrics import average_precision
from cp3rt.train.config import RestoreTrainConfig, SegmentTrainConfig
from cp3rt.train.data import FlowCache, find_pairs, load_training_set
from cp3rt.train.restore import train_restore
from cp3rt.train.segment import segment_batch, train_segment
from cp3rt.train.synth import SynthNuclei, synth_nuclei

from conftest import TINY_NBASE

STANDARD_NBASE = (32, 64, 128, 256)
MIN_AP50_VS_REFERENCE = 0.9   # cp3rt masks matched against the reference's masks
MIN_MASKS = 5                 # the brief training must give a non-trivial segmentation
NET_ATOL = 1e-4               # restoration net output, same float32 maths
MIN_AP50_VS_TRUTH = 0.5       # sanity: the compared masks are real segmentations
BN_CALIBRATION_BATCHES = 10


@pytest.fixture(scope="module")
def standard_seg(synth_set: Path, tmp_path_factory: pytest.TempPathFactory):
    """(trainer-written file, BN-calibrated copy, TrainResult) after 12 training steps.

    Twelve steps already give usable masks, but BN running statistics (momentum 0.05) are far
    from converged after so few steps, so eval-mode outputs explode. The copy re-estimates
    them from training batches (forward passes only) and is saved by cp3rt's CPnet.save.
    """
    folder = tmp_path_factory.mktemp("std")
    cfg = SegmentTrainConfig(
        images=synth_set / "images", masks=synth_set / "masks", out=folder / "std_nuclei",
        nbase=STANDARD_NBASE, diam_mean=17.0, epochs=12, images_per_epoch=8, batch_size=8,
        crop=48, learning_rate=0.01, seed=0,
    )
    result = train_segment(cfg)
    net = load_cpnet(cfg.out)
    items, _ = load_training_set(find_pairs(cfg.images, cfg.masks), nchan=2, min_masks=5,
                                 cache=FlowCache())
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    rng = np.random.default_rng(0)
    net.train()
    with torch.no_grad():
        for _ in range(BN_CALIBRATION_BATCHES):
            net(segment_batch(items, np.arange(len(items)), rng, cfg)[0])
    for bn in bns:
        bn.momentum = 0.05
    calibrated = net.eval().save(folder / "std_nuclei_calibrated")
    return cfg.out, calibrated, result


def _test_image() -> tuple[np.ndarray, np.ndarray]:
    img, masks = synth_nuclei(np.random.default_rng(99),
                              SynthNuclei(shape=(128, 128), diameter=(14.0, 18.0), photons=(500, 500)))
    return img, masks


@pytest.mark.reference
@pytest.mark.slow
def test_segment_weights_load_and_match_in_reference(standard_seg, tmp_path: Path) -> None:
    from cp3rt.runtime.pipeline import Pipeline

    trained, calibrated, result = standard_seg
    img, truth = _test_image()
    # The trainer's own file: the reference loads it and reads both diameters (§1.5).
    ref = ref_models.CellposeModel(gpu=False, pretrained_model=str(trained))
    assert ref.diam_mean == pytest.approx(17.0)
    assert ref.diam_labels == pytest.approx(result.diam_labels, rel=1e-6)
    ref = ref_models.CellposeModel(gpu=False, pretrained_model=str(calibrated))
    ref_masks = ref.eval(img, channels=[0, 0], diameter=17.0)[0]
    with Pipeline(segment=str(calibrated), backend="torch", cache_dir=tmp_path) as pipe:
        ours = pipe.run(img, diameter=17.0, channels=(0, 0)).masks
    n_ref = int(ref_masks.max())
    ap, tp, fp, fn = average_precision(ref_masks, ours, [0.5, 0.75, 0.9])
    ap_truth = average_precision(truth, ref_masks, [0.5])[0][0]
    msg = (f"reference {n_ref} masks (AP@0.5 vs truth {ap_truth:.3f}), cp3rt {int(ours.max())}; "
           f"AP {ap}, TP {tp}, FP {fp}, FN {fn}")
    assert n_ref >= MIN_MASKS and ap_truth >= MIN_AP50_VS_TRUTH, msg
    assert ap[0] >= MIN_AP50_VS_REFERENCE, msg


@pytest.mark.reference
def test_restore_weights_load_in_reference(synth_set: Path, tiny_segmenter: Path,
                                           tmp_path: Path) -> None:
    """A restoration file (nchan 1, nout 1) loads in DenoiseModel and gives the same net output.

    DenoiseModel always builds the standard width, so the restore net is trained at that width.
    """
    out = tmp_path / "std_denoise"
    train_restore(RestoreTrainConfig(
        task="denoise", segmenter=tiny_segmenter, images=synth_set / "images",
        masks=synth_set / "masks", out=out, nbase=STANDARD_NBASE, epochs=1,
        images_per_epoch=2, batch_size=2, crop=32, canvas=64,
    ))
    dn = ref_denoise.DenoiseModel(gpu=False, pretrained_model=str(out))
    ours = load_cpnet(out)
    assert ours.nbase == (1, *STANDARD_NBASE) and ours.nout == 1
    x = torch.rand(2, 1, 64, 64)
    ref_net = dn.net.eval()
    ref_net.mkldnn = False
    with torch.no_grad():
        want = ref_net(x)[0]
        got = ours(x)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=NET_ATOL)
    assert tuple(TINY_NBASE) != STANDARD_NBASE  # the other tests use the tiny width
