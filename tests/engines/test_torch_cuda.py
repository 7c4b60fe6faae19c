"""torch-CUDA backend. On CPU: its mixed-precision forward against the reference cellpose CPnet
(oracle) and its refusals. On a GPU (marker ``gpu``): the engine, CUDA graphs, pipelining and the
restore -> segment chain against the reference net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cellpose.resnet_torch import CPnet as RefCPnet

from cp3rt.engines import open_engine
from cp3rt.engines.torch_cuda import TorchCudaChain, TorchCudaEngine, mixed_forward, prepare_net
from cp3rt.errors import BackendUnavailableError, ConfigError
from cp3rt.models.weights import load_cpnet, read_weight_file

# max |got - want| as a fraction of the reference output's range, per precision (spec §9.14:
# ~1e-2 relative for fp16; bf16 keeps 8 mantissa bits instead of 11).
TOLERANCE = {"fp32": 1e-5, "fp16": 1e-2, "bf16": 3e-2}
# fp32 on a GPU: cuDNN convolutions run in TF32 by default (10 mantissa bits, as the reference
# does on a GPU), and two autotuned algorithms may round differently.
TF32_TOLERANCE = 3e-3
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
HAS_CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (torch sees none here)")


def _ref_net(folder: Path, nchan: int, nout: int, seed: int) -> tuple[RefCPnet, Path]:
    torch.manual_seed(seed)
    net = RefCPnet([nchan, 32, 64, 128, 256], nout, 3).eval()
    with torch.no_grad():  # non-trivial BN statistics so BN is not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    path = folder / f"ref_{nchan}_{nout}"
    net.save_model(str(path))
    return net, path


@pytest.fixture(scope="module")
def seg(tmp_path_factory: pytest.TempPathFactory) -> tuple[RefCPnet, Path]:
    return _ref_net(tmp_path_factory.mktemp("seg"), 2, 3, seed=3)


@pytest.fixture(scope="module")
def restore(tmp_path_factory: pytest.TempPathFactory) -> tuple[RefCPnet, Path]:
    return _ref_net(tmp_path_factory.mktemp("restore"), 1, 1, seed=4)


def _assert_close(name: str, got: np.ndarray, want: np.ndarray, rel: float) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    limit = rel * max(float(want.max() - want.min()), 1e-6)
    diff = np.abs(got - want)
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    assert diff.max() <= limit, (
        f"{name}: max |diff| {diff.max():.3g} > {limit:.3g} at {idx} (got {got[idx]:.6g}, want "
        f"{want[idx]:.6g}); {float((diff > limit).mean()):.2%} of elements out of tolerance")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_mixed_forward_matches_the_reference_net(seg, precision) -> None:  # noqa: ANN001
    ref, path = seg
    x = torch.randn(2, 2, 48, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want_y, want_style, _ = ref(x)
    net = prepare_net(load_cpnet(read_weight_file(path)), DTYPES[precision], torch.device("cpu"), True)
    with torch.inference_mode():
        y, style = mixed_forward(net, x, DTYPES[precision])
    assert style.dtype == torch.float32  # the style path stays fp32 whatever the precision
    _assert_close("flows", y.float().numpy(), want_y.numpy(), TOLERANCE[precision])
    _assert_close("style", style.numpy(), want_style.numpy(), TOLERANCE[precision])


def test_refuses_without_a_gpu_in_one_sentence(seg, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match="^backend 'torch-cuda' needs an NVIDIA GPU, and torch .* sees no CUDA device here.$"):
        TorchCudaEngine(seg[1])
    with pytest.raises(BackendUnavailableError, match="needs an NVIDIA GPU"):
        open_engine(seg[1], "torch-cuda")
    with pytest.raises(ConfigError, match="precision='int8' is not allowed"):
        TorchCudaEngine(seg[1], precision="int8")
    with pytest.raises(ConfigError, match="runs weight files or zoo names, not the ONNX file"):
        open_engine("x.onnx", "torch-cuda")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_engine_matches_the_reference_on_gpu(seg, precision) -> None:  # noqa: ANN001
    ref, path = seg
    x = np.random.default_rng(1).normal(size=(3, 2, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want_y, want_style, _ = ref(torch.from_numpy(x))
    with TorchCudaEngine(path, precision=precision) as engine:
        first = engine.infer(x)
        again = engine.infer(x)  # replayed CUDA graph
        np.testing.assert_array_equal(first["flows"], again["flows"])
        rel = max(TOLERANCE[precision], TF32_TOLERANCE)  # spec §1.8
        _assert_close("flows", first["flows"], want_y.numpy(), rel)
        _assert_close("style", first["style"], want_style.numpy(), rel)


@pytest.mark.gpu
@needs_gpu
def test_infer_many_and_shapes_on_gpu(seg) -> None:  # noqa: ANN001
    _, path = seg
    rng = np.random.default_rng(2)
    batches = [rng.normal(size=(n, 2, h, w)).astype(np.float32)
               for n, h, w in ((4, 224, 224), (1, 64, 96), (4, 224, 224), (2, 224, 224))]
    with TorchCudaEngine(path, precision="fp16") as engine:
        piped = list(engine.infer_many(batches))
        for got, x in zip(piped, batches):
            np.testing.assert_array_equal(got["flows"], engine.infer(x)["flows"])


@pytest.mark.gpu
@needs_gpu
def test_chain_equals_restore_then_segment_on_gpu(seg, restore) -> None:  # noqa: ANN001
    x = np.random.default_rng(3).normal(size=(2, 1, 224, 224)).astype(np.float32)
    with TorchCudaEngine(restore[1], precision="fp32") as r, TorchCudaEngine(seg[1], precision="fp32") as s:
        restored = r.infer(x)["restored"]
        seg_in = np.concatenate([restored * 2.0 - 0.5, np.zeros_like(restored)], axis=1)
        want = s.infer(seg_in)
        with TorchCudaChain(r, s, scale=2.0, offset=-0.5) as chain:
            got = chain.infer(x)
        _assert_close("flows", got["flows"], want["flows"], TF32_TOLERANCE)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize(("fold_bn", "compile_"), [(False, False), (True, False), (True, True)])
def test_fold_and_compile_variants_match_the_reference_on_gpu(seg, fold_bn, compile_) -> None:  # noqa: ANN001
    ref, path = seg
    x = np.random.default_rng(4).normal(size=(5, 2, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want_y, want_style, _ = ref(torch.from_numpy(x))
    with TorchCudaEngine(path, precision="fp16", fold_bn=fold_bn, compile=compile_, batch=4) as engine:
        got = engine.infer(x)  # 5 tiles: one full batch of 4, one padded
        _assert_close("flows", got["flows"], want_y.numpy(), TOLERANCE["fp16"])
        _assert_close("style", got["style"], want_style.numpy(), TOLERANCE["fp16"])


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("compile_", [False, True])
def test_a_tile_does_not_depend_on_its_batch_companions_on_gpu(seg, compile_) -> None:  # noqa: ANN001
    """Issue 16.3: streamed and one-at-a-time runs must give the same masks, so bit-identical tiles."""
    _, path = seg
    rng = np.random.default_rng(5)
    tiles = rng.normal(size=(11, 2, 224, 224)).astype(np.float32)
    with TorchCudaEngine(path, precision="fp16", batch=4, compile=compile_) as engine:
        together = engine.infer(tiles)["flows"]
        alone = np.concatenate([engine.infer(tiles[i:i + 1])["flows"] for i in range(len(tiles))])
        shuffled = engine.infer(tiles[::-1].copy())["flows"][::-1]
    np.testing.assert_array_equal(alone, together)
    np.testing.assert_array_equal(shuffled, together)


@pytest.mark.gpu
@needs_gpu
def test_infer_device_equals_infer_and_stays_on_the_gpu(seg) -> None:  # noqa: ANN001
    """The GPU-resident path's call replays the same graphs: bit-identical to the host call."""
    _, path = seg
    x = np.random.default_rng(6).normal(size=(7, 2, 224, 224)).astype(np.float32)
    with TorchCudaEngine(path, precision="fp16", batch=4) as engine:
        want = engine.infer(x)
        got = engine.infer_device(torch.from_numpy(x).to(engine.device))
        assert got["flows"].is_cuda and got["flows"].shape == (7, 3, 224, 224)
        for name in ("flows", "style"):
            np.testing.assert_array_equal(got[name].cpu().numpy(), want[name])
