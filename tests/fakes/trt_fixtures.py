"""Shared helpers for tests that run cp3rt's TensorRT/GPU code against the fakes (uniquely named:
tests/ has no packages). Import after putting ``tests/fakes`` on ``sys.path``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import fake_cuda
import fake_tensorrt

FAKES = Path(__file__).resolve().parent
TINY_NBASE = (2, 8, 16, 32, 64)  # a CPnet with the real structure and tiny widths: fast on CPU


@dataclasses.dataclass(frozen=True)
class Exports:
    weights: Path
    fp32: Path
    fp16: Path


def export_tiny(folder: Path, seed: int = 0) -> Exports:
    """A tiny random-weight v3 CPnet file and its fp32/fp16 ONNX exports (with manifests)."""
    import torch

    from cp3rt.export.to_onnx import export_onnx
    from cp3rt.models.cpnet import CPnet

    torch.manual_seed(seed)
    weights = CPnet(TINY_NBASE, 3, diam_mean=30.0).save(folder / "tiny")
    fp32 = export_onnx(weights, folder, precision="fp32", verify=False).onnx_path
    fp16 = export_onnx(weights, folder, precision="fp16", verify=False).onnx_path
    return Exports(weights, fp32, fp16)


A100 = fake_cuda.DeviceProps(name=b"Fake NVIDIA A100-SXM4-40GB", major=8, minor=0, totalGlobalMem=40 * 2**30)


def install(monkeypatch, version: str = "10.9.0.34", *, gpu: bool = True,  # noqa: ANN001
            cc: tuple[int, int] = (9, 0),
            devices: list[fake_cuda.DeviceProps] | None = None, trt_cuda: int = 12,
            bindings_cuda: int = 12, driver: int = 12040, dist: bool = True) -> fake_tensorrt.FakeTrtState:
    """Install the fakes; ``devices`` (a list of DeviceProps) overrides ``gpu``/``cc``. ``trt_cuda``:
    the CUDA major of the TensorRT wheel; ``bindings_cuda``: that of cuda-bindings; ``driver``: what
    cudaDriverGetVersion says (0: no driver); ``dist``: TensorRT's distribution metadata is visible."""
    if devices is None:
        devices = [fake_cuda.DeviceProps(major=cc[0], minor=cc[1])] if gpu else []
    cuda = fake_cuda.FakeCudaState(devices=devices, driver_version=driver,
                                   runtime_version=bindings_cuda * 1000 + 90)
    state = fake_tensorrt.FakeTrtState(version=version, cuda=cuda, cuda_major=trt_cuda)
    fake_tensorrt.install(monkeypatch, state, dist=dist)
    return state


def worst(name: str, got: np.ndarray, want: np.ndarray, atol: float) -> str:
    """Worst element and mismatch rate, for assertion messages."""
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return (f"{name}: max |diff| {diff.max():.3g} at {tuple(int(i) for i in idx)} "
            f"(got {got[idx]:.6g}, want {want[idx]:.6g}); {float((diff > atol).mean()):.2%} above {atol:g}")
