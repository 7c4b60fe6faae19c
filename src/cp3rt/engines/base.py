"""The Engine protocol and the shared input validation every backend gets for free.

A backend subclasses :class:`BaseEngine` and implements ``_run`` (execute, nothing else);
the public :meth:`BaseEngine.infer` checks names, dtypes and shapes against the tensor specs
and the manifest's shape range first, so a wrong batch fails with one exact sentence instead
of a backend stack trace. A backend library that fails while running (onnxruntime, torch,
TensorRT, CUDA) gives one ``EngineError`` naming the engine and the library's error (chained),
so a batch of images records it as that image's failure and goes on; a broken promise of cp3rt's
own code is an ``InternalError`` (see :mod:`cp3rt.errors`).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np

from cp3rt.defaults import NET_HW_MULTIPLE
from cp3rt.manifest import EngineManifest, ShapeRange
from cp3rt.errors import Cp3rtError, EngineError, InternalError

Batch = Mapping[str, np.ndarray] | np.ndarray


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype name and shape of one engine input/output; None marks a dynamic dim."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@runtime_checkable
class Engine(Protocol):
    """What the runtime needs from a backend.

    ``infer_many`` gives the results of many batches in order: TensorRT and torch-CUDA keep one
    batch on the GPU while the next is staged (host and device work overlap), the others run them
    one after another. A ``device_resident`` engine (the torch backends) also runs torch tensors
    that stay on its ``device`` (``infer_device``), for the GPU-resident path.
    """

    backend: str
    manifest: EngineManifest | None
    device_resident: bool

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    def infer(self, batch: Batch) -> dict[str, np.ndarray]: ...

    def infer_many(self, batches: Iterable[Batch]) -> Iterator[dict[str, np.ndarray]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...


class BaseEngine(abc.ABC):
    """Validation, context management and closed-state handling shared by all backends."""

    backend: str = "base"
    # True for the torch backends: they also have infer_device(tensor) and device, for the
    # GPU-resident path. Declared here so callers ask this flag, not hasattr.
    device_resident: bool = False

    def __init__(
        self,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        manifest: EngineManifest | None,
        label: str,
    ) -> None:
        self._inputs = inputs
        self._outputs = outputs
        self.manifest = manifest
        self._label = label  # names the engine in error messages (file or model)
        self._closed = False

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def infer(self, batch: Batch) -> dict[str, np.ndarray]:
        """Run one batch; ``batch`` is a dict by input name, or an array when there is one input."""
        feeds = self._validated(batch)
        with self._backend_errors():
            result = self._run(feeds)
        missing = [s.name for s in self._outputs if s.name not in result]
        if missing:  # cp3rt's backend code broke its own contract: not the user's doing
            raise InternalError(f"engine {self._label} ({self.backend}) did not produce outputs {missing}.")
        return result

    def infer_many(self, batches: Iterable[Batch]) -> Iterator[dict[str, np.ndarray]]:
        """Results of ``batches`` in order. This default runs them one after another through
        :meth:`infer`; TensorRT and torch-CUDA override it to keep one batch on the GPU while the
        next one is staged."""
        for batch in batches:
            yield self.infer(batch)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> BaseEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = "; ".join(s.describe() for s in self._inputs)
        return f"<{type(self).__name__} {self.backend} {self._label} ({ins})>"

    # ---- backend hooks -----------------------------------------------------------------
    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute validated inputs; return every output by name."""

    def _release(self) -> None:
        """Free backend resources (called once by :meth:`close`)."""

    @contextlib.contextmanager
    def _backend_errors(self) -> Iterator[None]:
        """Around the backend library's work: its unexpected exception -> one EngineError that
        names this engine and the original error (chained). cp3rt's own errors pass unchanged."""
        try:
            yield
        except (Cp3rtError, InternalError):
            raise
        except Exception as exc:
            raise EngineError(
                f"engine {self._label} ({self.backend}) failed while running: {one_line(exc)}"
            ) from exc

    # ---- validation --------------------------------------------------------------------
    def _validated(self, batch: Batch) -> dict[str, np.ndarray]:
        """``batch`` as arrays by input name, after every check: open, names, dtypes, shapes,
        the manifest's shape range, one batch size. Every way into a backend goes through here."""
        if self._closed:
            raise EngineError(f"engine {self._label} is closed.")
        feeds = self._feeds(batch)
        for spec in self._inputs:
            self._check_tensor(spec, feeds[spec.name])
        self._check_batch_dims(feeds)
        return feeds

    def _feeds(self, batch: Batch) -> dict[str, np.ndarray]:
        names = [s.name for s in self._inputs]
        if isinstance(batch, np.ndarray):
            if len(names) != 1:
                raise EngineError(
                    f"engine {self._label} has inputs {names}; pass a dict by name, not one array."
                )
            return {names[0]: batch}
        if not isinstance(batch, Mapping):
            raise EngineError(
                f"engine {self._label} needs a numpy array or a dict of arrays, got {type(batch).__name__}."
            )
        missing = [n for n in names if n not in batch]
        unknown = [str(k) for k in batch if k not in names]
        if missing or unknown:
            raise EngineError(
                f"engine {self._label} takes inputs {names}; missing {missing}, unknown {unknown}."
            )
        feeds = {}
        for name in names:
            value = batch[name]
            if not isinstance(value, np.ndarray):
                raise EngineError(
                    f"input '{name}' of engine {self._label} must be a numpy array, got {type(value).__name__}."
                )
            feeds[name] = value
        return feeds

    def _check_tensor(self, spec: TensorSpec, value: np.ndarray) -> None:
        if value.dtype != np.dtype(spec.dtype):
            raise EngineError(
                f"input '{spec.name}' has dtype {value.dtype}, engine {self._label} needs "
                f"{spec.dtype} (convert with .astype(np.{spec.dtype}))."
            )
        if value.ndim != len(spec.shape):
            raise EngineError(
                f"input '{spec.name}' has shape {value.shape} ({value.ndim} dims); engine "
                f"{self._label} needs {spec.describe()}."
            )
        for axis, (got, want) in enumerate(zip(value.shape, spec.shape)):
            if want is not None and got != want:
                raise EngineError(
                    f"input '{spec.name}' has size {got} on axis {axis}; engine {self._label} "
                    f"needs {want} there ({spec.describe()})."
                )
        if self.manifest is not None and value.ndim == 4:
            self._check_profile(spec.name, value.shape, self.manifest.shapes)

    def _check_profile(self, name: str, shape: tuple[int, ...], shapes: ShapeRange) -> None:
        """Batch/height/width of a (B, C, H, W) network input against the manifest."""
        batch, _, height, width = shape
        if not shapes.contains(batch, height, width):
            raise EngineError(
                f"input '{name}' has batch {batch} and tile {height}x{width}; engine "
                f"{self._label} accepts batch {shapes.min_batch}..{shapes.max_batch} and tiles "
                f"{shapes.min_hw[0]}x{shapes.min_hw[1]} .. {shapes.max_hw[0]}x{shapes.max_hw[1]}."
            )
        if height % NET_HW_MULTIPLE or width % NET_HW_MULTIPLE:
            raise EngineError(
                f"input '{name}' tile {height}x{width} is not a multiple of {NET_HW_MULTIPLE} on "
                f"both sides, which CPnet needs (the runtime pads tiles to multiples of 16)."
            )

    def _check_batch_dims(self, feeds: dict[str, np.ndarray]) -> None:
        sizes = {name: arr.shape[0] for name, arr in feeds.items() if arr.ndim}
        if len(set(sizes.values())) > 1:
            raise EngineError(f"engine {self._label} inputs disagree on the batch size: {sizes}.")


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (backend libraries append paragraphs)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
