"""The one error hierarchy for user-facing failures.

Every error a user can cause (bad file, bad flag, missing backend) is a ``Cp3rtError``; the CLI
prints ``str(err)`` on one line and exits with ``err.exit_code``. Anything else is a bug and keeps
its traceback.
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
