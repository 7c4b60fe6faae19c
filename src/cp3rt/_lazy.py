"""Lazy imports of heavy optional libraries, with an install hint when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from cp3rt.errors import BackendUnavailableError

_EXTRA_FOR = {
    "torch": "export",
    "onnx": "export",
    "onnxscript": "export",
    "tensorrt": "trt",
    "polygraphy": "trt",
    "cellpose": "test",
    "pyarrow": "parquet",
    "ome_zarr": "zarr",
    "openvino": "openvino",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a one-line error saying what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_FOR.get(top)
        hint = f" (pip install 'cp3rt[{extra}]')" if extra else ""
        raise BackendUnavailableError(
            f"{purpose} needs the Python package '{top}', which cannot be imported here: {exc}{hint}."
        ) from exc


def lazy_getattr(package: str, names: dict[str, str]):
    """A module ``__getattr__`` for ``package`` that imports each public name from its module
    (``names``: name -> dotted module) on first use, so importing the package stays cheap."""

    def __getattr__(name: str):
        if name in names:
            import importlib

            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
