"""do_3D network stage (§3.9): the 2-D net on the YX, ZX and ZY plane stacks of a volume.

Every view goes through ``run_tiled_stack`` with the same engine as 2-D images (so fp16 /
TensorRT apply unchanged); planes of one view are batched together. The three outputs are
combined as the reference does: cellprob = sum of the three views, each flow component = sum
of the two views that see it (Z: ZX rows + ZY rows; Y: YX rows + ZY columns; X: YX columns +
ZX columns). Z is resized by ``anisotropy * rescale`` before the net and back afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.prep.diameter_scale import scaled_size
from cp3rt.runtime.prep.resize import resize_volume
from cp3rt.runtime.tiles.grid import TileGrid, pad_yx
from cp3rt.runtime.tiles.infer import InferFn, run_tiled_stack
from cp3rt.runtime.tiles.options import TileOptions

Progress = Callable[[int, int], None]

# View k: (transpose of the (Z, C, Y, X) volume into planes, output component of the plane's
# row flow, of its column flow). Components: 0 = Z, 1 = Y, 2 = X flow, 3 = cellprob.
_VIEWS = (
    ((0, 1, 2, 3), 1, 2),  # YX planes, one per z
    ((2, 1, 0, 3), 0, 2),  # ZX planes, one per y
    ((3, 1, 0, 2), 0, 1),  # ZY planes, one per x
)


@dataclasses.dataclass(frozen=True)
class VolumeNetOutput:
    """Combined flows of a volume at the image size (or the net's size without resample)."""

    dP: np.ndarray        # (3, Z, Y, X) float32, Z/Y/X flow (each the sum of two views)
    cellprob: np.ndarray  # (Z, Y, X) float32, sum of the three views
    style: np.ndarray     # (Z', 256) float32: per-plane styles of the YX view ((X', 256), ZY view, with reference_bugs)
    rescale: float


def net_size(shape_zyx: tuple[int, int, int], rescale, anisotropy: float | None) -> tuple[int, int, int]:
    """(Z', Y', X') the net sees: int(Y * rescale), int(X * rescale), int(Z * anisotropy * rescale)."""
    lz, ly, lx = shape_zyx
    if rescale == 1.0 and anisotropy in (None, 1.0):
        return lz, ly, lx
    aniso = 1.0 if anisotropy is None else anisotropy
    lzr = int(lz * aniso * rescale)
    if lzr < 1:
        raise ConfigError(
            f"anisotropy={aniso:g} with rescale={float(rescale):g} shrinks {lz} planes to 0; "
            "use a larger anisotropy."
        )
    lyr, lxr = scaled_size((ly, lx), rescale) if rescale != 1.0 else (ly, lx)
    return lzr, lyr, lxr


def _view_tiles(planes_shape: tuple[int, int, int], tiles: TileOptions) -> int:
    n, ly, lx = planes_shape
    top, bottom, left, right = pad_yx(ly, lx)
    grid = TileGrid.plan((ly + top + bottom, lx + left + right), tiles.tile_size, tiles.tile_overlap, tiles.augment)
    return n * len(grid)


def run_views(
    x: np.ndarray,
    infer: InferFn,
    *,
    tiles: TileOptions,
    infer_ortho: InferFn | None = None,
    progress: Progress | None = None,
    style_view: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(Z, C, Y, X) net-sized volume -> ((4, Z, Y, X) summed outputs, the per-plane styles of
    view ``style_view``: 0 the YX planes (one per Z plane, the default), 2 the ZY planes (the
    reference's, its last view; docs/deviations.md row 14))."""
    nz, _, ny, nx = x.shape
    yf = np.zeros((4, nz, ny, nx), np.float32)
    sizes = [(nz, ny, nx), (ny, nz, nx), (nx, nz, ny)]
    totals = [_view_tiles(s, tiles) for s in sizes]
    style = np.zeros((0, D.STYLE_DIM), np.float32)
    for k, (perm, row_c, col_c) in enumerate(_VIEWS):
        offset, total = sum(totals[:k]), sum(totals)
        report = None if progress is None else (lambda d, _t, o=offset: progress(o + d, total))
        planes = np.ascontiguousarray(x.transpose(perm))
        fn = infer if k == 0 or infer_ortho is None else infer_ortho
        y, styles = run_tiled_stack(planes, fn, nout=3, tiles=tiles, progress=report)
        del planes
        # y: (planes, 3, rows, cols) -> back to (3, Z, Y, X) order of the volume
        back = np.argsort(perm[:1] + perm[2:])  # volume axes (Z, Y, X) held by (plane, row, col)
        vol = y.transpose(1, 0, 2, 3).transpose(0, *(1 + back))
        yf[3] += vol[2]
        yf[row_c] += vol[0]
        yf[col_c] += vol[1]
        del y, vol
        if styles is not None and k == style_view:
            style = styles
    return yf, style


def run_net_3d(
    volume: np.ndarray,
    infer: InferFn,
    *,
    rescale: float,
    anisotropy: float | None,
    resample: bool,
    tiles: TileOptions,
    flow3D_smooth: float = 0.0,
    infer_ortho: InferFn | None = None,
    progress: Progress | None = None,
    reference_bugs: bool = False,
) -> VolumeNetOutput:
    """Normalised (Z, C, Y, X) volume -> combined 3-D flows and cellprob (§3.9); the style is
    one per Z plane of the YX view (with ``reference_bugs`` the reference's, one per X column
    of its last, ZY view)."""
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 4 or 0 in vol.shape:
        raise InputError(f"do_3D needs a (Z, C, Y, X) volume; got shape {vol.shape}.")
    lz, _, ly, lx = vol.shape
    shape_r = net_size((lz, ly, lx), rescale, anisotropy)
    x = resize_volume(vol, shape_r)
    yf, style = run_views(x, infer, tiles=tiles, infer_ortho=infer_ortho, progress=progress,
                          style_view=len(_VIEWS) - 1 if reference_bugs else 0)
    del x
    if resample and shape_r != (lz, ly, lx):
        # back to the image size: per plane in Y/X, then per Y-slice in Z (bilinear, values kept)
        yf = resize_volume(yf.transpose(1, 0, 2, 3), (lz, ly, lx)).transpose(1, 0, 2, 3)
    dP = np.ascontiguousarray(yf[:3])
    if flow3D_smooth > 0:
        from scipy.ndimage import gaussian_filter

        dP = gaussian_filter(dP, (0, flow3D_smooth, flow3D_smooth, flow3D_smooth))
    return VolumeNetOutput(dP=dP, cellprob=np.ascontiguousarray(yf[3]),
                           style=np.asarray(style, np.float32), rescale=rescale)
