"""A cp3rt ``_seg.npy`` opened by the Cellpose GUI's own loader, without a display.

What runs: ``cellpose.gui.io._load_seg`` of the installed reference (3.1.1.2), unmodified, with
its helpers ``_initialize_images`` and ``_masks_to_gui`` (the module imports without Qt: its Qt
import is optional, and ``_load_seg`` opens no dialog when given a file name). Only the GUI
window is stood in for, by ``_Window`` below: the attributes and methods the loader touches,
no ``__getattr__`` catch-all, so a loader that starts touching something new fails here.

The case that failed: ``cp3rt run imgs/a.tif --out out --save-seg`` stored ``filename`` as
typed (``imgs/a.tif``); the GUI, started from another folder, found neither that path nor
``out/a.tif`` and stopped with "no image file found and no image in npy".
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import tifffile

from cp3rt.runtime.io import write_seg_npy

import cellpose.gui.io as gui_io


@dataclasses.dataclass
class _Result:  # the attributes write_seg_npy reads from cp3rt.runtime.result.Result
    masks: np.ndarray
    dP: np.ndarray
    cellprob: np.ndarray
    diameter: float
    restored: np.ndarray | None = None


class _Widget:
    """A combo box / line edit / list model: records what the loader sets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def setCurrentIndex(self, i):  # noqa: N802 - Qt's names
        self.calls.append(("setCurrentIndex", (i,)))

    def setText(self, text):  # noqa: N802
        self.calls.append(("setText", (text,)))

    def count(self):
        return 3

    def model(self):
        return self

    def item(self, i):
        return self

    def setEnabled(self, on):  # noqa: N802
        self.calls.append(("setEnabled", (on,)))

    def isChecked(self):  # noqa: N802 - the "normalize" check box, on by default in the GUI
        return True


class _Window:
    """Stand-in for cellpose.gui.gui.MainW: what _load_seg and its helpers read or call."""

    def __init__(self) -> None:
        self.load_3D = False
        self.restore = None
        self.colormap = np.random.default_rng(0).integers(0, 255, (1000, 3)).astype(np.uint8)
        self.ChannelChoose = [_Widget(), _Widget()]
        self.Diameter = _Widget()
        self.RGBDropDown = _Widget()
        self.ViewDropDown = _Widget()
        self.autobtn = _Widget()
        self.calls: list[str] = []

    def _call(name):  # noqa: N805 - builds the no-op methods below
        def method(self, *args, **kwargs):
            self.calls.append(name)
        return method

    reset = _call("reset")
    set_restore_button = _call("set_restore_button")
    set_normalize_params = _call("set_normalize_params")
    draw_layer = _call("draw_layer")
    toggle_mask_ops = _call("toggle_mask_ops")
    compute_scale = _call("compute_scale")
    enable_buttons = _call("enable_buttons")
    update_layer = _call("update_layer")
    clear_all = _call("clear_all")
    compute_saturation = _call("compute_saturation")
    compute_restore = _call("compute_restore")


def _masks(shape=(64, 80)):
    m = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate([(10, 12), (30, 40), (50, 65), (20, 60)], start=1):
        m[y - 6:y + 6, x - 7:x + 7] = k
    return m


@pytest.mark.parametrize("restored", [False, True])
def test_gui_loader_finds_image_and_masks_from_another_folder(tmp_path, monkeypatch, restored):
    work = tmp_path / "work"
    (work / "imgs").mkdir(parents=True)
    (work / "out").mkdir()
    image = np.random.default_rng(1).integers(0, 4000, (64, 80)).astype(np.uint16)
    tifffile.imwrite(work / "imgs" / "a.tif", image)
    masks = _masks()
    dp = np.random.default_rng(2).normal(size=(2, *masks.shape)).astype(np.float32)
    prob = np.random.default_rng(3).normal(size=masks.shape).astype(np.float32)
    rest = image[None].astype(np.float32) / 4000 if restored else None
    monkeypatch.chdir(work)  # the user typed relative paths, as `cp3rt run imgs/a.tif --out out`
    seg = write_seg_npy("out/a_seg.npy", _Result(masks, dp, prob, 21.0, rest),
                        image_path="imgs/a.tif", channels=(0, 0),
                        restore_type="denoise_cyto3" if restored else None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the GUI is started from somewhere else

    win = _Window()
    gui_io._load_seg(win, filename=str(work / seg))

    assert win.loaded
    assert win.filename == str(work / "imgs" / "a.tif")  # found the image, not the npy fallback
    assert os.path.isabs(win.filename)
    assert win.stack.shape == (1, *image.shape, 1)  # the image file was read (Z, Y, X, C)
    want = (image - image.min()) / (image.max() - image.min()) * 255
    np.testing.assert_allclose(win.stack[0, ..., 0], want, rtol=1e-5, atol=1e-3)
    assert win.ncells == 4
    np.testing.assert_array_equal(win.cellpix[0], masks)
    assert win.cellpix.dtype == np.uint16
    assert win.outpix.shape == win.cellpix.shape
    assert win.ismanual.shape == (4,) and not win.ismanual.any()
    assert win.recompute_masks  # flows of the mask's size: the GUI can re-run dynamics
    assert win.ChannelChoose[0].calls == [("setCurrentIndex", (0,))]
    if restored:
        assert win.restore == "denoise_cyto3"
        assert win.stack_filtered.shape[:3] == (1, *image.shape)
