"""Stand-ins for the scale tests (streaming, blocks, plates, distributed): a numpy 'net' whose
flows point up the intensity gradient (bright blobs -> one mask per blob), blob images with
known labels, an NGFF HCS plate writer, and a tiny real CPnet exported to ONNX for the process-based tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cp3rt.engines.base import BaseEngine, TensorSpec
from cp3rt.manifest import EngineManifest


def gradient_net(x: np.ndarray) -> dict[str, np.ndarray]:
    gy, gx = np.gradient(x[:, 0], axis=(1, 2))
    norm = np.sqrt(gy**2 + gx**2) + 1e-6
    flows = np.stack([5 * gy / norm, 5 * gx / norm, 8 * (x[:, 0] - 0.3)], axis=1)
    return {"flows": flows.astype(np.float32), "style": np.full((x.shape[0], 256), 1 / 16, np.float32)}


class NumpyEngine(BaseEngine):
    """A segment engine computing ``gradient_net``; counts the batches it is given."""

    backend = "numpy"

    def __init__(self, nchan: int = 1, diam_mean: float = 30.0) -> None:
        manifest = EngineManifest(
            role="segment", source_model="numpy-gradient", source_sha256="0" * 64, nchan=nchan,
            nout=3, diam_mean=diam_mean, diam_labels=diam_mean, precision="fp32", opset=17,
        )
        image = TensorSpec("image", "float32", (None, nchan, None, None))
        outs = (TensorSpec("flows", "float32", (None, 3, None, None)),
                TensorSpec("style", "float32", (None, 256)))
        super().__init__((image,), outs, manifest, label="numpy-gradient")
        self.batches: list[int] = []

    def _run(self, feeds):
        self.batches.append(len(feeds["image"]))
        return gradient_net(feeds["image"])


def blob_image(shape: tuple[int, int], n: int, seed: int, radius: float = 9.0,
               centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint16 image of smooth bright discs and their (Y, X) label image (1..n)."""
    rng = np.random.default_rng(seed)
    if centres is None:
        centres = np.stack([rng.uniform(radius * 1.5, s - radius * 1.5, n) for s in shape], axis=1)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint32)
    best = np.full(shape, np.inf, np.float32)
    for k, (cy, cx) in enumerate(centres, start=1):
        y0, y1 = int(max(0, cy - 2 * radius)), int(min(shape[0], cy + 2 * radius + 1))
        x0, x1 = int(max(0, cx - 2 * radius)), int(min(shape[1], cx + 2 * radius + 1))
        d2 = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2
        img[y0:y1, x0:x1] = np.maximum(img[y0:y1, x0:x1], np.exp(-d2 / (2 * (radius * 0.6) ** 2)))
        inside = (d2 <= radius**2) & (d2 < best[y0:y1, x0:x1])
        labels[y0:y1, x0:x1][inside] = k
        best[y0:y1, x0:x1][inside] = d2[inside]
    return (img * 60000).astype(np.uint16), labels


WELLS = [("A", "1"), ("A", "2"), ("B", "1"), ("B", "2")]
FIELDS = 2


def _field_scene(w: int, f: int):
    """Separated blobs (a random subset of a 24-px grid): a different count per field."""
    rng = np.random.default_rng(100 * w + f)
    grid = np.array([(y, x) for y in range(14, 90, 24) for x in range(14, 106, 24)], float)
    centres = grid[rng.permutation(len(grid))[: 6 + 3 * w + f]] + rng.uniform(-2, 2, (6 + 3 * w + f, 2))
    return blob_image((96, 112), 0, 0, radius=6, centres=centres)


def write_plate(root):
    """A 2x2-well, 2-field NGFF 0.4 plate written with zarr (format 2) as a microscope would."""
    import zarr

    from cp3rt.runtime.io.zarr_io import write_ngff_image

    g = zarr.open_group(str(root), mode="w", zarr_format=2)
    g.attrs["plate"] = {
        "version": "0.4", "name": "test", "field_count": FIELDS,
        "rows": [{"name": "A"}, {"name": "B"}], "columns": [{"name": "1"}, {"name": "2"}],
        "wells": [{"path": f"{r}/{c}", "rowIndex": "AB".index(r), "columnIndex": int(c) - 1} for r, c in WELLS],
    }
    truth = {}
    for w, (r, c) in enumerate(WELLS):
        well = g.require_group(r).require_group(c)
        well.attrs["well"] = {"version": "0.4", "images": [{"path": str(f)} for f in range(FIELDS)]}
        for f in range(FIELDS):
            img, lab = _field_scene(w, f)
            write_ngff_image(root / r / c / str(f), img, chunks=64)
            truth[(f"{r}/{c}", f)] = (img, lab)
    return truth


def export_tiny_onnx(folder: Path, nbase=(2, 8, 16, 256), seed: int = 0) -> Path:
    """A random-init CPnet (style width 256, which the runtime expects) exported to ONNX."""
    import torch

    from cp3rt.export.to_onnx import export_onnx
    from cp3rt.models.cpnet import CPnet

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = CPnet(list(nbase), 3, diam_mean=30.0)
    _calibrate(net)
    weights = net.save(folder / "tiny_seg")
    return export_onnx(weights, folder, verify=False).onnx_path


HEAD_TARGETS = ((0.0, 5.0), (0.0, 5.0), (0.3, 1.5))  # dY, dX ~ trained |flow|; cellprob spread


def _calibrate(net) -> None:
    """Rescale the last 1x1 conv so each output has a trained net's mean/std on a blob tile
    (the head is affine in its weights, so this is exact): the dynamics then find masks."""
    import torch

    img = blob_image((224, 224), 30, 99)[0].astype(np.float32)
    tile = np.zeros((1, net.nchan, 224, 224), np.float32)
    tile[0, 0] = img / img.max()
    net.eval()
    with torch.no_grad():
        y = net(torch.from_numpy(tile))[0][0].numpy().astype(np.float64)
        head = net.output[2]
        for c, (mean, std) in enumerate(HEAD_TARGETS):
            scale = std / y[c].std()
            head.weight[c] *= scale
            head.bias[c] = float((head.bias[c].item() - y[c].mean()) * scale + mean)
