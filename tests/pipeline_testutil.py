"""Support for the pipeline/parity/CLI tests (a uniquely named module: tests/ has no packages).

* Weight files written by the reference ``cellpose==3.1.1.2`` CPnet itself, with random
  weights and randomised BatchNorm statistics, placed under zoo file names in a folder that
  both the reference (``cellpose.models.MODEL_DIR``) and cp3rt (``CELLPOSE_LOCAL_MODELS_PATH``)
  read. A random net's output head is tiny, which gives no masks; the segmentation head is
  therefore scaled so that flows have the magnitude of a trained net's (|flow| ~ 5) and the
  cell-probability logits a spread of ~1 around 0, so the dynamics produce hundreds of masks.
  The restoration head is scaled to give O(1) intensities like a trained restoration net.
* A runner for the reference (test oracle only) and comparison helpers that print the worst
  element and the mismatch rate.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# Output-head calibration targets (per output channel: mean, std over a real image tile).
SEG_TARGETS = ((0.0, 5.0), (0.0, 5.0), (0.3, 1.5))  # dY, dX ~ trained |flow|; ~40 % foreground
RESTORE_TARGETS = ((0.5, 0.3),)                      # restored intensity in normalised units
CALIBRATION_IMAGE = "stardist_dsb2018_nuclei/images/img2d.tif"

SEG_MODELS = ("cyto3",)
RESTORE_MODELS = ("denoise_cyto3", "upsample_cyto3", "denoise_nuclei")


def data_image(relpath: str) -> np.ndarray:
    return tifffile.imread(DATA / relpath)


def _randomise_bn(net, gen) -> None:
    import torch

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.rand(c, generator=gen) - 0.1)
                m.running_var.copy_(0.75 + 0.5 * torch.rand(c, generator=gen))
                m.weight.copy_(0.75 + 0.5 * torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.rand(c, generator=gen) - 0.1)


def write_reference_net(path: Path, *, nchan: int, nout: int, seed: int) -> Path:
    """A random CPnet written by the reference's own ``save_model`` (a bare state dict)."""
    import torch
    from cellpose.resnet_torch import CPnet as RefCPnet

    torch.manual_seed(seed)
    net = RefCPnet([nchan, 32, 64, 128, 256], nout, 3)
    _randomise_bn(net, torch.Generator().manual_seed(seed + 1))
    _calibrate_head(net, nchan, SEG_TARGETS if nout == 3 else RESTORE_TARGETS)
    net.save_model(str(path))
    return path


def _calibrate_head(net, nchan: int, targets) -> None:
    """Rescale the last 1x1 conv so each output channel has the target mean/std on a real tile.

    The head is affine in its weights, so ``s * (y - mean) + target`` is exact.
    """
    import torch

    img = data_image(CALIBRATION_IMAGE)[:224, :224].astype(np.float32)
    lo, hi = np.percentile(img, (1, 99))
    tile = np.zeros((1, nchan, 224, 224), np.float32)
    tile[0, 0] = (img - lo) / (hi - lo)
    net.eval()
    with torch.no_grad():
        y = net(torch.from_numpy(tile))[0][0].numpy().astype(np.float64)
        head = net.output[2]
        for c, (mean, std) in enumerate(targets):
            scale = std / y[c].std()
            head.weight[c] *= scale
            head.bias[c] = float((head.bias[c].item() - y[c].mean()) * scale + mean)


def write_zoo(folder: Path) -> Path:
    """Random-weight files under the zoo names the tests use."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(SEG_MODELS):
        write_reference_net(folder / name, nchan=2, nout=3, seed=100 + i)
    for i, name in enumerate(RESTORE_MODELS):
        write_reference_net(folder / name, nchan=1, nout=1, seed=200 + i)
    return folder


@contextlib.contextmanager
def zoo_env(models_dir: Path, cache_dir: Path) -> Iterator[None]:
    """Point cp3rt (env vars) and the reference (its module global) at ``models_dir``."""
    import cellpose.models as ref_models

    saved = {k: os.environ.get(k) for k in ("CELLPOSE_LOCAL_MODELS_PATH", "CP3RT_CACHE_DIR")}
    saved_dir = ref_models.MODEL_DIR
    os.environ["CELLPOSE_LOCAL_MODELS_PATH"] = str(models_dir)
    os.environ["CP3RT_CACHE_DIR"] = str(cache_dir)
    ref_models.MODEL_DIR = Path(models_dir)
    try:
        yield
    finally:
        ref_models.MODEL_DIR = saved_dir
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---- the reference oracle --------------------------------------------------------------------

@contextlib.contextmanager
def stable_seed_order() -> Iterator[None]:
    """Run the reference with stable tensor sorts.

    The reference orders mask seeds by count with an unstable ``Tensor.argsort`` (§4.4, §4.10),
    so which of two equal-count seeds wins an overlap is unspecified; cp3rt takes raster order.
    A stable sort is one of the orders the reference may produce, and the one cp3rt documents,
    so the oracle is made deterministic with it (with hundreds of masks, ties do occur).
    """
    import torch

    original = torch.Tensor.argsort

    def argsort(self, *args, **kwargs):
        kwargs["stable"] = True
        return original(self, *args, **kwargs)

    torch.Tensor.argsort = argsort
    try:
        yield
    finally:
        torch.Tensor.argsort = original


def reference_segment(img: np.ndarray, **kwargs):
    """``CellposeModel(model_type='cyto3').eval`` on CPU -> (masks, dP, cellprob)."""
    from cellpose import models

    model = models.CellposeModel(gpu=False, model_type="cyto3")
    with stable_seed_order():
        masks, flows, _ = model.eval(img, **kwargs)
    return masks, flows[1], flows[2]


def reference_restore_segment(img: np.ndarray, restore_type: str, **kwargs):
    """``CellposeDenoiseModel(...).eval`` on CPU -> (masks, dP, cellprob, restored (Y, X, C))."""
    from cellpose import denoise

    model = denoise.CellposeDenoiseModel(gpu=False, model_type="cyto3", restore_type=restore_type)
    with stable_seed_order():
        masks, flows, _, restored = model.eval(img, **kwargs)
    return masks, flows[1], flows[2], restored


# ---- comparisons -----------------------------------------------------------------------------

def mismatch_report(name: str, got: np.ndarray, want: np.ndarray, atol: float, rtol: float = 0.0) -> str:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        return f"{name}: shape {got.shape} != reference {want.shape}"
    diff = np.abs(got - want)
    excess = diff - (atol + rtol * np.abs(want))
    worst = np.unravel_index(int(np.argmax(excess)), diff.shape)
    return (
        f"{name}: |diff| {diff[worst]:.3g} exceeds atol {atol:g} + rtol {rtol:g} * |reference| at "
        f"{tuple(int(i) for i in worst)} (got {got[worst]:.6g}, reference {want[worst]:.6g}); "
        f"max |diff| {diff.max():.3g}; mismatch rate {float((excess > 0).mean()):.3%}"
    )


def assert_close(name: str, got: np.ndarray, want: np.ndarray, atol: float, rtol: float = 0.0) -> None:
    """|got - want| <= atol + rtol * |want| everywhere (numpy.isclose semantics)."""
    got = np.asarray(got)
    want = np.asarray(want)
    ok = got.shape == want.shape and bool(
        np.all(np.abs(got.astype(np.float64) - want.astype(np.float64))
               <= atol + rtol * np.abs(want.astype(np.float64)))
    )
    assert ok, mismatch_report(name, got, want, atol, rtol)


def match_masks(got: np.ndarray, want: np.ndarray) -> tuple[float, float, int, int]:
    """(AP@0.5, AP@0.9, n_got, n_reference) with the reference's own matching (oracle)."""
    from cellpose import metrics

    assert got.shape == want.shape, f"masks shape {got.shape} != reference {want.shape}"
    ap, _, _, _ = metrics.average_precision(
        want.astype(np.int64), got.astype(np.int64), threshold=[0.5, 0.9]
    )
    return float(ap[0]), float(ap[1]), int(len(np.unique(got)) - 1), int(len(np.unique(want)) - 1)
