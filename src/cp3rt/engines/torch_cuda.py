"""torch-CUDA backend: a Cellpose v3 weight file run by PyTorch on the GPU as fast as it goes.

* BatchNorms folded into the convolutions and style layers (:mod:`cp3rt.models.fold`; the
  unfolded net with ``fold_bn=False``), fp16 (or bf16) convolutions with channels-last
  activations, cuDNN autotuning (``torch.backends.cudnn.benchmark``);
* optionally (``compile=True``) the forward pass compiled by TorchInductor, which fuses the
  per-channel affine maps, ReLUs and residual adds between the convolutions into single passes;
* every call padded to one fixed batch (``batch``): each tile shape gets one cuDNN algorithm
  choice and one CUDA graph, so a tile's output never depends on which tiles share its batch;
* the style path in fp32 (global mean, L2 norm and the style Linear layers): the norm sums 256
  squares and overflows fp16, and the style bias enters every decoder conv (spec §1.8);
* one CUDA graph per (slot, batch, height, width), so each call is one graph launch;
* pinned host staging buffers and one CUDA stream per slot: :meth:`infer_many` stages batch
  k+1 on the host while batch k runs on the GPU;
* :class:`TorchCudaChain` runs restoration then segmentation in one graph without leaving the GPU.

The slots, graphs and the pipelined loop are :class:`cp3rt.engines.cuda_runner.GraphRunner`; this
module holds the forward passes and the two engines.

torch and the torch-side model code are imported in the constructors only (the engines package
stays torch-free at import time). Not a silent fallback: ``auto`` never picks it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt._lazy import require
from cp3rt.engines.base import BaseEngine, Batch, TensorSpec
from cp3rt.engines.cuda_runner import GraphRunner
from cp3rt.errors import BackendUnavailableError, ConfigError, EngineError
from cp3rt.manifest import EngineManifest, ShapeRange

PRECISIONS = ("fp32", "fp16", "bf16")
OUTPUTS = {"segment": ("flows", "style"), "restore": ("restored",)}
SHAPES = ShapeRange(1, 64, 4096, (D.MIN_TILE, D.MIN_TILE), (D.TILE_SIZE, D.TILE_SIZE),
                    (D.MAX_TILE_SIZE, D.MAX_TILE_SIZE))  # torch has no profiles: any --tile-size


def mixed_forward(net: Any, x: Any, dtype: Any) -> tuple[Any, Any]:
    """CPnet forward (spec §1.2) with convolutions in ``dtype`` and the style path in fp32.

    ``net`` is a :class:`cp3rt.models.cpnet.CPnet` prepared by :func:`prepare_net`; returns
    (y, style) with y in ``dtype`` and style in fp32.
    """
    feats = net.downsample(x.to(dtype))
    deepest = feats[-1].float()
    style = deepest.mean(dim=(2, 3))
    style = style / style.square().sum(dim=1, keepdim=True).sqrt()  # no epsilon, as the reference
    blocks = list(net.upsample.up)
    h = _res_up(blocks[-1], feats[-1], feats[-1], style)
    for n in range(len(blocks) - 2, -1, -1):
        h = _res_up(blocks[n], net.upsample.upsampling(h), feats[n], style)
    return net.output(h), style


def _style_conv(block: Any, style: Any, x: Any, skip: Any = None) -> Any:
    if skip is not None:
        x = x + skip
    bias = block.full(style).to(x.dtype)  # fp32 Linear, rounded once where it meets the features
    return block.conv(x + bias[:, :, None, None])


def _res_up(block: Any, x: Any, skip: Any, style: Any) -> Any:
    h = block.proj(x) + _style_conv(block.conv[1], style, block.conv[0](x), skip)
    return h + _style_conv(block.conv[3], style, _style_conv(block.conv[2], style, h))


def prepare_net(net: Any, dtype: Any, device: Any, channels_last: bool) -> Any:
    """Convolutions to ``dtype`` (channels-last on request); BN and style Linear stay fp32."""
    torch = require("torch", "the torch-cuda backend")
    net = net.to(device).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.to(dtype)
            if channels_last:
                module.to(memory_format=torch.channels_last)
    return net


def folded_forward(net: Any, x: Any, dtype: Any) -> tuple[Any, Any]:
    """FoldedCPnet forward; ``net`` already holds its convolutions in ``dtype``."""
    return net(x)


def _cuda_device(device: str) -> tuple[Any, Any]:
    """(torch, the torch device) for a ``cuda``/``cuda:N`` string on a machine with a GPU."""
    torch = require("torch", "the torch-cuda backend")
    dev = torch.device(device)
    if dev.type != "cuda":
        raise ConfigError(f"device={device!r} is not allowed; allowed: 'cuda' or 'cuda:N'.")
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"backend 'torch-cuda' needs an NVIDIA GPU, and torch {torch.__version__} sees no CUDA device here."
        )
    return torch, dev


class TorchCudaEngine(GraphRunner, BaseEngine):
    """A Cellpose v3 weight file (zoo name or path) on a CUDA GPU in fp16/bf16/fp32."""

    backend = "torch-cuda"
    _guard = BaseEngine._backend_errors

    def __init__(self, weights: str | os.PathLike[str], *, precision: str = "fp16",
                 device: str = "cuda", cuda_graphs: bool = True, channels_last: bool = True,
                 slots: int = D.TRT_ENGINE_SLOTS, batch: int = D.GPU_BATCH, fold_bn: bool = True,
                 compile: bool = D.GPU_COMPILE, cache_dir: str | os.PathLike[str] | None = None) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision={precision!r} is not allowed; allowed: {', '.join(PRECISIONS)}.")
        for name, value in (("slots", slots), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} is not allowed; allowed: an int >= 1.")
        torch, dev = _cuda_device(device)
        from cp3rt.models.weights import read_weight_file  # torch side: only here
        from cp3rt.zoo import resolve_weights, runtime_diameters

        path = resolve_weights(weights)
        wf = read_weight_file(path)
        role = {3: "segment", 1: "restore"}.get(wf.nout)
        if role is None:
            raise EngineError(f"{path} has {wf.nout} outputs; cp3rt runs 3 (segment) or 1 (restore).")
        diam_mean, diam_labels = runtime_diameters(weights, wf.diam_mean, wf.diam_labels, role=role)
        manifest = EngineManifest(
            role=role, source_model=os.fspath(weights), source_sha256=wf.sha256, nchan=wf.nchan,
            nout=wf.nout, diam_mean=diam_mean, diam_labels=diam_labels,
            precision="fp16" if precision == "bf16" else precision, opset=0,
            shapes=dataclasses.replace(SHAPES, opt_batch=batch),
        )
        torch.backends.cudnn.benchmark = True  # tile shapes repeat: autotune once per shape
        self._load_net(torch, dev, wf, precision, fold_bn, channels_last)
        if compile:
            self._compile(torch, dev, precision, cache_dir)
        self.fold_bn, self.compiled, self.batch = fold_bn, compile, batch
        self.precision = precision
        self.role = role
        image = TensorSpec("image", "float32", (None, wf.nchan, None, None))
        outs = (TensorSpec("flows", "float32", (None, wf.nout, None, None)),
                TensorSpec("style", "float32", (None, int(wf.nbase[-1])))) if role == "segment" else (
                TensorSpec("restored", "float32", (None, wf.nout, None, None)),)
        BaseEngine.__init__(self, (image,), outs, manifest, label=path.name)
        self._setup_runner(torch, dev, wf.nchan, cuda_graphs, slots, batch)
        self.path = path

    def _load_net(self, torch: Any, dev: Any, wf: Any, precision: str, fold_bn: bool,
                  channels_last: bool) -> None:
        """The net on ``dev`` in ``precision`` (folded or not) and the forward pass that runs it."""
        from cp3rt.models.weights import load_cpnet

        self._dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        if fold_bn:
            from cp3rt.models.fold import fold_batchnorm

            self._net = fold_batchnorm(load_cpnet(wf)).to(dev).to_precision(self._dtype, channels_last=channels_last)
            self._forward = folded_forward
        else:
            self._net = prepare_net(load_cpnet(wf), self._dtype, dev, channels_last)
            self._forward = mixed_forward

    def _compile(self, torch: Any, dev: Any, precision: str, cache_dir: str | os.PathLike[str] | None) -> None:
        """The forward pass compiled by TorchInductor, its code cached under cp3rt's cache."""
        from cp3rt.engines.compile_cache import use_compile_cache

        self.compile_cache = use_compile_cache(torch, dev, precision, Path(cache_dir) if cache_dir else None)
        # One compiled graph per tile shape (batch is fixed); captured below in CUDA graphs.
        # Each engine's net is a new guard on the same function: past dynamo's recompile
        # limit (8) it would fall back to eager without a word, so allow a process many.
        dynamo_config = torch._dynamo.config
        for limit in ("recompile_limit", "cache_size_limit"):
            if hasattr(dynamo_config, limit):
                setattr(dynamo_config, limit, max(getattr(dynamo_config, limit), 256))
        self._forward = torch.compile(self._forward, fullgraph=True, dynamic=False)

    def _outputs_of(self, x: Any) -> dict:
        y, style = self._forward(self._net, x, self._dtype)
        if self.role == "segment":
            return {"flows": y.float(), "style": style}
        return {"restored": y.float()}

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return next(self._pipelined([feeds["image"]]))

    def infer_many(self, batches: Iterable[Batch]) -> Iterator[dict[str, np.ndarray]]:
        """Results of ``batches`` in order, one batch staged on the host while one runs."""
        return self._pipelined(self._validated(batch)["image"] for batch in batches)

    def _release(self) -> None:
        self._torch.cuda.synchronize(self._device)
        self._slots = []
        del self._net


class TorchCudaChain(GraphRunner, BaseEngine):
    """Restore then segment on the GPU in one graph: (B, 1, H, W) -> segmentation outputs.

    The restored tile goes to segmentation channel 0 after ``scale * restored + offset`` (the
    re-normalisation, when its constants are known); other segmentation channels are zeros (a
    gray image, as after restoration with channels [0, 0], spec §3.12).
    """

    backend = "torch-cuda-chain"
    _guard = BaseEngine._backend_errors

    def __init__(self, restore: TorchCudaEngine, segment: TorchCudaEngine, *,
                 scale: float = 1.0, offset: float = 0.0, cuda_graphs: bool = True,
                 slots: int = D.TRT_ENGINE_SLOTS) -> None:
        # The chain runs at the segmentation engine's fixed batch, through each engine's own
        # (folded, possibly compiled) forward.
        if restore.role != "restore" or segment.role != "segment":
            raise ConfigError("TorchCudaChain takes a restoration engine then a segmentation engine.")
        self._restore, self._segment = restore, segment
        self._scale, self._offset = float(scale), float(offset)
        manifest = dataclasses.replace(segment.manifest, nchan=restore.manifest.nchan)
        BaseEngine.__init__(self, restore.inputs, segment.outputs, manifest,
                            label=f"{restore.path.name}+{segment.path.name}")
        self._setup_runner(restore._torch, restore._device, restore.manifest.nchan, cuda_graphs, slots,
                           segment.batch)

    def _outputs_of(self, x: Any) -> dict:
        torch = self._torch
        restored, _ = self._restore._forward(self._restore._net, x, self._restore._dtype)
        restored = restored.float() * self._scale + self._offset
        extra = self._segment.manifest.nchan - restored.shape[1]
        if extra > 0:
            restored = torch.cat([restored, restored.new_zeros((restored.shape[0], extra, *restored.shape[2:]))], 1)
        return self._segment._outputs_of(restored)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return next(self._pipelined([feeds["image"]]))

    def infer_many(self, batches: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        return self._pipelined(batches)

    def _release(self) -> None:
        self._torch.cuda.synchronize(self._device)
        self._slots = []
