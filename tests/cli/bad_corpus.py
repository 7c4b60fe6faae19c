"""A folder of every kind of bad input from issue 13's sweep, and the good oddities.

``write_corpus(folder)`` returns {file name: expected} where expected is ``"ok"`` (the file must
give valid masks) or ``"fail"`` (one line naming the file, the batch goes on). Small on purpose:
the whole corpus goes through ``cp3rt run``, ``eval`` and ``degrade`` in a few seconds.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets" / "samples" / "dsb2018_nuclei.tif"
MODEL = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets" / "models" / "cp3rt_nuclei.onnx"


def sample(size: int = 96, y0: int = 0, x0: int = 0) -> np.ndarray:
    return tifffile.imread(SAMPLE)[y0 : y0 + size, x0 : x0 + size]


def crops(folder: Path, n: int, size: int) -> list[Path]:
    """``n`` different ``size``-px crops of the sample as ``folder/imgNN.tif``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:02d}.tif"
        tifffile.imwrite(p, sample(size, (i * 53) % (512 - size), (i * 97) % (512 - size)))
        paths.append(p)
    return paths


def _header_only_bigtiff(path: Path, side: int = 100_000) -> None:
    tifffile.imwrite(path, shape=(side, side), dtype=np.uint8, bigtiff=True)
    with open(path, "r+b") as fh:
        fh.truncate(8192)


def _png_claiming(path: Path, side: int) -> None:
    """A tiny PNG whose header says side x side pixels (a decompression bomb's claim)."""
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", side, side)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def write_corpus(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    img = sample()
    rng = np.random.default_rng(13)
    expect: dict[str, str] = {}

    def tif(name: str, data: np.ndarray, want: str, **kw) -> None:
        tifffile.imwrite(folder / name, data, **kw)
        expect[name] = want

    tif("good.tif", img, "ok")
    tif("one_by_one.tif", img[:1, :1], "ok")
    tif("strip_1x5000.tif", np.tile(img[:1], (1, 53))[:, :5000], "ok")  # a side over 4096: blocks
    tif("strip_5000x1.tif", np.tile(img[:, :1], (53, 1))[:5000], "ok")
    tif("bool.tif", img > np.percentile(img, 70), "ok")
    tif("big_endian.tif", img.astype(">u2"), "ok", byteorder=">")
    tif("float_lowrange.tif", img.astype(np.float32) * 1e-6, "ok")
    tif("nan.tif", np.full((64, 64), np.nan, np.float32), "fail")
    tif("inf.tif", np.where(img > img.mean(), np.inf, 0).astype(np.float32), "fail")
    tif("complex.tif", img.astype(np.complex64), "fail")
    tif("five_d.tif", np.zeros((2, 2, 2, 32, 32), np.uint8), "fail")
    Image.fromarray((img // max(1, img.max() // 255)).astype(np.uint8)).save(folder / "good_png.png")
    expect["good_png.png"] = "ok"

    tif("truncated.tif", rng.integers(0, 60000, (256, 256), dtype=np.uint16), "fail")
    _cut(folder / "truncated.tif")
    (folder / "garbage.tif").write_bytes(b"II*\x00" + rng.bytes(300))
    expect["garbage.tif"] = "fail"
    Image.fromarray(rng.integers(0, 255, (128, 128), dtype=np.uint8)).save(folder / "truncated_png.png")
    _cut(folder / "truncated_png.png", 0.3)
    expect["truncated_png.png"] = "fail"
    (folder / "garbage_png.png").write_bytes(rng.bytes(500))  # garbage.png + garbage.tif: refused pair
    expect["garbage_png.png"] = "fail"
    (folder / "zero_bytes.tif").write_bytes(b"")
    expect["zero_bytes.tif"] = "fail"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "png_named_tif.tif", format="PNG")
    expect["png_named_tif.tif"] = "fail"
    tifffile.imwrite(folder / "tif_named_jpg.jpg", img)  # read by content, as OpenCV does
    expect["tif_named_jpg.jpg"] = "ok"
    _header_only_bigtiff(folder / "header_only_100k.tif")
    expect["header_only_100k.tif"] = "fail"
    _png_claiming(folder / "png_claims_100k.png", 100_000)
    expect["png_claims_100k.png"] = "fail"
    (folder / "notes.txt").write_text("not an image; a folder run must ignore it")
    return expect


def failed_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("failed")]


def env_for(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CP3RT_CACHE_DIR=str(workdir / "cache"), COLUMNS="200")
    return env
