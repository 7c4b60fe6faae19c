"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the model and optimizer state dicts, the number of finished epochs, the
numpy Generator state (all data sampling, augmentation and degradation draws) and torch's CPU
RNG state, the run's settings and the per-epoch loss history. It is a torch file distinct
from the weight file (which stays a bare Cellpose v3 state dict).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cp3rt._fs import atomic_write_bytes
from cp3rt.errors import ConfigError, InputError

CHECKPOINT_FORMAT = "cp3rt-train-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: str,
    settings: Mapping[str, Any],
    epochs_done: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    history: list[dict[str, float]],
    image_names: list[str],
) -> Path:
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": kind,
        "settings": dict(settings),
        "epochs_done": int(epochs_done),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": list(history),
        "image_names": list(image_names),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], *, kind: str) -> dict[str, Any]:
    """Read a checkpoint of ``kind`` ('segment' or 'restore'); clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or foreign files
        raise InputError(f"checkpoint {path} cannot be read: {exc}.") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a cp3rt training checkpoint.")
    if state.get("version") != CHECKPOINT_VERSION:
        raise InputError(
            f"checkpoint {path} has version {state.get('version')}, this cp3rt reads "
            f"{CHECKPOINT_VERSION}."
        )
    if state.get("kind") != kind:
        raise ConfigError(
            f"checkpoint {path} is from a '{state.get('kind')}' run and cannot resume a "
            f"'{kind}' run."
        )
    return state


def check_resumable(
    path: Path, state: Mapping[str, Any], settings: Mapping[str, Any], fields: tuple[str, ...],
    image_names: list[str],
) -> None:
    """The architecture and data must match the checkpoint; other settings may change."""
    saved = state["settings"]
    for name in fields:
        if saved.get(name) != settings.get(name):
            raise ConfigError(
                f"{name}={settings.get(name)!r} does not match the checkpoint {path} "
                f"({saved.get(name)!r}); resume with the same {name}."
            )
    if list(state["image_names"]) != list(image_names):
        raise ConfigError(
            f"the training images differ from those of checkpoint {path} "
            f"({len(image_names)} now, {len(state['image_names'])} then); resume with the same "
            "--images/--masks."
        )


def restore_rng(state: Mapping[str, Any]) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    return rng
