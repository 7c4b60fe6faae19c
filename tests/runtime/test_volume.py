"""Volumes with small stand-in engines (fast; parity with the reference is in
test_volume_parity.py): view combination, Z resizing, stitching, axial restoration, settings."""

from __future__ import annotations

import numpy as np
import pytest

from cp3rt import Pipeline
from cp3rt.engines.base import BaseEngine, TensorSpec
from cp3rt.manifest import EngineManifest
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.stages.segment_volume import net_size, run_views
from cp3rt.runtime.stages.stitch_planes import stitch3d
from cp3rt.runtime.tiles.options import TileOptions


class FakeEngine(BaseEngine):
    """An engine whose 'net' is a numpy function; records the tile shapes it was given."""

    backend = "fake"

    def __init__(self, role: str, fn, *, nchan: int, source: str = "fake", diam_mean: float = 30.0):
        nout = 3 if role == "segment" else 1
        manifest = EngineManifest(
            role=role, source_model=source, source_sha256="0" * 64, nchan=nchan, nout=nout,
            diam_mean=diam_mean, diam_labels=diam_mean, precision="fp32", opset=17,
        )
        image = TensorSpec("image", "float32", (None, nchan, None, None))
        if role == "segment":
            outs = (TensorSpec("flows", "float32", (None, 3, None, None)),
                    TensorSpec("style", "float32", (None, 256)))
        else:
            outs = (TensorSpec("restored", "float32", (None, 1, None, None)),)
        super().__init__((image,), outs, manifest, label=source)
        self.fn = fn
        self.calls: list[tuple[int, ...]] = []

    def _run(self, feeds):
        self.calls.append(feeds["image"].shape)
        return self.fn(feeds["image"])


def gradient_net(x: np.ndarray) -> dict[str, np.ndarray]:
    """Flows of length 5 up the intensity gradient, foreground where the input is bright."""
    gy, gx = np.gradient(x[:, 0], axis=(1, 2))
    norm = np.sqrt(gy**2 + gx**2) + 1e-6
    flows = np.stack([5 * gy / norm, 5 * gx / norm, 8 * (x[:, 0] - 0.3)], axis=1)
    return {"flows": flows.astype(np.float32), "style": np.ones((x.shape[0], 256), np.float32) / 16}


def blobs(shape=(12, 40, 48), centres=((4, 10, 12), (7, 28, 30), (5, 12, 36))) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    vol = np.zeros(shape, np.float32)
    for c in centres:
        vol += np.exp(-((zz - c[0]) ** 2 / 8 + (yy - c[1]) ** 2 / 20 + (xx - c[2]) ** 2 / 20))
    return 100 * vol


def test_views_are_combined_like_the_reference():
    # A net that writes its tile's own coordinates: row flow = 1, column flow = 10,
    # cellprob = 100 everywhere -> each flow component is the sum of two views, cellprob of three.
    def const(tiles):
        b, _, h, w = tiles.shape
        y = np.empty((b, 3, h, w), np.float32)
        y[:, 0], y[:, 1], y[:, 2] = 1, 10, 100
        return y, None

    yf, _ = run_views(np.ones((5, 2, 7, 9), np.float32), const, tiles=TileOptions(0.1, 8))
    assert np.all(yf[0] == 2)        # Z: ZX rows + ZY rows
    assert np.all(yf[1] == 11)       # Y: YX rows + ZY columns
    assert np.all(yf[2] == 20)       # X: YX columns + ZX columns
    assert np.all(yf[3] == 300)


def test_views_put_each_plane_back_in_place():
    # The net returns its input's first channel as every output: each view must land on the
    # voxel it came from, so every component equals 2 (or 3) x the volume.
    vol = np.random.default_rng(0).random((6, 2, 11, 13)).astype(np.float32)

    def echo(tiles):
        return np.repeat(tiles[:, :1], 3, axis=1), None

    yf, _ = run_views(vol, echo, tiles=TileOptions(0.1, 4))
    np.testing.assert_allclose(yf[:3], np.broadcast_to(2 * vol[:, 0], (3, 6, 11, 13)), rtol=1e-6)
    np.testing.assert_allclose(yf[3], 3 * vol[:, 0], rtol=1e-6)


def test_net_size_follows_the_reference_arithmetic():
    assert net_size((10, 100, 120), 1.0, None) == (10, 100, 120)
    assert net_size((10, 100, 120), 1.0, 2.5) == (25, 100, 120)
    assert net_size((10, 150, 170), 30 / 45, 2.0) == (13, 100, 113)  # int(10*2*0.667)=13
    with pytest.raises(ConfigError, match="anisotropy"):
        net_size((3, 10, 10), 1.0, 0.1)


def test_do_3d_pipeline_finds_blobs_and_resizes_z():
    eng = FakeEngine("segment", gradient_net, nchan=2)
    with Pipeline.from_engines(eng) as pipe:
        res = pipe.run(blobs(), do_3D=True, anisotropy=2.0, min_size=10)
    assert res.masks.shape == (12, 40, 48) and res.masks.dtype == np.uint16
    assert res.dP.shape == (3, 12, 40, 48) and res.cellprob.shape == (12, 40, 48)
    assert res.n_objects == 3
    # the ZX / ZY views saw planes with Z resized to 24 rows (padded to 48)
    assert any(c[2] == 48 for c in eng.calls)


@pytest.mark.parametrize("kw,want", [
    ({}, "exact"), ({"reference_bugs": True}, "grid"),
    ({"sampling_3d": "grid"}, "grid"), ({"reference_bugs": True, "sampling_3d": "exact"}, "exact"),
])
def test_do_3d_sampling_is_exact_unless_the_reference_is_asked_for(monkeypatch, kw, want):
    """deviations.md row 11: the reference's half-voxel-off "grid" reading only on request."""
    import cp3rt.runtime.stages.volume as stage

    seen = []
    real = stage.compute_masks_3d
    monkeypatch.setattr(stage, "compute_masks_3d", lambda *a, **k: seen.append(k["sampling"]) or real(*a, **k))
    assert RunConfig(**kw).sampling == want
    with Pipeline.from_engines(FakeEngine("segment", gradient_net, nchan=2)) as pipe:
        pipe.run(blobs(), do_3D=True, anisotropy=2.0, min_size=10, **kw)
    assert seen == [want]


def test_stitching_pipeline_gives_one_object_per_blob():
    eng = FakeEngine("segment", gradient_net, nchan=2)
    with Pipeline.from_engines(eng) as pipe:
        res = pipe.run(blobs(), stitch_threshold=0.2, min_size=10)
    assert res.masks.shape == (12, 40, 48) and res.dP.shape == (2, 12, 40, 48)
    assert res.n_objects == 3
    for lab in range(1, 4):  # each stitched object spans several planes
        assert np.unique(np.nonzero(res.masks == lab)[0]).size > 2


def test_axial_restoration_feeds_zx_and_zy_planes():
    seg = FakeEngine("segment", gradient_net, nchan=2)
    rest = FakeEngine("restore", lambda x: {"restored": x[:, :1].copy()}, nchan=1, source="aniso_cyto2")
    with Pipeline.from_engines(seg, rest) as pipe:
        # grid: after the 2x Z stretch blob 1's peak lies between two planes, where the stand-in's
        # unit-length flows flip; read exactly, the voxels on either side settle on different
        # planes (two halves), the reference's half-voxel-off reading averages the flip away.
        res = pipe.run(blobs(), do_3D=True, anisotropy=2.0, diameter=30.0, min_size=10, sampling_3d="grid")
    # 12 planes -> 24 after the Z upsampling; ZX planes are 24 x 48, ZY 24 x 40 (padded: 48 x 64/48... )
    heights = {c[2] for c in rest.calls}
    assert heights == {48}  # int(12 * 2) = 24 rows -> padded 48
    assert res.restored.shape == (24, 1, 40, 48)
    assert res.masks.shape == (12, 40, 48) and res.n_objects == 3


def test_identity_restoration_of_ordinary_model_keeps_yx_planes():
    seg = FakeEngine("segment", gradient_net, nchan=2)
    rest = FakeEngine("restore", lambda x: {"restored": x[:, :1].copy()}, nchan=1, source="denoise_cyto3")
    with Pipeline.from_engines(seg, rest) as pipe:
        res = pipe.run(blobs(), do_3D=True, anisotropy=2.0, min_size=10)
    assert res.restored.shape == (12, 1, 40, 48)
    assert {c[2:] for c in rest.calls} == {(64, 64)}  # YX planes 40 x 48, padded


def test_stitch3d_matches_reference():
    from cellpose import utils as ref_utils

    rng = np.random.default_rng(3)
    planes = np.zeros((6, 30, 30), np.uint16)
    for z in range(6):
        if z == 3:
            continue  # an empty plane in the middle (after stitching started)
        for k in range(1, 5):
            y, x = rng.integers(2, 22, 2)
            planes[z, y:y + 7, x:x + 7] = k
    want = ref_utils.stitch3D(planes.copy(), stitch_threshold=0.25)
    got = stitch3d(planes, 0.25)
    assert np.array_equal(got, want)


def test_stitch3d_fixes_label_reuse_after_leading_empty_plane():
    from cellpose import utils as ref_utils

    planes = np.zeros((3, 10, 10), np.uint16)
    planes[0, 1:4, 1:4] = 1
    planes[2, 6:9, 6:9] = 1  # a different object below an empty plane
    want = ref_utils.stitch3D(planes.copy(), stitch_threshold=0.25)
    assert np.array_equal(stitch3d(planes, 0.25, reference_bugs=True), want)
    fixed = stitch3d(planes, 0.25)
    assert fixed[0, 2, 2] != fixed[2, 7, 7] and want[0, 2, 2] == want[2, 7, 7]


@pytest.mark.parametrize("field,value", [
    ("anisotropy", 0.0), ("anisotropy", float("nan")), ("stitch_threshold", 1.5),
    ("stitch_threshold", -0.1), ("flow3D_smooth", -1.0), ("sampling_3d", "linear"), ("do_3D", 1),
])
def test_bad_volume_settings_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        RunConfig(**{field: value})


def test_2d_image_with_do_3d_is_refused():
    with Pipeline.from_engines(FakeEngine("segment", gradient_net, nchan=2)) as pipe:
        with pytest.raises(InputError, match="3-D stack"):
            pipe.run(np.ones((40, 40), np.float32), do_3D=True)


def test_the_style_is_one_per_z_plane_by_default_and_the_references_last_view_on_request():
    """docs/deviations.md row 14: the reference returns the styles of its last (ZY) view, one per
    X column; cp3rt returns the YX view's, one per Z plane like a stack's, equal to the styles of
    the planes run alone."""
    from cp3rt.runtime.tiles.infer import run_tiled_stack

    vol = np.random.default_rng(1).random((5, 2, 7, 9)).astype(np.float32)

    def styled(tiles):
        b = tiles.shape[0]
        style = np.zeros((b, 256), np.float32)
        style[:, 0], style[:, 1] = tiles[:, 0].mean(axis=(1, 2)), 1.0
        return np.repeat(tiles[:, :1], 3, axis=1), style

    _, style = run_views(vol, styled, tiles=TileOptions(0.1, 4))
    _, alone = run_tiled_stack(vol, styled, nout=3, tiles=TileOptions(0.1, 4))
    assert style.shape == (5, 256)
    np.testing.assert_array_equal(style, alone)
    _, last = run_views(vol, styled, tiles=TileOptions(0.1, 4), style_view=2)
    assert last.shape == (9, 256)
