"""``compute_masks_cuda``: the 2-D dynamics of ``compute_masks_with`` on a CUDA device.

On the device: foreground and dP / 5, the pixel list, Euler integration, end-point histogram,
seeds, seed regions, label lookup and scatter, the flow-error QC, the nearest resize, small-mask
removal and hole filling. On the host: label maps and scratch layouts built from per-seed and
per-label tables (O(labels), a few small copies), and one copy of the final label image.
The one exception: when a label encloses another, the hole filling's outcome depends on the
sequential label order of the CPU, and that image is cleaned up on the host (``_cleanup``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cp3rt.errors import InputError
from cp3rt.runtime.dynamics._labels import label_dtype
from cp3rt.runtime.dynamics.cleanup import fill_holes_int32
from cp3rt.runtime.dynamics.config import DynamicsConfig
from cp3rt.runtime.dynamics.cuda import _env
from cp3rt.runtime.dynamics.resize import resize_nearest


def _stream(cuda: Any, stream: Any) -> Any:
    """A numba stream from None (the default stream), a numba stream, an object with a
    ``cuda_stream`` handle (torch.cuda.Stream) or a raw CUstream handle (int)."""
    if stream is None:
        return cuda.default_stream()
    if isinstance(stream, int):
        return cuda.external_stream(stream)
    handle = getattr(stream, "cuda_stream", None)
    if isinstance(handle, int):
        return cuda.external_stream(handle)
    return stream


def _on_device(cuda: Any, arr: Any, name: str, stream: Any) -> Any:
    """A numba device view of ``arr`` (no copy for anything with __cuda_array_interface__),
    or a float32 copy of a host array."""
    if hasattr(arr, "__cuda_array_interface__"):
        out = cuda.as_cuda_array(arr)
    else:
        host = np.asarray(arr)
        if host.dtype.kind not in "fiu":
            raise InputError(f"{name} must hold real numbers; got dtype {host.dtype}.")
        out = cuda.to_device(np.ascontiguousarray(host, dtype=np.float32), stream=stream)
    if np.dtype(out.dtype).kind not in "fiu":
        raise InputError(f"{name} must hold real numbers; got dtype {out.dtype}.")
    return out


def _device_inputs(cuda: Any, dP: Any, cellprob: Any, stream: Any) -> tuple[Any, Any, tuple[int, int]]:
    """(dP, cellprob) as numba device arrays, checked against each other; and the (Y, X) shape."""
    d_dP = _on_device(cuda, dP, "dP", stream)
    d_prob = _on_device(cuda, cellprob, "cellprob", stream)
    if len(d_prob.shape) != 2:
        raise InputError(f"cellprob must be a 2-D array (Y, X); got shape {tuple(d_prob.shape)}.")
    shape = (int(d_prob.shape[0]), int(d_prob.shape[1]))
    if tuple(d_dP.shape) != (2, *shape):
        raise InputError(f"dP must have shape (2, {shape[0]}, {shape[1]}) (Y flow, X flow) "
                         f"to match cellprob; got {tuple(d_dP.shape)}.")
    return d_dP, d_prob, shape


def compute_masks_cuda(dP: Any, cellprob: Any, config: DynamicsConfig, *, stream: Any = None,
                       timings: dict[str, float] | None = None) -> np.ndarray:
    """Host label image equal to ``compute_masks_with(dP, cellprob, config)``, computed on the GPU.

    dP (2, Y, X) and cellprob (Y, X) may be device arrays (torch CUDA tensors, CuPy or numba
    device arrays - anything with ``__cuda_array_interface__``; used in place, any float dtype)
    or host arrays (copied once). Work is queued on ``stream`` (None: the default stream; a
    numba stream, a torch.cuda.Stream or a raw handle). ``timings``, if given, receives seconds
    per stage (prepare, euler, seeds, labels, qc, cleanup, copy_back, and
    host_cleanup when the CPU clean-up was needed); measuring
    synchronises the stream after every stage. Raises BackendUnavailableError without a GPU
    (unless numba's simulator is enabled).
    """
    cuda = _env.load()
    from cp3rt.runtime.dynamics.cuda import _stages as st  # kernels compile on first launch

    stream = _stream(cuda, stream)
    d_dP, d_prob, shape = _device_inputs(cuda, dP, cellprob, stream)
    out_shape = config.output_shape or shape
    if d_prob.size == 0:
        return np.zeros(out_shape, np.uint16)
    clock = st.StageClock(stream, timings)
    flow5, field, ys, xs, n = st.prepare(cuda, d_dP, d_prob, config.cellprob_threshold, stream)
    clock("prepare")
    if n == 0:
        return np.zeros(out_shape, np.uint16)
    ends = st.follow(cuda, field, ys, xs, n, config.steps, config.interp, stream)
    clock("euler")
    seeded = st.seeds(cuda, ends, shape, stream)
    clock("seeds")
    if seeded.count == 0:
        return np.zeros(out_shape, np.uint16)
    lab, nlab = st.labels(cuda, seeded, ys, xs, shape, config.max_size_fraction, stream)
    clock("labels")
    if config.qc_enabled and nlab > 0:
        err = st.flow_errors(cuda, lab, nlab, flow5, stream)
        st.drop_bad_labels(cuda, lab, err, float(config.flow_threshold), stream)  # type: ignore[arg-type]
        clock("qc")
    return _clean_up(cuda, lab, nlab, shape, config, stream, clock)


def _clean_up(cuda: Any, lab: Any, nlab: int, shape: tuple[int, int], config: DynamicsConfig, stream: Any,
              clock: Any) -> np.ndarray:
    """Nearest resize, small-mask removal and hole filling of the device labels; the host label
    image. When a label encloses another the sequential clean-up decides who swallows whom: that
    image is copied back as it is and cleaned up on the host."""
    from cp3rt.runtime.dynamics.cuda import _cleanup as cl

    out_shape = config.output_shape or shape
    if tuple(out_shape) != shape:
        lab = cl.resize(cuda, lab, tuple(out_shape), stream)
    out = cl.finish(cuda, lab, nlab, int(config.min_size), config.reference_bugs, stream)
    clock("cleanup")
    if out is not None:
        host = out.copy_to_host(stream=stream)
        stream.synchronize()
        clock("copy_back")
        return host
    host = lab.copy_to_host(stream=stream)
    stream.synchronize()
    clock("copy_back")
    host = fill_holes_int32(host, int(config.min_size), config.reference_bugs)
    clock("host_cleanup")
    return host.astype(label_dtype(int(host.max()) if host.size else 0), copy=False)


def end_points_cuda(dP: Any, cellprob: Any, config: DynamicsConfig, *, stream: Any = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ys, xs, ends float32 (2, N)) of the device Euler pass, on the host: for tests that
    compare it with the CPU kernel element for element."""
    cuda = _env.load()
    from cp3rt.runtime.dynamics.cuda import _stages as st

    stream = _stream(cuda, stream)
    d_dP, d_prob, _ = _device_inputs(cuda, dP, cellprob, stream)
    _, field, ys, xs, n = st.prepare(cuda, d_dP, d_prob, config.cellprob_threshold, stream)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((2, 0), np.float32)
    ends = st.follow(cuda, field, ys, xs, n, config.steps, config.interp, stream)
    out = (ys[:n].copy_to_host(stream=stream).astype(np.int64),
           xs[:n].copy_to_host(stream=stream).astype(np.int64), ends.copy_to_host(stream=stream))
    stream.synchronize()
    return out
