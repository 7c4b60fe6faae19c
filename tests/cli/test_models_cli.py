"""`cp3rt models`: the zoo table, local copies by location, --role and --download."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cp3rt.cli.app import main
from cp3rt.defaults import MIN_WEIGHT_FILE_BYTES
from cp3rt.zoo import ZOO


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CP3RT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A loopback static file server used as CP3RT_ZOO_URL; put files in the yielded folder."""
    folder = tmp_path / "mirror"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("CP3RT_ZOO_URL", f"http://127.0.0.1:{httpd.server_address[1]}/")
    yield folder
    httpd.shutdown()
    httpd.server_close()


def _rows(out: str) -> dict[str, str]:
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ZOO:
            rows[parts[0]] = line
    return rows


def test_lists_every_model_as_not_downloaded(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert set(rows) == set(ZOO.names())
    zoo = {m.name for m in ZOO if m.source == "zoo"}
    assert all("not downloaded" in row for name, row in rows.items() if name in zoo)
    # cp3rt's starter models ship in the package: present without any download.
    assert all("package" in rows[name] for name in set(rows) - zoo)
    assert "17" in rows["nuclei"].split() and "30" in rows["cyto3"].split()
    assert "refused" in rows["transformer_cp3"]


def test_shows_where_a_copy_is(isolated: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    cellpose_cache = isolated / "home" / ".cellpose" / "models"
    cellpose_cache.mkdir(parents=True)
    (cellpose_cache / "cyto3").write_bytes(b"w")
    env_dir = isolated / "env-models"
    env_dir.mkdir()
    (env_dir / "nucleitorch_0").write_bytes(b"w")
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(env_dir))
    assert main(["models", "--role", "segment"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert "cellpose-cache" in rows["cyto3"] and "cellpose-env" in rows["nuclei"]
    assert "not downloaded" in rows["cyto2"]
    assert not any(ZOO.get(n).role == "restore" for n in rows)
    assert str(env_dir) in out.replace("\n", "")


def test_bad_role_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--role", "classify"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --role is 'classify'; allowed: segment, restore."


def test_download(mirror: Path, isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open(mirror / "denoise_cyto3", "wb") as fh:
        fh.write(os.urandom(MIN_WEIGHT_FILE_BYTES + 10))
    assert main(["models", "--download", "denoise_cyto3", "--role", "restore"]) == 0
    out = capsys.readouterr().out
    target = isolated / "cache" / "models" / "denoise_cyto3"
    assert target.read_bytes() == (mirror / "denoise_cyto3").read_bytes()
    assert "cp3rt-cache" in _rows(out)["denoise_cyto3"]


def test_failed_download_is_one_line_error(mirror: Path, isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--download", "cyto3"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: download of cyto3 from http://127.0.0.1:") and "HTTP 404" in err
    assert len(err.splitlines()) == 1
    assert not (isolated / "cache" / "models" / "cyto3").exists()
