"""Downloads against a loopback HTTP server: success, and every failure leaves the cache clean."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from cp3rt.defaults import MIN_WEIGHT_FILE_BYTES
from cp3rt.errors import DownloadError, ModelNotFoundError
from cp3rt.zoo import ZOO, ModelInfo, resolve_size_model, resolve_weights, zoo_url
from cp3rt.zoo.resolve import SIDECAR_SUFFIX

# Big enough to pass the size sanity check, like a real ~26 MB CPnet file.
WEIGHT_BYTES = MIN_WEIGHT_FILE_BYTES + 12_345


@pytest.fixture(scope="module")
def weight_blob() -> bytes:
    return os.urandom(WEIGHT_BYTES)


def _cache_files(isolated_dirs: dict[str, Path]) -> list[str]:
    folder = isolated_dirs["cp3rt"] / "models"
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_download_success_progress_and_sidecar(model_server, weight_blob: bytes,
                                               isolated_dirs: dict[str, Path]) -> None:
    model_server.route("/models/cyto3", weight_blob)
    calls: list[tuple[int, int | None]] = []
    path = resolve_weights("cyto3", progress=lambda done, total: calls.append((done, total)))
    assert path == isolated_dirs["cp3rt"] / "models" / "cyto3"
    assert path.read_bytes() == weight_blob
    assert calls[-1] == (WEIGHT_BYTES, WEIGHT_BYTES)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    sidecar = path.with_name("cyto3" + SIDECAR_SUFFIX).read_text()
    assert sidecar == f"{hashlib.sha256(weight_blob).hexdigest()}  cyto3\n"
    # Second resolution uses the cache: no second request.
    assert resolve_weights("cyto3") == path
    assert model_server.hits["/models/cyto3"] == 1


def test_truncated_transfer_leaves_nothing(model_server, weight_blob: bytes,
                                           isolated_dirs: dict[str, Path]) -> None:
    model_server.route("/models/cyto3", weight_blob[: WEIGHT_BYTES // 2], announce=WEIGHT_BYTES)
    with pytest.raises(DownloadError, match="cut off after"):
        resolve_weights("cyto3")
    assert _cache_files(isolated_dirs) == []


def test_http_404(model_server, isolated_dirs: dict[str, Path]) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        resolve_weights("tissuenet_cp3")
    assert _cache_files(isolated_dirs) == []


def test_implausibly_small_file_refused(model_server, isolated_dirs: dict[str, Path]) -> None:
    model_server.route("/models/cyto3", b"\x80\x02" + b"x" * 5000)
    with pytest.raises(DownloadError, match="announces 5002 bytes"):
        resolve_weights("cyto3")
    # Without Content-Length the check happens after the transfer.
    model_server.route("/models/cyto3", b"\x80\x02" + b"x" * 5000, send_length=False)
    with pytest.raises(DownloadError, match="only 5002 bytes"):
        resolve_weights("cyto3")
    assert _cache_files(isolated_dirs) == []


def test_html_error_page_refused(model_server, weight_blob: bytes,
                                 isolated_dirs: dict[str, Path]) -> None:
    model_server.route("/models/cyto3", b"<html>moved</html>", content_type="text/html")
    with pytest.raises(DownloadError, match="web page"):
        resolve_weights("cyto3")
    # A large page sent as octet-stream is caught by content sniffing.
    page = b"  <!DOCTYPE html>" + weight_blob
    model_server.route("/models/cyto3", page)
    with pytest.raises(DownloadError, match="web page"):
        resolve_weights("cyto3")
    assert _cache_files(isolated_dirs) == []


def test_known_sha256_checked(model_server, weight_blob: bytes,
                              isolated_dirs: dict[str, Path]) -> None:
    good = hashlib.sha256(weight_blob).hexdigest()
    model_server.route("/models/mine", weight_blob)
    wrong = ModelInfo("mine", "mine", "segment", 30.0, 2, 3, sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256 is"):
        resolve_weights("mine", registry=ZOO.with_models(wrong))
    assert _cache_files(isolated_dirs) == []
    right = ModelInfo("mine", "mine", "segment", 30.0, 2, 3, sha256=good)
    path = resolve_weights("mine", registry=ZOO.with_models(right))
    assert path.read_bytes() == weight_blob
    assert _cache_files(isolated_dirs) == ["mine"]  # known hash: no trust-on-first-use sidecar


def test_unreachable_server_names_mirror_variable(monkeypatch: pytest.MonkeyPatch,
                                                  isolated_dirs: dict[str, Path]) -> None:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CP3RT_ZOO_URL", f"http://127.0.0.1:{port}/m")
    with pytest.raises(DownloadError, match="CP3RT_ZOO_URL"):
        resolve_weights("cyto3")
    assert _cache_files(isolated_dirs) == []


def test_download_off_says_where_it_looked(isolated_dirs: dict[str, Path]) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_weights("cyto3", download=False)
    assert str(isolated_dirs["cp3rt"] / "models") in str(info.value)
    assert str(isolated_dirs["home"] / ".cellpose" / "models") in str(info.value)


def test_concurrent_resolvers_download_once(model_server, weight_blob: bytes) -> None:
    model_server.route("/models/cyto3", weight_blob)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(resolve_weights("cyto3"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1 and results[0].read_bytes() == weight_blob
    assert model_server.hits["/models/cyto3"] == 1


def test_size_model_download(model_server) -> None:
    blob = b"\x93NUMPY" + os.urandom(3000)
    model_server.route("/models/size_nucleitorch_0.npy", blob)
    assert resolve_size_model("nuclei").read_bytes() == blob
    with pytest.raises(ModelNotFoundError, match="no size model"):
        resolve_size_model("tissuenet_cp3")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, "https://www.cellpose.org/models/cyto2torch_0"),
        ("http://mirror/x/{basename}?raw=1", "http://mirror/x/cyto2torch_0?raw=1"),
        ("http://mirror/x/", "http://mirror/x/cyto2torch_0"),
    ],
)
def test_zoo_url(monkeypatch: pytest.MonkeyPatch, env: str | None, expected: str) -> None:
    if env is not None:
        monkeypatch.setenv("CP3RT_ZOO_URL", env)
    assert zoo_url(ZOO.get("cyto2").basename) == expected
