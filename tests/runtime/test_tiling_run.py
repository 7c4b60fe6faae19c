"""run_tiled / run_tiled_stack against the reference's cellpose.core.run_net, with a tiny random
torch conv net as the reference's ``net`` and the same net's forward as cp3rt's ``infer``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cellpose import core as ref_core

from cp3rt.errors import ConfigError, EngineError, InputError
from cp3rt.runtime.tiles.grid import TileGrid, pad_yx
from cp3rt.runtime.tiles.infer import run_tiled, run_tiled_stack
from cp3rt.runtime.tiles.options import TileOptions

# Same batches through the same net, same blend arithmetic: bit-identical, except that a
# single-tile image is returned unchanged by cp3rt while the reference computes y*m/m, which
# can round by 1 ulp.
RUN_NET_ATOL = 0.0
SINGLE_TILE_RTOL = 2.4e-7  # 2 ulp of float32
STYLE_ATOL = 0.0
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


class TinyNet(torch.nn.Module):
    """3x3 conv head (tile borders matter, like the real net); style = L2-normalised linear map
    of the tile's channel means (a global pooling over the tile, like CPnet's)."""

    def __init__(self, nchan: int, nout: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.head = torch.nn.Conv2d(nchan, nout, 3, padding=1)
        self.style = torch.nn.Linear(nchan, 256)
        # Attributes the reference's run_net/_forward read.
        self.nout, self.mkldnn, self.device = nout, False, torch.device("cpu")

    def forward(self, x: torch.Tensor):
        s = self.style(x.mean(dim=(2, 3)))
        return self.head(x), s / (s**2).sum(dim=1, keepdim=True) ** 0.5


def _infer_for(net: TinyNet, batches: list | None = None):
    def infer(batch: np.ndarray):
        if batches is not None:
            batches.append(batch.shape)
        with torch.no_grad():
            y, s = net(torch.from_numpy(batch))
        return y.numpy(), s.numpy()

    return infer


def _report(out: np.ndarray, ref: np.ndarray) -> str:
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return (f"worst |diff|={diff[idx]:.3g} at {idx} (ours {out[idx]!r}, ref {ref[idx]!r}); "
            f"mismatch rate {(diff > 0).mean():.4%}")


def _compare(stack_zcyx: np.ndarray, nout: int, *, augment: bool, batch_size: int = 8,
             overlap: float = 0.1) -> None:
    net = TinyNet(stack_zcyx.shape[1], nout).eval()
    ref_y, ref_style = ref_core.run_net(
        net, np.ascontiguousarray(stack_zcyx.transpose(0, 2, 3, 1)), batch_size=batch_size,
        augment=augment, tile_overlap=overlap, bsize=224,
    )
    ref_y = ref_y.transpose(0, 3, 1, 2)
    out, styles = run_tiled_stack(stack_zcyx, _infer_for(net), nout=nout,
                                  tiles=TileOptions(overlap, batch_size, augment))
    assert out.shape == ref_y.shape and out.dtype == np.float32
    ly, lx = stack_zcyx.shape[-2:]
    top, bottom, left, right = pad_yx(ly, lx)
    single = len(TileGrid.plan((ly + top + bottom, lx + left + right), augment=augment)) == 1
    if single:
        tol = SINGLE_TILE_RTOL * np.abs(ref_y).max()
        assert np.abs(out - ref_y).max() <= tol, _report(out, ref_y)
    else:
        assert np.abs(out - ref_y).max() <= RUN_NET_ATOL, _report(out, ref_y)
    assert styles is not None and np.abs(styles - ref_style).max() <= STYLE_ATOL


@pytest.mark.parametrize(("shape", "augment"), [
    ((100, 120), False), ((100, 120), True), ((300, 410), False), ((300, 410), True),
    ((33, 700), False), ((1, 1), False), ((7, 250), True),
])
def test_run_tiled_matches_run_net_segmentation(shape, augment: bool) -> None:
    rng = np.random.default_rng(shape[0] + 10 * shape[1])
    stack = rng.random((1, 2, *shape)).astype(np.float32)
    _compare(stack, 3, augment=augment)


def test_run_tiled_matches_run_net_on_real_image() -> None:
    import tifffile

    from cp3rt.runtime.prep.normalize import normalize_image

    path = DATA / "ctc_msc_cells" / "images"
    img = tifffile.imread(sorted(path.glob("*.tif"))[0])[:400, :500].astype(np.float32)
    x = normalize_image(np.stack([img, np.zeros_like(img)]))
    _compare(x[np.newaxis], 3, augment=False)
    _compare(x[np.newaxis, :, :150, :230], 3, augment=True)


def test_run_tiled_matches_run_net_restoration_net_and_overlap() -> None:
    rng = np.random.default_rng(5)
    _compare(rng.random((1, 1, 260, 500)).astype(np.float32), 1, augment=False, overlap=0.37)


def test_stack_groups_planes_like_run_net() -> None:
    rng = np.random.default_rng(6)
    # 3 tiles per plane, batch 8 -> 2 planes per group (6 tiles), the reference's grouping.
    _compare(rng.random((5, 2, 150, 300)).astype(np.float32), 3, augment=False)
    _compare(rng.random((3, 2, 60, 70)).astype(np.float32), 3, augment=True, batch_size=3)


def test_run_tiled_single_image_api_and_batches() -> None:
    net = TinyNet(2, 3).eval()
    img = np.random.default_rng(7).random((2, 1000, 1000)).astype(np.float32)
    shapes: list = []
    calls: list = []
    out, style = run_tiled(img, _infer_for(net, shapes), nout=3,
                           progress=lambda done, total: calls.append((done, total)))
    assert out.shape == (3, 1000, 1000) and style.shape == (256,) and style.dtype == np.float32
    # Appendix A: 36 tiles -> batches of 8, 8, 8, 8, 4.
    assert [s[0] for s in shapes] == [8, 8, 8, 8, 4] and shapes[0][1:] == (2, 224, 224)
    assert calls == [(8, 36), (16, 36), (24, 36), (32, 36), (36, 36)]
    np.testing.assert_allclose(np.linalg.norm(style), 1.0, rtol=1e-6)


def test_infer_without_style_and_small_tiles() -> None:
    seen: list = []

    def infer(batch: np.ndarray):
        seen.append(batch.shape)
        return np.repeat(batch[:, :1], 3, axis=1) * 2, None

    img = np.random.default_rng(8).random((1, 100, 30)).astype(np.float32)
    out, style = run_tiled(img, infer, nout=3)
    assert style is None and seen == [(1, 1, 128, 48)]  # exact padded size, never 224
    np.testing.assert_allclose(out, np.repeat(img, 3, axis=0) * 2, rtol=1e-6)


def test_bad_infer_outputs_and_arguments() -> None:
    img = np.zeros((2, 50, 50), np.float32)
    with pytest.raises(EngineError, match="shape"):
        run_tiled(img, lambda b: (b[:, :1], None), nout=3)
    with pytest.raises(EngineError, match="styles"):
        run_tiled(
            img, lambda b: (np.zeros((len(b), 3, *b.shape[2:])), np.zeros((len(b) + 1, 5))), nout=3
        )
    with pytest.raises(EngineError, match="pair"):
        run_tiled(img, lambda b: b, nout=3)
    with pytest.raises(InputError):
        run_tiled(np.zeros((50, 50), np.float32), lambda b: (b, None), nout=1)
    with pytest.raises(ConfigError, match="nout"):
        run_tiled(img, lambda b: (b, None), nout=0)
    with pytest.raises(ConfigError, match="batch_size"):
        TileOptions(batch_size=0)
    with pytest.raises(ConfigError, match="tile_overlap"):
        TileOptions(tile_overlap=0.9)


def test_style_width_follows_the_net() -> None:
    """Compact nets (nbase[-1] < 256) give narrower styles; the image style keeps their width."""
    img = np.random.default_rng(0).random((2, 300, 260), dtype=np.float32)
    rng = np.random.default_rng(1)

    def infer(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(b), 3, *b.shape[2:]), np.float32), rng.random((len(b), 64), np.float32)

    _, style = run_tiled(img, infer, nout=3)
    assert style is not None and style.shape == (64,)
    np.testing.assert_allclose(np.linalg.norm(style), 1.0, rtol=1e-6)


class _ReadAheadInfer:
    """An infer with ``many`` that, like a GPU engine, takes batch k+1 before returning k."""

    def __init__(self, infer) -> None:
        self._infer, self.max_ahead = infer, 0

    def __call__(self, batch):
        raise AssertionError("the runner must use many() when an infer offers it")

    def many(self, batches):
        it = iter(batches)
        queue = []
        for batch in it:
            queue.append(self._infer(batch))
            if len(queue) == 2:
                self.max_ahead = max(self.max_ahead, len(queue))
                yield queue.pop(0)
        yield from queue


@pytest.mark.parametrize(("nz", "shape", "batch_size", "augment"), [
    (5, (300, 410), 8, False), (3, (100, 120), 3, True), (4, (60, 70), 2, False),
])
def test_pipelined_infer_gives_the_same_stack(nz, shape, batch_size, augment) -> None:
    rng = np.random.default_rng(nz)
    stack = rng.normal(size=(nz, 2, *shape)).astype(np.float32)
    net = TinyNet(2, 3).eval()
    tiles = TileOptions(batch_size=batch_size, augment=augment)
    want, want_styles = run_tiled_stack(stack, _infer_for(net), nout=3, tiles=tiles)
    ahead = _ReadAheadInfer(_infer_for(net))
    got, styles = run_tiled_stack(stack, ahead, nout=3, tiles=tiles)
    assert ahead.max_ahead == 2  # results really came back one batch behind the cutting
    assert np.array_equal(got, want), _report(got, want)
    assert np.array_equal(styles, want_styles)
