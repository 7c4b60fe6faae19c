"""Building, loading and freezing CPnets for training (torch side, like cp3rt.models)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from cp3rt.errors import WeightFileError
from cp3rt.models.cpnet import CPnet
from cp3rt.models.weights import load_cpnet

SEG_NOUT = 3       # flowY, flowX, cellprob logit
RESTORE_NOUT = 1   # restored intensity


def new_net(nchan: int, nbase: Sequence[int], nout: int, diam_mean: float, seed: int) -> CPnet:
    """A freshly initialised CPnet; the seed makes the initial weights reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CPnet([nchan, *nbase], nout, diam_mean=diam_mean)


def one_channel(net: CPnet) -> CPnet:
    """The 1-channel version of a segmentation net (spec §1.4, ``one_chan_cellpose``).

    The first encoder block's two BatchNorms keep element 0 of their per-channel vectors and
    its two convolutions keep input channel 0; everything else is copied. Not identical to
    feeding (image, zeros) to the original: the dropped channels' BN shifts no longer enter.
    """
    one = CPnet([1, *net.nbase[1:]], net.nout, diam_mean=float(net.diam_mean.item()))
    target = one.state_dict()
    source = net.state_dict()
    converted = {}
    for key, value in target.items():
        src = source[key]
        if src.shape != value.shape:
            # 1-D BN vectors: first element; 4-D conv weights: first input channel.
            src = src[:1] if src.ndim == 1 else src[:, :1]
        converted[key] = src.clone()
    one.load_state_dict(converted)
    return one


def pretrained_net(
    name_or_path: str | os.PathLike[str], *, nchan: int, nbase: Sequence[int], nout: int, diam_mean: float
) -> CPnet:
    """The net to fine-tune from: a zoo name, a Cellpose v3 weight file or a cp3rt-exported ONNX.

    Its shape and ``diam_mean`` must be the ones this run asks for: fine-tuning changes the
    weights, not what the net is (a different width would need new layers, a different
    ``diam_mean`` a different object scale than the net learnt).
    """
    import tempfile
    from pathlib import Path

    from cp3rt.zoo.resolve import resolve_weights

    path = resolve_weights(name_or_path)
    if path.suffix == ".onnx":
        from cp3rt.export.from_onnx import recover_weight_file

        with tempfile.TemporaryDirectory() as tmp:
            net = load_cpnet(recover_weight_file(path, Path(tmp) / "recovered"))
    else:
        net = load_cpnet(path)
    got = (list(net.nbase), net.nout, float(net.diam_mean.item()))
    want = ([nchan, *nbase], nout, float(diam_mean))
    if got != want:
        raise WeightFileError(
            f"--pretrained {name_or_path}: a net with nbase {got[0]}, {got[1]} outputs and diam_mean "
            f"{got[2]:g}; this run asks for nbase {want[0]}, {want[1]} outputs and diam_mean {want[2]:g} "
            "(pass matching --nchan/--nbase/--diam-mean)."
        )
    return net.train()


def freeze(net: CPnet) -> CPnet:
    """Eval mode (BN uses running statistics) and no gradients for the weights."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_segmenter(path: str | os.PathLike[str]) -> CPnet:
    """Load a segmentation weight file as the frozen 1-channel loss network of §7.1."""
    net = load_cpnet(path)
    if net.nout != SEG_NOUT:
        raise WeightFileError(
            f"{path}: has {net.nout} outputs but a segmentation net (3 outputs: flows + cellprob) "
            "is needed as --segmenter."
        )
    if net.nchan != 1:
        net = one_channel(net)
    return freeze(net)
