"""Read a Cellpose v3 CPnet weight file and refuse anything else with one clear sentence (§1.7);
``load_cpnet`` builds the CPnet it describes.

Accepted: a bare state dict as written by v3's ``save_model`` (zip or legacy torch format), with
an optional ``module.`` prefix (stripped), or such a dict wrapped under a ``state_dict`` or
``model`` key of a checkpoint dict (unwrapped: it is unambiguous and common in training code).
Other checkpoint layouts (``model_state`` + ``optimizer``...) are refused rather than guessed.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from cp3rt.errors import WeightFileError
from cp3rt.manifest import sha256_file
from cp3rt.models.cpnet import DEFAULT_DIAM_MEAN, DIAM_KEYS, CPnet

MODULE_PREFIX = "module."
FIRST_CONV = "downsample.down.res_down_{n}.conv.conv_0.2.weight"
HEAD_CONV = "output.2.weight"
_WRAPPER_KEYS = ("state_dict", "model")
_SHOW = 3  # how many offending keys a message names


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """A validated CPnet state dict and what was read from it."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    nchan: int
    nout: int
    nbase: tuple[int, ...]
    diam_mean: float | None   # None when the file has no such key
    diam_labels: float | None
    sha256: str


def read_weight_file(path: str | os.PathLike[str]) -> WeightFile:
    """Load ``path`` on CPU (tensors only) and check it is a complete Cellpose v3 CPnet."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file {path} does not exist or is not a file.")
    obj = _load(path)
    sd = _as_state_dict(path, obj)
    _refuse_other_models(path, sd)
    nbase, nout = _infer_arch(path, sd)
    _check_against_arch(path, sd, nbase, nout)
    return WeightFile(
        path=path,
        state_dict=sd,
        nchan=nbase[0],
        nout=nout,
        nbase=nbase,
        diam_mean=_diam(path, sd, "diam_mean"),
        diam_labels=_diam(path, sd, "diam_labels"),
        sha256=sha256_file(path),
    )


def _load(path: Path) -> object:
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols of non-torch files; the error below says more.
            warnings.simplefilter("ignore", UserWarning)
            # weights_only: a weight file must never run code when it is opened.
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():  # a class/function, not only tensors
            raise WeightFileError(
                f"{path} holds Python objects other than tensors, so it is not a plain Cellpose v3 "
                "state dict and cp3rt will not unpickle it."
            ) from exc
        # torch's text here suggests loading unsafely; do not pass that advice on.
        raise _corrupt(path, "unreadable pickle data") from exc
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError) as exc:
        raise _corrupt(path, exc) from exc


def _corrupt(path: Path, exc: BaseException | str) -> WeightFileError:
    if isinstance(exc, str):
        reason = exc
    else:
        # First sentence only: torch appends paragraphs of advice.
        reason = str(exc).splitlines()[0].split(". ")[0].rstrip(".") if str(exc) else type(exc).__name__
    return WeightFileError(
        f"{path} cannot be read as a PyTorch weight file; it is truncated, corrupt or of another "
        f"format ({reason})."
    )


def _as_state_dict(path: Path, obj: object) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise WeightFileError(
            f"{path} contains a pickled {type(obj).__name__}, not a state dict mapping tensor "
            "names to tensors as written by Cellpose v3."
        )
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and _looks_like_cpnet(inner):
            obj = inner
            break
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        shown = ", ".join(repr(k) for k in bad[:_SHOW])
        raise WeightFileError(
            f"{path} is a dict with non-tensor entries ({shown}), e.g. a training checkpoint, not "
            "a bare Cellpose v3 state dict; save only the network's state_dict()."
        )
    sd = dict(obj)
    if sd and all(k.startswith(MODULE_PREFIX) for k in sd):
        sd = {k[len(MODULE_PREFIX):]: v for k, v in sd.items()}  # DataParallel wrapper
    return sd


def _looks_like_cpnet(sd: Mapping[object, object]) -> bool:
    return any(isinstance(k, str) and k.endswith(HEAD_CONV) for k in sd)


def _refuse_other_models(path: Path, sd: Mapping[str, torch.Tensor]) -> None:
    if "W2" in sd or any(k.startswith("encoder.") for k in sd):
        raise WeightFileError(
            f"{path} is a Cellpose 4 / Cellpose-SAM (cpsam) weight file (keys 'encoder.*', 'W2'); "
            "cp3rt runs Cellpose 3 CPnet files such as cyto3 or denoise_cyto3."
        )
    if any(k.startswith("net.") for k in sd):
        raise WeightFileError(
            f"{path} is a Cellpose 3 transformer (segformer) weight file (keys 'net.*'), not a "
            "CPnet; cp3rt runs Cellpose 3 CPnet files such as cyto3 or denoise_cyto3."
        )


def _infer_arch(path: Path, sd: Mapping[str, torch.Tensor]) -> tuple[tuple[int, ...], int]:
    first, head = sd.get(FIRST_CONV.format(n=0)), sd.get(HEAD_CONV)
    if first is None or head is None or first.ndim != 4 or head.ndim != 4:
        missing = [k for k in (FIRST_CONV.format(n=0), HEAD_CONV) if k not in sd]
        some = ", ".join(sorted(sd)[:_SHOW]) or "none"
        raise WeightFileError(
            f"{path} is not a Cellpose v3 CPnet state dict: "
            + (f"it lacks {', '.join(missing)}" if missing else "its first/last conv is not 4-D")
            + f" (its keys start with: {some})."
        )
    nbase = [int(first.shape[1])]
    n = 0
    while (w := sd.get(FIRST_CONV.format(n=n))) is not None and w.ndim == 4:
        nbase.append(int(w.shape[0]))
        n += 1
    return tuple(nbase), int(head.shape[0])


@functools.lru_cache(maxsize=8)
def expected_shapes(nbase: tuple[int, ...], nout: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a CPnet state dict, built on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        net = CPnet(nbase, nout)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _check_against_arch(
    path: Path, sd: Mapping[str, torch.Tensor], nbase: tuple[int, ...], nout: int
) -> None:
    want = expected_shapes(nbase, nout)
    missing = [k for k in want if k not in sd and k not in DIAM_KEYS]
    extra = [k for k in sd if k not in want]
    wrong = [
        f"{k} {tuple(sd[k].shape)} instead of {want[k]}"
        for k in want
        if k in sd and tuple(sd[k].shape) != want[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({', '.join(missing[:_SHOW])})")
    if extra:
        problems.append(f"{len(extra)} unexpected keys ({', '.join(extra[:_SHOW])})")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes ({'; '.join(wrong[:_SHOW])})")
    if problems:
        raise WeightFileError(
            f"{path} does not match a Cellpose v3 CPnet with nbase {list(nbase)} and nout {nout}: "
            + ", ".join(problems)
            + "."
        )
    # numpy: several times faster than torch.isfinite on these small CPU tensors.
    bad = [k for k, v in sd.items() if v.is_floating_point() and not _finite(v)]
    if bad:
        raise WeightFileError(
            f"{path} contains NaN or infinite values (in {', '.join(bad[:_SHOW])}); the file "
            "is damaged or comes from a diverged training run."
        )


def _finite(t: torch.Tensor) -> bool:
    arr = t.detach().numpy() if t.dtype != torch.bfloat16 else t.detach().float().numpy()
    return bool(np.isfinite(arr).all())


def _diam(path: Path, sd: Mapping[str, torch.Tensor], key: str) -> float | None:
    t = sd.get(key)
    if t is None:
        return None
    if t.numel() != 1 or not t.is_floating_point():
        raise WeightFileError(f"{path}: '{key}' should be one float, got shape {tuple(t.shape)}.")
    value = float(t.reshape(-1)[0])
    if not value > 0:
        raise WeightFileError(f"{path}: '{key}' is {value}, but a diameter must be > 0.")
    return value


def load_cpnet(weights: WeightFile | str | os.PathLike[str]) -> CPnet:
    """Build a CPnet shaped like ``weights``, load every non-diameter tensor strictly, eval mode."""
    wf = weights if isinstance(weights, WeightFile) else read_weight_file(weights)
    net = CPnet(wf.nbase, wf.nout, diam_mean=wf.diam_mean or DEFAULT_DIAM_MEAN)
    body = {k: v for k, v in wf.state_dict.items() if k not in DIAM_KEYS}
    result = net.load_state_dict(body, strict=False)
    missing = [k for k in result.missing_keys if k not in DIAM_KEYS]
    if missing or result.unexpected_keys:
        # read_weight_file already checks this; a hand-made WeightFile may not have been.
        raise WeightFileError(
            f"{wf.path}: does not match a CPnet with nbase {list(wf.nbase)} and nout {wf.nout} "
            f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})."
        )
    with torch.no_grad():
        if wf.diam_mean is not None:
            net.diam_mean.fill_(wf.diam_mean)
        if wf.diam_labels is not None:
            net.diam_labels.fill_(wf.diam_labels)
    return net.eval()
