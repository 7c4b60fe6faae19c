"""``cp3rt eval --pictures``: matched / missed / extra objects, whose counts are the table's
TP / FN / FP, on shared ground truth with a prediction that misses, shifts and invents objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cp3rt.cli.app import main
from cp3rt.runtime.io.pictures import EXTRA, MATCHED, MISSED
from cp3rt.runtime.quality.eval_pictures import match_classes
from cp3rt.runtime.quality.metrics import match_image

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _spoiled(gt: np.ndarray) -> np.ndarray:
    pred = gt.copy()
    labels = np.unique(gt)[1:]
    pred[np.isin(pred, labels[:3])] = 0  # three missed
    for k in labels[3:5]:  # two moved off their object: a miss and an extra each
        inside = pred == k
        pred[inside] = 0
        pred[np.roll(inside, 45, axis=1) & (pred == 0)] = k
    yy, xx = np.ogrid[: gt.shape[0], : gt.shape[1]]
    pred[((yy - 40) ** 2 + (xx - 40) ** 2 < 20**2) & (gt == 0) & (pred == 0)] = pred.max() + 1  # invented
    return pred


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    path = DATA / "ctc_gowt1_nuclei" / "masks" / "seq01_t021.tif"
    if not path.is_file():
        pytest.fail(f"{path} is missing: ../shared/data must be beside the repository")
    gt = tifffile.imread(path)
    return gt, _spoiled(gt)


def test_classes_are_the_scores_tp_fn_fp(pair) -> None:
    gt, pred = pair
    c = match_classes(gt, pred, 0.5)
    scores = match_image("x", gt, pred, (0.5,))
    assert (len(c.matched), len(c.missed), len(c.extra)) == (scores.tp[0], scores.fn[0], scores.fp[0])
    assert len(c.missed) == 5 and len(c.extra) == 3
    assert set(c.missed) >= set(np.unique(gt)[1:4])


def test_eval_cli_writes_one_picture_per_pair_in_the_class_colours(pair, tmp_path) -> None:
    gt, pred = pair
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "gt" / "a.tif", gt)
    tifffile.imwrite(tmp_path / "pred" / "a_cp_masks.tif", pred)
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--pictures", str(tmp_path / "pics")]) == 0
    with Image.open(tmp_path / "pics" / "a_eval.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    colours = {tuple(c) for c in rgb.reshape(-1, 3)}
    assert {MATCHED, MISSED, EXTRA} <= colours  # every class is drawn (outlines in full colour)
    assert rgb.shape[0] > gt.shape[0] and rgb.shape[1] >= gt.shape[1]  # a caption strip on top


def test_eval_pictures_drawn_over_the_images_of_the_same_name(pair, tmp_path) -> None:
    gt, pred = pair
    for sub in ("gt", "pred", "img"):
        (tmp_path / sub).mkdir()
    tifffile.imwrite(tmp_path / "gt" / "a.tif", gt)
    tifffile.imwrite(tmp_path / "pred" / "a_cp_masks.tif", pred)
    image = tifffile.imread(DATA / "ctc_gowt1_nuclei" / "images" / "seq01_t021.tif")
    tifffile.imwrite(tmp_path / "img" / "a.tif", image)
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--pictures", str(tmp_path / "pics"), "--images", str(tmp_path / "img")]) == 0
    with Image.open(tmp_path / "pics" / "a_eval.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    body = rgb[-gt.shape[0]:, : gt.shape[1]]
    background = body[gt == 0]
    assert np.unique(background.reshape(-1, 3), axis=0).shape[0] > 20  # the image shows, not one flat grey
