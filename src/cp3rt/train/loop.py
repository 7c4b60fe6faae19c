"""The epoch loop shared by both trainers: sampling, lr schedule, progress, checkpoints."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cp3rt.train.checkpoint import check_resumable, load_checkpoint, restore_rng, save_checkpoint
from cp3rt.train.progress import ProgressCallback, TrainProgress

StepFn = Callable[[np.ndarray], Mapping[str, float]]


@dataclasses.dataclass
class LoopState:
    """Mutable state of a run (what a checkpoint saves)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator
    epochs_done: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)


def start_state(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    seed: int,
    resume: Path | None,
    kind: str,
    settings: Mapping[str, Any],
    resume_fields: tuple[str, ...],
    image_names: list[str],
) -> LoopState:
    """A fresh run's state, or the state saved in ``resume`` after checking it fits this run."""
    # Training draws come from the numpy Generator; torch's RNG is seeded too so that the
    # checkpointed torch state is a function of the seed (nothing in the loop uses it today).
    torch.manual_seed(seed)
    if resume is None:
        return LoopState(net, optimizer, np.random.default_rng(seed))
    saved = load_checkpoint(resume, kind=kind)
    check_resumable(resume, saved, settings, resume_fields, image_names)
    net.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return LoopState(net, optimizer, restore_rng(saved), saved["epochs_done"], list(saved["history"]))


@dataclasses.dataclass(frozen=True)
class LoopPlan:
    """What the loop needs to know about the run."""

    kind: str
    settings: Mapping[str, Any]
    lrs: np.ndarray                 # one learning rate per epoch
    n_images: int
    image_names: list[str]
    batch_size: int
    images_per_epoch: int | None
    with_replacement: bool          # restoration samples with replacement (§7.2)
    save_every: int
    checkpoint: Path


def epoch_indices(plan: LoopPlan, rng: np.random.Generator) -> np.ndarray:
    """Images of one epoch, in training order."""
    n = plan.n_images
    count = plan.images_per_epoch or n
    if plan.with_replacement:
        return rng.integers(0, n, size=count)
    if count <= n:
        return rng.permutation(n)[:count]
    # More images per epoch than exist: whole permutations back to back.
    reps = -(-count // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:count]


def run_epochs(
    plan: LoopPlan, state: LoopState, step: StepFn, progress: ProgressCallback | None = None
) -> LoopState:
    """Train from ``state.epochs_done`` to the end of the schedule, checkpointing as planned."""
    epochs = len(plan.lrs)
    t0 = time.perf_counter()
    for epoch in range(state.epochs_done, epochs):
        lr = float(plan.lrs[epoch])
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        order = epoch_indices(plan, state.rng)
        batches = [order[k:k + plan.batch_size] for k in range(0, len(order), plan.batch_size)]
        sums: dict[str, float] = {}
        for k, idx in enumerate(batches):
            losses = dict(step(idx))
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value * len(idx)
            if progress is not None:
                progress(TrainProgress("step", epoch, epochs, k + 1, len(batches), lr, losses,
                                       time.perf_counter() - t0))
        means = {name: total / len(order) for name, total in sums.items()}
        state.history.append({"epoch": float(epoch), "lr": lr, **means})
        state.epochs_done = epoch + 1
        if progress is not None:
            progress(TrainProgress("epoch", epoch, epochs, len(batches), len(batches), lr, means,
                                   time.perf_counter() - t0))
        if state.epochs_done % plan.save_every == 0 or state.epochs_done == epochs:
            save_checkpoint(
                plan.checkpoint, kind=plan.kind, settings=plan.settings,
                epochs_done=state.epochs_done, model=state.model, optimizer=state.optimizer,
                rng=state.rng, history=state.history, image_names=plan.image_names,
            )
            if progress is not None:
                progress(TrainProgress("checkpoint", epoch, epochs, len(batches), len(batches),
                                       lr, means, time.perf_counter() - t0, str(plan.checkpoint)))
    return state


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished run wrote and how it went."""

    weights: Path
    checkpoint: Path
    epochs: int
    n_images: int
    dropped: tuple[str, ...]        # image names left out (too few masks)
    diam_mean: float
    diam_labels: float
    history: tuple[dict[str, float], ...]
    seconds: float


def settings_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain JSON-like values (paths as strings) for checkpoints and reports."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
    return out
