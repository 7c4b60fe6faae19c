"""The one error hierarchy for user-facing failures, and the one error that is cp3rt's fault.

Every error a user can cause (bad file, bad flag, missing backend) is a ``Cp3rtError``; the CLI
prints ``str(err)`` on one line and exits with ``err.exit_code``. A backend library failing while
an engine runs (onnxruntime, torch, TensorRT, CUDA) is an ``EngineError`` too: the message names
the engine and the library's error, and a batch records it as that image's failure and goes on.

``InternalError`` is outside that tree on purpose (as Polygraphy keeps its internal errors apart
from user errors): cp3rt found one of its own invariants broken, which no input should cause, so
it is never caught as a bad image and keeps its traceback for the bug report.
"""

from __future__ import annotations


class Cp3rtError(Exception):
    """Base class: a problem the user can fix. The message is one complete sentence."""

    exit_code = 1


class ConfigError(Cp3rtError, ValueError):
    """A setting has a value that is not allowed (the message names field, value and range)."""

    exit_code = 2


class InputError(Cp3rtError):
    """An input image or file cannot be read or has an unusable shape/content."""


class OutputError(Cp3rtError):
    """An output cannot be written (read-only folder, disk full, existing file)."""


class WeightFileError(Cp3rtError):
    """A weight file is not a Cellpose v3 CPnet state dict (v4/SAM, truncated, wrong keys...)."""


class ModelNotFoundError(Cp3rtError):
    """A model name is unknown, or its weights are not present and cannot be downloaded."""


class DownloadError(Cp3rtError):
    """A model download failed or produced a file that fails the sanity check."""


class ExportError(Cp3rtError):
    """ONNX export or conversion failed."""


class BackendUnavailableError(Cp3rtError):
    """A requested inference backend cannot be loaded here (the message says why)."""


class EngineError(Cp3rtError):
    """An engine was given inputs it cannot run, or failed while running."""


class IncompatibleEngineError(EngineError):
    """A built engine/artefact does not match this machine or its source (rebuild command given)."""


class InternalError(Exception):
    """A cp3rt bug: cp3rt's own code broke a promise it checks (not a ``Cp3rtError``)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} This is a cp3rt bug; please report it with the traceback.")


class Cp3rtWarning(UserWarning):
    """A result the user may not expect, computed as asked (the message says why and the fix).

    The library issues these with ``warnings.warn`` and never prints; an application shows or
    records them (``cp3rt degrade`` prints one line per file and keeps them in its record).
    """


class LowRangeWarning(Cp3rtWarning):
    """A channel was set to 0: its 1-99 % percentile range is under the reference's 1e-3 cut."""
