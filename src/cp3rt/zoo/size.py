"""Size models: the style -> object diameter linear regression of §2.4, numpy only.

The reference stores them as a pickled dict inside an .npy file. Unpickling runs code, so
cp3rt reads them with an unpickler that only rebuilds numpy arrays and scalars.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import pickle
from pathlib import Path

import numpy as np

from cp3rt.errors import WeightFileError

STYLE_DIM = 256
MIN_DIAMETER = 5.0  # the regression output is clamped from below (§2.4)
_KEYS = ("A", "smean", "diam_mean", "ymean")

# The exact callables numpy's pickles refer to, whatever module path the writer's numpy used.
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle names something other than numpy's array/scalar rebuilders."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"refusing to load {module}.{name}") from None


@dataclasses.dataclass(frozen=True, eq=False)
class SizeModel:
    """Regression ``d = max(5, exp(A·(style − smean) + ln(diam_mean) + ymean))``."""

    A: np.ndarray
    smean: np.ndarray
    diam_mean: float
    ymean: float
    path: Path | None = None

    def __post_init__(self) -> None:
        where = self.path if self.path is not None else "size model"
        for field in ("A", "smean"):
            value = getattr(self, field)
            if not isinstance(value, np.ndarray) or value.shape != (STYLE_DIM,):
                shape = getattr(value, "shape", type(value).__name__)
                raise WeightFileError(f"{where}: '{field}' must be a ({STYLE_DIM},) array, got {shape}.")
        if not (math.isfinite(self.diam_mean) and self.diam_mean > 0):
            raise WeightFileError(f"{where}: 'diam_mean' is {self.diam_mean!r}; it must be > 0.")
        if not math.isfinite(self.ymean):
            raise WeightFileError(f"{where}: 'ymean' is {self.ymean!r}; it must be finite.")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SizeModel:
        """Read a reference ``size_*.npy`` file (a pickled dict with A, smean, diam_mean, ymean)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise WeightFileError(f"size model {path} cannot be read: {exc.strerror or exc}.") from exc
        params = _read_pickled_dict(raw, path)
        missing = [k for k in _KEYS if k not in params]
        if missing:
            raise WeightFileError(f"size model {path} lacks the entries {missing}.")
        try:
            return cls(
                A=np.asarray(params["A"]),
                smean=np.asarray(params["smean"]),
                diam_mean=float(params["diam_mean"]),
                ymean=float(params["ymean"]),
                path=path,
            )
        except (TypeError, ValueError) as exc:
            raise WeightFileError(f"size model {path} has a non-numeric entry: {exc}.") from exc

    def estimate_diameter(self, style: np.ndarray) -> float | np.ndarray:
        """Diameter(s) in pixels from one (256,) style or a (N, 256) batch.

        Arithmetic follows the reference's dtypes (stored A/smean, float32 styles); a result
        of 0 or NaN falls back to ``diam_mean`` as in the reference.
        """
        style = np.asarray(style)
        if style.shape[-1:] != (STYLE_DIM,) or style.ndim > 2:
            raise WeightFileError(f"style must have shape ({STYLE_DIM},) or (N, {STYLE_DIM}), got {style.shape}.")
        est = np.exp(self.A @ (style - self.smean).T + np.log(self.diam_mean) + self.ymean)
        est = np.maximum(MIN_DIAMETER, est)
        est = np.where((est == 0) | np.isnan(est), self.diam_mean, est)
        return float(est) if style.ndim == 1 else est


def _read_pickled_dict(raw: bytes, path: Path) -> dict[str, object]:
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            _, _, dtype = np.lib.format.read_array_header_2_0(stream)
    except ValueError as exc:
        raise WeightFileError(f"size model {path} is not a .npy file ({exc}).") from exc
    if dtype != np.dtype(object):
        raise WeightFileError(f"size model {path} holds a {dtype} array, not the pickled parameter dict.")
    try:
        obj = _NumpyOnlyUnpickler(stream).load()
    except _RefusedGlobal as exc:
        raise WeightFileError(f"size model {path} contains more than numpy data ({exc}); not loading it.") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise WeightFileError(f"size model {path} is truncated or corrupt ({exc}).") from exc
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        obj = obj.item()
    if not isinstance(obj, dict):
        raise WeightFileError(f"size model {path} holds a {type(obj).__name__}, not a parameter dict.")
    return obj
