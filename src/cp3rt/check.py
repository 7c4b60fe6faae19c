"""``cp3rt check``: run the same tiles through an engine and a reference, say how far apart they are.

For each image: normalise (§3.3), pad and cut the tiles the runtime would cut (§3.5), run every
tile through both engines in identical batches, and compare each output: max abs / max relative
error (relative to the reference output's range), share of elements out of tolerance, and the
worst element with its position (image, tile, channel, y, x). For segmentation models both full
pipelines then segment the image and the engine's masks are matched against the reference's
masks (AP at IoU 0.5 / 0.75 / 0.9, spec §5). The check fails when the out-of-tolerance share or
the mask AP@0.5 is beyond its limit.

Pairs that run on a CPU: ``ort`` vs ``torch`` (fp32 or fp16 graph), ``ort`` fp16 vs ``ort`` fp32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, InputError

BACKENDS = ("ort", "trt", "torch-cuda")
REFERENCES = ("torch", "ort")
PRECISIONS = ("fp32", "fp16", "bf16")
CHECK_MAX_SHARE = 1e-3  # at most 0.1 % of elements beyond the tolerance
Progress = Callable[[str, int, int], None]  # (stage, done, total)
OnMasks = Callable[[str, np.ndarray, np.ndarray, np.ndarray], None]  # each image: (name, pixels, reference masks, engine masks)


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    model: str
    backend: str = "ort"
    against: str = "torch"
    precision: str = "fp32"
    images: Path | None = None       # None: two built-in synthetic images
    max_images: int = 4
    batch_size: int = D.BATCH_SIZE
    tolerance: float | None = None   # None: defaults.CHECK_TOLERANCE[precision]
    max_share: float = CHECK_MAX_SHARE
    min_ap50: float | None = None    # None: defaults.CHECK_MIN_AP50[precision]
    flow_threshold: float = D.FLOW_THRESHOLD  # of the mask pipelines; 0 turns the flow QC off

    def __post_init__(self) -> None:
        def bad(field: str, allowed: str) -> ConfigError:
            return ConfigError(f"{field}={getattr(self, field)!r} is not allowed; allowed: {allowed}.")

        if not isinstance(self.model, str) or not self.model or self.model.lower().endswith(".onnx"):
            raise bad("model", "a zoo name or a Cellpose v3 weight file (the reference needs the weights)")
        if self.backend not in BACKENDS:
            raise bad("backend", ", ".join(BACKENDS))
        if self.against not in REFERENCES:
            raise bad("against", ", ".join(REFERENCES))
        allowed = PRECISIONS if self.backend == "torch-cuda" else PRECISIONS[:2]
        if self.precision not in allowed:
            raise bad("precision", ", ".join(allowed) + f" for backend {self.backend}")
        if (self.backend, self.against, self.precision) == ("ort", "ort", "fp32"):
            raise ConfigError("backend='ort' against='ort' at precision fp32 compares the fp32 "
                              "graph with itself; use --precision fp16 or --against torch.")
        for field, lo in (("max_images", 1), ("batch_size", 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise bad(field, f"an integer >= {lo}")
        for field in ("tolerance", "min_ap50"):
            value = getattr(self, field)
            if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise bad(field, "None (the precision's default) or a number in [0, 1]")
        if not 0 <= self.max_share <= 1:
            raise bad("max_share", "a number in [0, 1]")
        if isinstance(self.flow_threshold, bool) or not isinstance(self.flow_threshold, (int, float)) \
                or not 0 <= self.flow_threshold < float("inf"):
            raise bad("flow_threshold", "a finite number >= 0 (0 turns the flow QC off)")
        if self.images is not None:
            object.__setattr__(self, "images", Path(self.images))

    @property
    def tol(self) -> float:
        return self.tolerance if self.tolerance is not None else D.CHECK_TOLERANCE[self.precision]

    @property
    def ap_limit(self) -> float:
        return self.min_ap50 if self.min_ap50 is not None else D.CHECK_MIN_AP50[self.precision]


@dataclasses.dataclass(frozen=True)
class OutputCheck:
    name: str
    max_abs: float
    max_rel: float                    # max_abs / range of the reference output
    share_out: float                  # share of elements with |diff| > tolerance * range
    worst_at: tuple[str, int, int, int, int] | tuple[str, int, int]  # (image, tile, channel[, y, x])
    worst_got: float
    worst_want: float
    ok: bool


@dataclasses.dataclass(frozen=True)
class MaskCheck:
    image: str
    ap: tuple[float, ...]             # at defaults.AP_THRESHOLDS
    n_reference: int
    n_engine: int


@dataclasses.dataclass(frozen=True)
class CheckReport:
    config: CheckConfig
    engine: str
    reference: str
    tiles: int
    outputs: tuple[OutputCheck, ...]
    masks: tuple[MaskCheck, ...]

    @property
    def mean_ap50(self) -> float | None:
        return float(np.mean([m.ap[0] for m in self.masks])) if self.masks else None

    @property
    def ok(self) -> bool:
        ap = self.mean_ap50
        return all(o.ok for o in self.outputs) and (ap is None or ap >= self.config.ap_limit)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["config"]["images"] = str(self.config.images) if self.config.images else None
        data.update(ok=self.ok, mean_ap50=self.mean_ap50, tolerance=self.config.tol,
                    ap_thresholds=list(D.AP_THRESHOLDS))
        return data


def synthetic_images(n: int = 2, size: int = 200) -> list[tuple[str, np.ndarray]]:
    """Deterministic test images: bright discs of ~30 px diameter on a noisy background."""
    out = []
    for k in range(n):
        rng = np.random.default_rng(1234 + k)
        yy, xx = np.mgrid[:size, :size]
        img = rng.normal(100, 10, (size, size))
        for cy, cx, r in zip(*rng.uniform(15, size - 15, (2, 24)), rng.uniform(10, 17, 24)):
            img += 400 * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / r**2) ** 3)
        out.append((f"synthetic_{k}", img.astype(np.float32)))
    return out


def _images(cfg: CheckConfig) -> list[tuple[str, np.ndarray]]:
    if cfg.images is None:
        return synthetic_images()
    from cp3rt.runtime.io import find_images, read_image

    paths = find_images([cfg.images])[: cfg.max_images]
    if not paths:
        raise InputError(f"{cfg.images}: no images found to check with.")
    return [(p.name, read_image(p)) for p in paths]


def open_pair(cfg: CheckConfig) -> tuple[Any, Any]:
    """(engine under test, reference engine). Exports/builds what is missing (cached)."""
    from cp3rt.artefacts import resolve_model
    from cp3rt.engines import open_engine

    if cfg.against == "torch":
        reference = open_engine(cfg.model, "torch")
    else:
        reference = open_engine(resolve_model(cfg.model, precision="fp32", backend="ort").path, "ort")
    try:
        if cfg.backend == "torch-cuda":
            engine = open_engine(cfg.model, "torch-cuda", precision=cfg.precision)
        else:
            onnx = resolve_model(cfg.model, precision=cfg.precision, backend="ort").path
            engine = open_engine(onnx, cfg.backend)
    except BaseException:
        reference.close()
        raise
    return engine, reference


def run_check(cfg: CheckConfig, *, progress: Progress | None = None, on_masks: OnMasks | None = None) -> CheckReport:
    """Compare the engine ``cfg.backend`` at ``cfg.precision`` with ``cfg.against`` (``on_masks``: below)."""
    images = _images(cfg)
    engine, reference = open_pair(cfg)
    try:
        outputs, ntiles = _compare_tiles(cfg, engine, reference, images, progress)
        masks = (_compare_masks(cfg, engine, reference, images, progress, on_masks)
                 if engine.manifest.role == "segment" else ())
    finally:
        engine.close()
        reference.close()
    return CheckReport(cfg, engine.backend, reference.backend, ntiles, outputs, tuple(masks))


def _tiles(image: np.ndarray, nchan: int) -> Iterator[np.ndarray]:
    from cp3rt.runtime.prep.axes import to_cyx
    from cp3rt.runtime.prep.normalize import normalize_image
    from cp3rt.runtime.tiles.grid import TileGrid, pad_yx

    x = normalize_image(to_cyx(image, nchan=nchan))
    top, bottom, left, right = pad_yx(*x.shape[-2:])
    canvas = np.pad(x, ((0, 0), (top, bottom), (left, right)))
    grid = TileGrid.plan(canvas.shape[-2:], D.TILE_SIZE, D.TILE_OVERLAP, False)
    for k in range(len(grid)):
        yield grid.cut(canvas, k)


def _compare_tiles(cfg, engine, reference, images, progress) -> tuple[tuple[OutputCheck, ...], int]:  # noqa: ANN001
    got: dict[str, list[np.ndarray]] = {}
    want: dict[str, list[np.ndarray]] = {}
    where: list[tuple[str, int]] = []
    for n, (name, image) in enumerate(images):
        tiles = list(_tiles(image, engine.manifest.nchan))
        for b0 in range(0, len(tiles), cfg.batch_size):
            batch = np.stack(tiles[b0 : b0 + cfg.batch_size]).astype(np.float32)
            for store, eng in ((got, engine), (want, reference)):
                for key, value in eng.infer(batch).items():
                    store.setdefault(key, []).append(np.asarray(value, np.float32))
        where += [(name, k) for k in range(len(tiles))]
        if progress:
            progress("tiles", n + 1, len(images))
    checks = []
    for key in want:
        g, w = np.concatenate(got[key]), np.concatenate(want[key])
        checks.append(_output_check(key, g, w, where, cfg))
    return tuple(checks), len(where)


def _output_check(name: str, got: np.ndarray, want: np.ndarray, where: list, cfg: CheckConfig) -> OutputCheck:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    diff[~np.isfinite(diff)] = np.inf  # NaN counts as the worst possible element
    span = max(float(np.ptp(want)), 1e-12)
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    image, tile = where[idx[0]]
    share = float((diff > cfg.tol * span).mean())
    return OutputCheck(
        name=name, max_abs=float(diff.max()), max_rel=float(diff.max() / span), share_out=share,
        worst_at=(image, tile, *(int(i) for i in idx[1:])),
        worst_got=float(got[idx]), worst_want=float(want[idx]), ok=share <= cfg.max_share,
    )


class _Borrowed:
    """An engine lent to a Pipeline without handing over its ownership (close is a no-op)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.backend, self.manifest = engine.backend, engine.manifest
        self.inputs, self.outputs = engine.inputs, engine.outputs
        self.device_resident = False

    def infer(self, batch: Any) -> dict[str, np.ndarray]:
        return self._engine.infer(batch)

    def infer_many(self, batches: Any) -> Any:
        return (self.infer(b) for b in batches)  # one by one, as the check always ran them

    def close(self) -> None:
        pass

    def __enter__(self) -> _Borrowed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _compare_masks(cfg, engine, reference, images, progress, on_masks=None) -> list[MaskCheck]:  # noqa: ANN001
    """Both engines through the full Pipeline (diameter: the model's default, no estimate)."""
    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.pipeline import Pipeline
    from cp3rt.runtime.quality.metrics import average_precision

    run = RunConfig(estimate_diameter=False, flow_threshold=float(cfg.flow_threshold))
    pipes = [Pipeline.from_engines(_Borrowed(e), run=run) for e in (engine, reference)]
    out = []
    try:
        for n, (name, image) in enumerate(images):
            eng_masks, ref_masks = (p.run(image).masks for p in pipes)
            n_ref, n_eng = int(ref_masks.max()), int(eng_masks.max())
            if n_ref == 0 and n_eng == 0:
                ap = tuple(1.0 for _ in D.AP_THRESHOLDS)  # both empty: they agree
            else:
                ap = tuple(float(v) for v in average_precision(ref_masks, eng_masks, D.AP_THRESHOLDS)[0])
            out.append(MaskCheck(name, ap, n_ref, n_eng))
            if on_masks is not None:
                on_masks(name, image, ref_masks, eng_masks)
            if progress:
                progress("masks", n + 1, len(images))
    finally:
        for p in pipes:
            p.close()
    return out


def describe_position(worst_at: tuple) -> str:
    image, tile, *rest = worst_at
    axes = ("channel", "y", "x")[: len(rest)] if len(rest) == 3 else ("index",) * len(rest)
    return f"{image} tile {tile} " + " ".join(f"{a} {v}" for a, v in zip(axes, rest))


