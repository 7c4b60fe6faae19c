"""Pipeline wiring with small stand-in engines (fast; the reference parity lives in
tests/test_parity_pipeline.py): restore -> segment bookkeeping, the reference bugs cp3rt fixes,
configuration errors and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from cp3rt import Pipeline
from cp3rt.engines.base import BaseEngine, TensorSpec
from cp3rt.manifest import EngineManifest
from cp3rt.errors import ConfigError, Cp3rtError, InputError
from cp3rt.runtime.config import PipelineConfig, RunConfig
from cp3rt.runtime.prep.normalize import NormalizeConfig
from cp3rt.runtime.result import STAGES


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
        self.inputs_seen: list[np.ndarray] = []

    def _run(self, feeds):
        x = feeds["image"]
        self.calls.append(x.shape)
        self.inputs_seen.append(x.copy())
        return self.fn(x)


def gradient_net(x: np.ndarray) -> dict[str, np.ndarray]:
    """Flows of length 5 up the intensity gradient, foreground where the input is bright:
    on an image of bright blobs the dynamics converge to the blob centres (one mask per blob)."""
    gy, gx = np.gradient(x[:, 0], axis=(1, 2))
    norm = np.sqrt(gy**2 + gx**2) + 1e-6
    flows = np.stack([5 * gy / norm, 5 * gx / norm, 8 * (x[:, 0] - 0.3)], axis=1)
    style = np.ones((x.shape[0], 256), np.float32) / 16.0
    return {"flows": flows.astype(np.float32), "style": style}


def identity_restore(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"restored": x[:, :1].copy()}


def const_restore(value: float):
    return lambda x: {"restored": np.full((x.shape[0], 1, *x.shape[2:]), value, np.float32)}


def blobs(shape=(120, 150), centres=((30, 30), (30, 90), (90, 40), (85, 115)), sigma=7.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape, np.float32)
    for cy, cx in centres:
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return (1000 * img).astype(np.uint16)


def seg_engine() -> FakeEngine:
    # Named like a zoo model: built-in models use float64 rescale arithmetic (§3.4).
    return FakeEngine("segment", gradient_net, nchan=2, source="cyto3")


def seg_pipe(**kw) -> Pipeline:
    return Pipeline.from_engines(seg_engine(), **kw)


def test_segments_one_mask_per_blob():
    with seg_pipe() as pipe:
        res = pipe.run(blobs(), diameter=30.0, flow_threshold=0.0)
    assert res.masks.shape == (120, 150) and res.masks.dtype == np.uint16
    assert res.n_objects == 4
    assert res.dP.shape == (2, 120, 150) and res.cellprob.shape == (120, 150)
    assert res.style.shape == (256,) and res.restored is None
    assert set(res.timings) == set(STAGES) and res.rescale == 1.0 and res.niter == 200


def test_diameter_sets_rescale_niter_and_net_size():
    eng = seg_engine()
    with Pipeline.from_engines(eng) as pipe:
        res = pipe.run(blobs(), diameter=45.0, flow_threshold=0.0)
    assert res.rescale == pytest.approx(30 / 45) and res.niter == 300
    assert res.masks.shape == (120, 150)
    ly, lx = int(120 * (30 / 45)), int(150 * (30 / 45))  # truncation as the reference (§3.4)
    padded = tuple(16 * -(-n // 16) + 16 for n in (ly, lx))  # get_pad_yx: >= 8 zeros a side
    assert eng.calls == [(1, 2, *padded)]


def test_overrides_and_closed_pipeline():
    pipe = seg_pipe(run=RunConfig(diameter=30.0, flow_threshold=0.0))
    assert pipe.run(blobs()).n_objects == 4
    with pytest.raises(ConfigError, match="unknown run setting"):
        pipe.run(blobs(), diamter=3)
    pipe.close()
    with pytest.raises(Cp3rtError, match="closed"):
        pipe.run(blobs())


def restore_pipe(main, chan2=None, *, source="denoise_cyto3") -> Pipeline:
    return Pipeline.from_engines(
        seg_engine(),
        FakeEngine("restore", main, nchan=1, source=source),
        restore_chan2=FakeEngine("restore", chan2, nchan=1, source="denoise_nuclei", diam_mean=17.0)
        if chan2 else None,
    )


def two_channel():
    img = np.stack([blobs(), blobs()[:, ::-1]], axis=-1)
    return img


def test_chan2_restore_net_is_applied_to_channel_2():
    """Fixed: the reference loads the nuclei net and never uses it (§3.11 [bug])."""
    with restore_pipe(identity_restore, const_restore(0.25)) as pipe:
        fixed = pipe.run(two_channel(), channels=(1, 2), diameter=30.0, flow_threshold=0.0)
        buggy = pipe.run(two_channel(), channels=(1, 2), diameter=30.0, flow_threshold=0.0,
                         reference_bugs=True)
    assert fixed.restored.shape == (2, 120, 150)
    np.testing.assert_allclose(fixed.restored[1], 0.25, rtol=1e-6)
    assert np.ptp(buggy.restored[1]) > 0.5  # main (identity) net: the normalised channel


def test_invert_is_applied_once():
    """Fixed: the reference inverts before restoring and again before segmenting (§3.12 [bug])."""
    seg_eng = seg_engine()
    pipe = Pipeline.from_engines(seg_eng, FakeEngine("restore", identity_restore, nchan=1))
    norm = NormalizeConfig(invert=True)
    img = blobs()
    fixed = pipe.run(img, channels=(0, 0), diameter=30.0, normalize=norm, flow_threshold=0.0)
    fixed_in = seg_eng.inputs_seen[-1][0, 0]
    pipe.run(img, channels=(0, 0), diameter=30.0, normalize=norm, flow_threshold=0.0,
             reference_bugs=True)
    buggy_in = seg_eng.inputs_seen[-1][0, 0]
    pipe.close()
    # Blobs are bright on dark: inverted once, the blob centres are dark for the segmentation.
    centre = (30 + 8 + (128 - 120) // 2, 30 + 8 + (160 - 150) // 2)  # + padding of the tile
    assert fixed_in[centre] < 0.1 < 0.9 < buggy_in[centre]
    assert fixed.restored[0, 30, 30] < 0.1


def test_upsampling_model_resizes_once():
    """Fixed: an upsampling model enlarges the image once (§3.11 [bug]: the reference twice)."""
    small = blobs()[::2, ::2]  # 60 x 75, objects ~15 px
    with restore_pipe(identity_restore, source="upsample_cyto3") as pipe:
        restore_eng = pipe.restore_net.engine
        fixed = pipe.run(small, channels=(0, 0), diameter=15.0, flow_threshold=0.0)
        fixed_tile = restore_eng.calls[-1]
        buggy = pipe.run(small, channels=(0, 0), diameter=15.0, flow_threshold=0.0,
                         reference_bugs=True)
        buggy_tile = restore_eng.calls[-1]
    assert fixed.restored.shape == buggy.restored.shape == (1, 120, 150)
    assert fixed.masks.shape == (120, 150) and fixed.diameter == pytest.approx(30.0)
    assert fixed_tile[2:] == (144, 176)  # 120 x 150 padded
    assert buggy_tile[2:] == (224, 224)  # 240 x 300 does not fit one tile any more


def test_restore_then_segment_renormalises():
    with restore_pipe(const_restore(0.0)) as pipe:  # a flat restored image
        res = pipe.run(blobs(), channels=(0, 0), diameter=30.0, flow_threshold=0.0)
    assert res.n_objects == 0 and res.masks.shape == (120, 150)


@pytest.mark.parametrize("img", [np.zeros((64, 64), np.uint8), np.full((64, 64), 7, np.uint16)],
                         ids=["all-zero", "constant"])
def test_flat_images_give_empty_masks(img):
    with seg_pipe() as pipe:
        res = pipe.run(img, diameter=30.0)
    assert res.masks.shape == (64, 64) and res.n_objects == 0


def test_tiny_image():
    with seg_pipe() as pipe:
        res = pipe.run(np.arange(25, dtype=np.float32).reshape(5, 5), diameter=30.0)
    assert res.masks.shape == (5, 5) and res.dP.shape == (2, 5, 5)


def test_non_finite_pixels_are_refused():
    img = blobs().astype(np.float32)
    img[3, 4] = np.nan
    img[5, 6] = np.inf
    with seg_pipe() as pipe, pytest.raises(InputError, match="2 non-finite"):
        pipe.run(img, diameter=30.0)


def test_five_d_array_is_refused():
    with seg_pipe() as pipe, pytest.raises(InputError, match="cannot interpret|stack"):
        pipe.run(np.zeros((2, 3, 4, 32, 32), np.float32), diameter=30.0)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("diameter", -3.0, "None, 0"),
        ("tile_overlap", 0.7, "0.05 <= value <= 0.5"),
        ("channels", (4, 0), "two integers in 0..3"),
        ("batch_size", 0, ">= 1"),
        ("niter", -1, "positive integer"),
        ("max_size_fraction", 0.0, "0 < value <= 1"),
        ("flow_threshold", float("nan"), "finite"),
    ],
)
def test_run_config_names_field_value_and_range(field, value, allowed):
    with pytest.raises(ConfigError) as info:
        RunConfig(**{field: value})
    msg = str(info.value)
    assert field in msg and repr(value) in msg and allowed in msg


def test_pipeline_config_validation():
    with pytest.raises(ConfigError, match="backend='cuda'"):
        PipelineConfig(backend="cuda")
    with pytest.raises(ConfigError, match="restore_chan2"):
        PipelineConfig(restore_chan2="denoise_nuclei")
    with pytest.raises(ConfigError, match="precision"):
        PipelineConfig(precision="int4")
    with pytest.raises(ConfigError, match="backend 'openvino'"):
        PipelineConfig(precision="bf16")  # bf16 is OpenVINO's arithmetic, no graph of its own


def test_role_mismatch_is_a_clear_error():
    with pytest.raises(ConfigError, match="restore model but was given as the segment"):
        Pipeline.from_engines(FakeEngine("restore", identity_restore, nchan=1))


def test_diameter_estimate_follows_the_two_step_rule():
    """§2.4: style -> d_style (size model), segment at diam_mean/d_style without resampling,
    then the median mask diameter is the diameter of the final run."""
    from cp3rt.runtime.quality.metrics import diameters
    from cp3rt.zoo import SizeModel

    size = SizeModel(A=np.zeros(256), smean=np.zeros(256), diam_mean=30.0, ymean=float(np.log(1.5)))
    with seg_pipe() as pipe:
        pipe._size_model, pipe._size_model_loaded = size, True  # stand-in for size_cyto3.npy
        res = pipe.run(blobs(), flow_threshold=0.0)
        probe = pipe.run(blobs(), diameter=45.0, resample=False, interp=False)  # d_style = 45
    expected = diameters(probe.masks)
    assert probe.n_objects == 4 and expected > 0
    assert res.diameter == pytest.approx(expected) and res.rescale == pytest.approx(30.0 / expected)
    with seg_pipe() as pipe:  # without a size model: diam_mean / diam_labels (= 1 here)
        pipe._size_model, pipe._size_model_loaded = None, True
        assert pipe.run(blobs(), flow_threshold=0.0).rescale == 1.0
