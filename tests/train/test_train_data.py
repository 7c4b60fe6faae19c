"""Training data: pairing rules, channel handling, dropped images, diam_labels, flow cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cp3rt.errors import InputError
from cp3rt.runtime.dynamics.flows import masks_to_flows
from cp3rt.train import data as train_data
from cp3rt.train.data import (
    FlowCache,
    as_channels,
    find_pairs,
    load_training_set,
    mean_diameter,
)

from conftest import write_synth_set


def test_pairs_from_masks_folder_and_from_suffix(tmp_path: Path) -> None:
    write_synth_set(tmp_path / "a", 3, seed=1)
    pairs = find_pairs(tmp_path / "a" / "images", tmp_path / "a" / "masks")
    assert [(i.name, m.name) for i, m in pairs] == [(f"s0{k}.tif", f"s0{k}.tif") for k in range(3)]
    write_synth_set(tmp_path / "b", 2, seed=1, layout="suffix")
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    pairs = find_pairs(tmp_path / "b")
    assert [(i.name, m.name) for i, m in pairs] == [
        ("s00.tif", "s00_masks.tif"), ("s01.tif", "s01_masks.tif")]


def test_unpaired_image_and_empty_folder_are_user_errors(tmp_path: Path) -> None:
    write_synth_set(tmp_path, 2, seed=1, layout="suffix")
    (tmp_path / "s01_masks.tif").unlink()
    with pytest.raises(InputError, match="s01.tif has no mask"):
        find_pairs(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        find_pairs(tmp_path / "empty")
    with pytest.raises(InputError, match="not a folder"):
        find_pairs(tmp_path / "missing")


def test_as_channels_takes_first_channels_and_pads_with_zeros() -> None:
    gray = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    rgb_last = np.stack([gray, 2 * gray, 3 * gray], axis=-1)
    two_first = np.stack([gray, 2 * gray])
    out = as_channels(gray, 2, "g.tif")
    np.testing.assert_array_equal(out, np.stack([gray, np.zeros_like(gray)]))
    np.testing.assert_array_equal(as_channels(rgb_last, 2, "c.tif"), np.stack([gray, 2 * gray]))
    np.testing.assert_array_equal(as_channels(two_first, 1, "t.tif"), gray[None])
    np.testing.assert_array_equal(as_channels(two_first, 3, "t.tif"),
                                  np.stack([gray, 2 * gray, np.zeros_like(gray)]))


def test_bad_image_shape_names_the_file() -> None:
    with pytest.raises(InputError, match="odd.tif"):
        as_channels(np.zeros((8, 20, 30)), 2, "odd.tif")


def test_few_mask_images_dropped_and_diam_labels_is_mean_of_clamped_medians(tmp_path: Path) -> None:
    write_synth_set(tmp_path, 3, seed=2)
    few = np.zeros((96, 96), np.uint16)
    few[10:20, 10:20] = 1
    few[40:43, 40:43] = 2  # a 3x3 object: diameter < 5 is clamped to 5
    tifffile.imwrite(tmp_path / "images" / "few.tif", np.ones((96, 96), np.float32))
    tifffile.imwrite(tmp_path / "masks" / "few.tif", few)
    pairs = find_pairs(tmp_path / "images", tmp_path / "masks")
    items, dropped = load_training_set(pairs, nchan=2, min_masks=5, cache=FlowCache())
    assert dropped == ["few.tif"] and len(items) == 3
    want = []
    for name in ("s00.tif", "s01.tif", "s02.tif"):
        m = tifffile.imread(tmp_path / "masks" / name)
        areas = np.array([np.sum(m == k) for k in range(1, m.max() + 1) if np.any(m == k)])
        want.append(max(5.0, np.median(np.sqrt(areas)) / (np.sqrt(np.pi) / 2)))
    assert mean_diameter(items) == pytest.approx(np.mean(want), rel=1e-9)
    items, _ = load_training_set(pairs, nchan=2, min_masks=0, cache=FlowCache())
    few_item = next(it for it in items if it.name == "few.tif")
    # median of sqrt(areas) 10 and 3 is 6.5 -> 7.33 px: above the clamp here.
    assert few_item.diameter == pytest.approx(np.median([10.0, 3.0]) / (np.sqrt(np.pi) / 2))
    tiny = np.zeros((96, 96), np.uint16)
    tiny[5:7, 5:7] = 1
    tifffile.imwrite(tmp_path / "masks" / "few.tif", tiny)
    items, _ = load_training_set(pairs, nchan=2, min_masks=0, cache=FlowCache())
    assert next(it for it in items if it.name == "few.tif").diameter == 5.0  # clamped
    with pytest.raises(InputError, match="at least 500 masks"):
        load_training_set(pairs, nchan=2, min_masks=500, cache=FlowCache())


def test_labels_hold_cellprob_and_flows(tmp_path: Path) -> None:
    write_synth_set(tmp_path, 1, seed=3)
    items, _ = load_training_set(find_pairs(tmp_path / "images", tmp_path / "masks"), nchan=1,
                                 min_masks=1, cache=FlowCache())
    lab = items[0].labels()
    m = items[0].masks
    np.testing.assert_array_equal(lab[0], (m > 0).astype(np.float32))
    np.testing.assert_allclose(lab[1:], masks_to_flows(m), atol=1e-3)  # float16 storage


def test_flow_cache_on_disk_reuses_and_repairs(tmp_path: Path, monkeypatch) -> None:
    m = tifffile.imread(_one_mask(tmp_path))
    cache = FlowCache(tmp_path / "cache")
    first = cache.flows(m)
    files = list((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 1

    def fail(_):
        raise AssertionError("flows recomputed although cached")

    monkeypatch.setattr(train_data, "masks_to_flows", fail)
    np.testing.assert_array_equal(FlowCache(tmp_path / "cache").flows(m), first)
    files[0].write_bytes(b"damaged")
    monkeypatch.undo()
    np.testing.assert_array_equal(FlowCache(tmp_path / "cache").flows(m), first)
    assert np.load(files[0]).shape == first.shape  # rewritten


def _one_mask(folder: Path) -> Path:
    write_synth_set(folder / "set", 1, seed=4)
    return folder / "set" / "masks" / "s00.tif"


def test_mask_of_other_size_is_refused(tmp_path: Path) -> None:
    write_synth_set(tmp_path, 1, seed=5)
    tifffile.imwrite(tmp_path / "masks" / "s00.tif", np.zeros((10, 10), np.uint16))
    with pytest.raises(InputError, match="same 2-D size"):
        load_training_set(find_pairs(tmp_path / "images", tmp_path / "masks"), nchan=1,
                          min_masks=0, cache=FlowCache())
