"""Tile size (``--tile-size``, the reference's ``bsize``): the tiling math at other sides than
224, its validation, and the engines' admission of it (one-line refusals)."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cellpose import core as ref_core

from cp3rt.engines.base import BaseEngine, TensorSpec
from cp3rt.errors import ConfigError
from cp3rt.manifest import EngineManifest, ShapeRange, manifest_path_for
from cp3rt.runtime import Pipeline, RunConfig
from cp3rt.runtime.tiles.grid import TileGrid, pad_yx
from cp3rt.runtime.tiles.infer import run_tiled, run_tiled_stack
from cp3rt.runtime.tiles.options import TileOptions

ASSETS = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets"


class _TileMeanNet(torch.nn.Module):
    """y = 2 x + (mean of the tile): a per-pixel map plus a per-tile term, as CPnet's style makes
    every output depend on the whole tile; style = the tile's channel means (L2-normalised)."""

    mkldnn, device = False, torch.device("cpu")

    def __init__(self, nout: int = 1) -> None:
        super().__init__()
        self.nout = nout

    def forward(self, x: torch.Tensor):
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        s = torch.cat([x.mean(dim=(2, 3)), torch.ones(len(x), 255)], 1)
        y = torch.cat([2 * x[:, :1] + m, x[:, :1] - m, x[:, :1] * m][: self.nout], 1)
        return y, s / (s**2).sum(dim=1, keepdim=True) ** 0.5


def _infer(batch: np.ndarray, nout: int = 1):
    with torch.no_grad():
        y, s = _TileMeanNet(nout)(torch.from_numpy(batch))
    return y.numpy(), s.numpy()


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize(("shape", "side"), [((700, 530), 448), ((300, 260), 96), ((1000, 1000), 1024)])
def test_other_tile_sides_equal_the_reference_run_net(shape, side, augment) -> None:
    """Same tiles, weights and style as the reference's ``run_net(bsize=side)``."""
    rng = np.random.default_rng(side)
    img = rng.random((1, 1, *shape), dtype=np.float32)
    ref_y, ref_style = ref_core.run_net(_TileMeanNet(3), np.ascontiguousarray(img.transpose(0, 2, 3, 1)),
                                        batch_size=8, augment=augment, tile_overlap=0.1, bsize=side)
    out, style = run_tiled_stack(img, lambda b: _infer(b, 3), nout=3,
                                 tiles=TileOptions(augment=augment, tile_size=side))
    ref = ref_y.transpose(0, 3, 1, 2)
    assert np.abs(out - ref).max() <= 2.4e-7 * np.abs(ref).max(), np.abs(out - ref).max()
    np.testing.assert_allclose(style, ref_style, rtol=1e-6, atol=1e-7)


def test_tile_count_follows_the_tiling_math() -> None:
    """A 1024 x 1024 image, padded to 1040: ceil(1.2 * 1040 / side) tiles a side, or 1."""
    ly = sum(pad_yx(1024, 1024)[:2]) + 1024
    for side, per_axis in ((224, math.ceil(1.2 * ly / 224)), (448, math.ceil(1.2 * ly / 448)), (1024 + 32, 1)):
        assert len(TileGrid.plan((ly, ly), side)) == per_axis**2
    assert (len(TileGrid.plan((ly, ly), 224)), len(TileGrid.plan((ly, ly), 448))) == (36, 9)


def test_one_tile_covering_the_image_sees_the_whole_padded_image() -> None:
    """Side >= the padded image: one tile, so the per-tile term is the padded image's mean
    everywhere; with 224 tiles the term varies tile to tile (why masks change with tile size)."""
    img = np.random.default_rng(1).random((1, 300, 260), dtype=np.float32)
    top, bottom, left, right = pad_yx(300, 260)
    padded = np.pad(img, ((0, 0), (top, bottom), (left, right)))
    big, _ = run_tiled(img, _infer, nout=1, tiles=TileOptions(tile_size=448))
    np.testing.assert_allclose(big, 2 * img + padded.mean(), rtol=1e-6)
    small, _ = run_tiled(img, _infer, nout=1, tiles=TileOptions(tile_size=224))
    assert np.abs(small - big).max() > 1e-3
    np.testing.assert_allclose(small - 2 * img, (small - 2 * img).clip(0, 1))  # a blend of tile means


def test_run_config_carries_it_to_the_tiles() -> None:
    assert RunConfig().tiles.tile_size == 224
    assert RunConfig(tile_size=448).tiles == TileOptions(tile_size=448)
    assert RunConfig().replace(tile_size=512).tiles.tile_size == 512


@pytest.mark.parametrize("bad", [0, 16, 100, 225, 448.0, True, "448", None])
def test_bad_tile_sizes_are_one_line_config_errors(bad) -> None:
    for make in (lambda: RunConfig(tile_size=bad), lambda: TileOptions(tile_size=bad)):
        with pytest.raises(ConfigError, match=r"^tile_size=.* is not allowed; allowed: a multiple of 16 >= 32") as exc:
            make()
        assert "\n" not in str(exc.value)


class _Echo(BaseEngine):
    """A restore-role numpy engine (restored = input) with a chosen manifest shape range."""

    backend = "echo"

    def __init__(self, max_side: int) -> None:
        manifest = EngineManifest(role="restore", source_model="echo", source_sha256="0" * 64, nchan=1,
                                  nout=1, diam_mean=17.0, diam_labels=17.0, precision="fp32", opset=17,
                                  shapes=ShapeRange(max_hw=(max_side, max_side)))
        spec = (None, 1, None, None)
        super().__init__((TensorSpec("image", "float32", spec),), (TensorSpec("restored", "float32", spec),),
                         manifest, label="echo.onnx")

    def _run(self, feeds):
        return {"restored": feeds["image"].copy()}


def _segment_engine(tmp_path: Path, max_side: int | None) -> Path:
    """The shipped starter segmenter, its manifest declaring tiles up to ``max_side``."""
    onnx = shutil.copy(ASSETS / "models" / "cp3rt_nuclei.onnx", tmp_path / "seg.onnx")
    m = EngineManifest.read(manifest_path_for(ASSETS / "models" / "cp3rt_nuclei.onnx"))
    if max_side is not None:
        m = dataclasses.replace(m, shapes=dataclasses.replace(m.shapes, max_hw=(max_side, max_side)))
    m.write(manifest_path_for(onnx))
    return Path(onnx)


def test_an_engine_whose_manifest_stops_at_224_refuses_448_in_one_line(tmp_path) -> None:
    seg = _segment_engine(tmp_path, 224)
    with pytest.raises(ConfigError) as exc:
        Pipeline(str(seg), backend="ort", tile_size=448)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("tile_size=448 is larger than the segment engine")
    assert "tiles up to 224 px a side" in msg and "cp3rt export cp3rt_nuclei" in msg
    with Pipeline(str(seg), backend="ort") as pipe:  # 224 is fine; a per-run 448 is refused too
        with pytest.raises(ConfigError, match="tile_size=448 is larger"):
            pipe.run(np.zeros((64, 64), np.float32), diameter=17.0, tile_size=448)


def test_from_engines_checks_the_restore_engine_too(tmp_path) -> None:
    from cp3rt.engines.ort import OrtEngine

    with Pipeline.from_engines(OrtEngine(_segment_engine(tmp_path, None)), restore=_Echo(224)) as pipe:
        with pytest.raises(ConfigError, match="restore engine 'echo' admits .tiles up to 224"):
            pipe.run(np.zeros((64, 64), np.float32), diameter=17.0, tile_size=256)
        assert pipe.run(np.zeros((64, 64), np.float32), diameter=17.0, tile_size=224).masks.max() == 0


def test_shipped_starters_run_448_tiles_and_masks_stay_close() -> None:
    """The shipped exports admit up to 1024; on the 512 x 512 sample at diameter 17 (rescale 1)
    448 tiles are 4 instead of 16: the masks change a little (per-tile styles, less overlap)."""
    import tifffile

    from cp3rt.runtime.quality.metrics import average_precision

    img = tifffile.imread(ASSETS / "samples" / "dsb2018_nuclei.tif")
    models = ASSETS / "models"
    with Pipeline(str(models / "cp3rt_nuclei.onnx"), restore=str(models / "cp3rt_denoise_nuclei.onnx"),
                  backend="ort", diameter=17.0) as pipe:
        base = pipe.run(img).masks
        big = pipe.run(img, tile_size=448).masks
    ap = average_precision(base, big, (0.5, 0.75))[0]
    assert base.max() > 50 and ap[0] >= 0.95 and ap[1] >= 0.85, ap


def test_cli_tile_size_runs_and_refuses_in_one_line(tmp_path, capsys) -> None:
    import tifffile

    from cp3rt.cli.app import main

    img = tifffile.imread(ASSETS / "samples" / "dsb2018_nuclei.tif")[:200, :300]
    tifffile.imwrite(tmp_path / "a.tif", img)
    seg = str(ASSETS / "models" / "cp3rt_nuclei.onnx")
    common = ["run", str(tmp_path / "a.tif"), "--model", seg, "--diameter", "17", "--backend", "ort"]
    assert main([*common, "--tile-size", "448", "--out", str(tmp_path / "o448")]) == 0
    assert tifffile.imread(tmp_path / "o448" / "a_cp_masks.tif").max() > 5
    capsys.readouterr()
    assert main([*common, "--tile-size", "100", "--out", str(tmp_path / "bad")]) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert err.startswith("error: tile_size=100 is not allowed; allowed: a multiple of 16 >= 32")
    limited = _segment_engine(tmp_path, 224)
    assert main([*common[:3], str(limited), *common[4:], "--tile-size", "256", "--out", str(tmp_path / "b")]) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert err.startswith("error: tile_size=256 is larger than the segment engine")
    assert not (tmp_path / "b" / "a_cp_masks.tif").exists()


def test_a_streamed_folder_uses_the_tile_size_as_one_image_does(tmp_path) -> None:
    """Several files go through the streaming runner (images share engine batches): its masks
    at tile size 448 equal one-at-a-time Pipeline.run at 448, and differ from 224's."""
    import tifffile

    from cp3rt.runtime import OutputOptions, PipelineConfig, run_inputs

    src = tifffile.imread(ASSETS / "samples" / "dsb2018_nuclei.tif")
    files = []
    for i, (y, x) in enumerate(((0, 0), (200, 150), (100, 212))):
        files.append(tmp_path / f"c{i}.tif")
        tifffile.imwrite(files[-1], src[y:y + 300, x:x + 300])
    seg = str(ASSETS / "models" / "cp3rt_nuclei.onnx")
    run = RunConfig(diameter=17.0, tile_size=448)
    summary = run_inputs([str(tmp_path)], PipelineConfig(segment=seg, backend="ort"), run,
                         OutputOptions(out_dir=tmp_path / "out"))
    assert summary.ok and len(summary.outcomes) == 3
    with Pipeline(seg, backend="ort") as pipe:
        for f in files:
            got = tifffile.imread(tmp_path / "out" / f"{f.stem}_cp_masks.tif")
            np.testing.assert_array_equal(got, pipe.run(tifffile.imread(f), run=run).masks)
        assert any(not np.array_equal(pipe.run(tifffile.imread(f), run=run).masks,
                                      pipe.run(tifffile.imread(f), run=run.replace(tile_size=224)).masks)
                   for f in files)
