"""The torch-CUDA engines' runner: fixed-batch chunks, one CUDA graph per (slot, tile shape),
pinned host staging and one stream per slot, so batch k+1 is staged on the host while batch k
runs on the GPU (:meth:`GraphRunner._pipelined`), and device tensors in and out for the
GPU-resident path (:meth:`GraphRunner.infer_device`).

An engine is ``GraphRunner`` + :class:`~cp3rt.engines.base.BaseEngine` and supplies
``_outputs_of(x)`` (its forward pass on the device); see :mod:`cp3rt.engines.torch_cuda`.
torch is never imported here: the engine hands its module over (``_setup_runner``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np


def stage_in(torch: Any, pinned: Any, array: np.ndarray) -> None:
    """Copy a host batch into its pinned staging tensor with torch's CPU copy, which uses all
    cores: a numpy assignment uses one and capped the engine at ~3.5k tiles/s on the H200."""
    pinned.copy_(torch.from_numpy(array if array.flags.writeable else array.copy()))


def copy_out(torch: Any, pinned: dict) -> dict[str, np.ndarray]:
    """Fresh arrays holding the pinned outputs (the buffers are reused by the next batch)."""
    return {k: torch.empty(v.shape, dtype=v.dtype).copy_(v).numpy() for k, v in pinned.items()}


@dataclasses.dataclass
class _Slot:
    stream: Any
    pool: Any
    graphs: dict = dataclasses.field(default_factory=dict)  # (B, H, W) -> _Graph


@dataclasses.dataclass
class _Graph:
    static_in: Any
    outputs: dict
    pinned_in: Any
    pinned_out: dict
    graph: Any  # torch.cuda.CUDAGraph or None (graphs off)
    done: Any   # torch.cuda.Event


class GraphRunner:
    """Shared machinery: slots of (stream, graph pool, per-shape graphs) and the pipelined loop."""

    device_resident = True

    def _guard(self) -> AbstractContextManager[None]:
        """Around torch's work on the GPU; the engines make it BaseEngine._backend_errors (torch's
        exceptions -> one EngineError), the runner alone (its tests) lets them through."""
        return contextlib.nullcontext()

    def _setup_runner(self, torch: Any, device: Any, nchan: int, cuda_graphs: bool, slots: int,
                      batch: int) -> None:
        self._torch, self._device, self._nchan = torch, device, nchan
        self._cuda_graphs = cuda_graphs
        self._batch = batch
        # One graph memory pool per slot: graphs of one slot never run concurrently and keep their
        # static outputs alive, so they can share intermediates; the two slots run concurrently.
        self._slots = [_Slot(torch.cuda.Stream(device), torch.cuda.graph_pool_handle() if cuda_graphs else None)
                       for _ in range(slots)]
        self._next = 0

    def _outputs_of(self, x: Any) -> dict:  # pragma: no cover - implemented by the engines
        raise NotImplementedError

    def _graph_for(self, slot: _Slot, shape: tuple[int, ...]) -> _Graph:
        g = slot.graphs.get(shape)
        if g is not None:
            return g
        torch = self._torch
        static_in = torch.zeros(shape, device=self._device).contiguous(memory_format=torch.channels_last)
        slot.stream.wait_stream(torch.cuda.current_stream(self._device))  # static_in is ready
        with torch.cuda.stream(slot.stream), torch.inference_mode():
            for _ in range(3):  # warm-up: cuDNN autotuning and lazy init happen outside capture
                outputs = self._outputs_of(static_in)
            graph = None
            if self._cuda_graphs:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=slot.pool, stream=slot.stream):
                    outputs = self._outputs_of(static_in)
        slot.stream.synchronize()
        pinned_in = torch.empty(shape, dtype=torch.float32, pin_memory=True)
        pinned_out = {k: torch.empty(v.shape, dtype=torch.float32, pin_memory=True) for k, v in outputs.items()}
        g = _Graph(static_in, outputs, pinned_in, pinned_out, graph, torch.cuda.Event())
        slot.graphs[shape] = g
        return g

    def _submit(self, array: np.ndarray) -> _Graph:
        torch = self._torch
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        g = self._graph_for(slot, tuple(array.shape))
        stage_in(torch, g.pinned_in, array)  # host work while the other slot keeps the GPU busy
        with torch.cuda.stream(slot.stream), torch.inference_mode():
            g.static_in.copy_(g.pinned_in, non_blocking=True)
            if g.graph is not None:
                g.graph.replay()
            else:
                for k, v in self._outputs_of(g.static_in).items():
                    g.outputs[k] = v
            for k, v in g.outputs.items():
                g.pinned_out[k].copy_(v, non_blocking=True)
            g.done.record(slot.stream)
        return g

    def _result(self, g: _Graph) -> dict[str, np.ndarray]:
        g.done.synchronize()
        return copy_out(self._torch, g.pinned_out)

    @property
    def device(self) -> Any:
        """The torch device of the engine's GPU (the GPU-resident path keeps its tensors there)."""
        return self._device

    def infer_device(self, x: Any) -> dict[str, Any]:
        """Outputs for a (N, C, h, w) float32 tensor already on this engine's GPU; they stay there.

        The device-resident path's call: chunks of the fixed batch replay the same CUDA graphs as
        ``infer`` (so a tile gets the same output either way), ordered after the caller's
        current stream, which then waits for the results. Not while an ``infer_many`` is running.
        """
        with self._guard():
            return self._on_device(x)

    def _on_device(self, x: Any) -> dict[str, Any]:
        torch = self._torch
        slot, current = self._slots[0], torch.cuda.current_stream(self._device)
        n = int(x.shape[0])
        parts: list[dict[str, Any]] = []
        slot.stream.wait_stream(current)
        for start in range(0, max(n, 1), self._batch):
            chunk = x[start:start + self._batch]
            valid = int(chunk.shape[0])
            g = self._graph_for(slot, (self._batch, *x.shape[1:]))
            with torch.cuda.stream(slot.stream), torch.inference_mode():
                g.static_in[:valid].copy_(chunk)
                g.static_in[valid:].zero_()  # padding tiles: per-sample ops, they touch nothing else
                if g.graph is not None:
                    g.graph.replay()
                else:
                    g.outputs.update(self._outputs_of(g.static_in))
                part = {k: v[:valid].clone() for k, v in g.outputs.items()}
            for t in part.values():  # allocated on the slot's stream, used on the caller's
                t.record_stream(current)
            parts.append(part)
        current.wait_stream(slot.stream)
        if len(parts) == 1:
            return parts[0]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _chunks(self, arrays: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, int, bool]]:
        """(padded chunk of exactly ``batch`` tiles, tiles that are real, last chunk of its array)."""
        for array in arrays:
            array = np.ascontiguousarray(array, dtype=np.float32)
            n = array.shape[0]
            for start in range(0, max(n, 1), self._batch):
                part = array[start:start + self._batch]
                if part.shape[0] < self._batch:  # zero tiles: per-sample ops, they touch nothing else
                    part = np.concatenate([part, np.zeros((self._batch - part.shape[0], *part.shape[1:]), np.float32)])
                yield part, min(self._batch, n - start), start + self._batch >= n

    def _pipelined(self, arrays: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Results per input array, in order; chunks of one array are concatenated back."""
        pending: collections.deque[tuple[_Graph, int, bool]] = collections.deque()
        parts: list[dict[str, np.ndarray]] = []

        def collect() -> dict[str, np.ndarray] | None:
            g, valid, last = pending.popleft()
            parts.append({k: v[:valid] for k, v in self._result(g).items()})
            if not last:
                return None
            out = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            parts.clear()
            return out

        for chunk, valid, last in self._chunks(arrays):
            if len(pending) == len(self._slots):
                with self._guard():
                    done = collect()
                if done is not None:
                    yield done
            with self._guard():
                pending.append((self._submit(chunk), valid, last))
        while pending:
            with self._guard():
                done = collect()
            if done is not None:
                yield done
