"""Fixtures for the zoo tests: an isolated environment and a loopback HTTP model server."""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point HOME, cp3rt's cache and the Cellpose env var at empty temp folders."""
    dirs = {
        "home": tmp_path / "home",
        "cp3rt": tmp_path / "cp3rt-cache",
        "cellpose_env": tmp_path / "cellpose-env",
    }
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setenv("HOME", str(dirs["home"]))
    monkeypatch.setenv("CP3RT_CACHE_DIR", str(dirs["cp3rt"]))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    monkeypatch.delenv("CP3RT_ZOO_URL", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # loopback must not go through a proxy
    return dirs


@dataclasses.dataclass
class Route:
    """What the server answers for one path."""

    body: bytes
    status: int = 200
    content_type: str = "application/octet-stream"
    announce: int | None = None  # Content-Length to send; default len(body)
    send_length: bool = True


class ModelServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                with server._lock:
                    server.hits[self.path] = server.hits.get(self.path, 0) + 1
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                if route.send_length:
                    length = len(route.body) if route.announce is None else route.announce
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                try:
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass  # keep test output clean

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def route(self, path: str, body: bytes, **kwargs: object) -> None:
        """Serve ``body`` at ``path`` (keyword arguments as in :class:`Route`)."""
        self.routes[path] = Route(body, **kwargs)  # type: ignore[arg-type]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def model_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    """A loopback server at CP3RT_ZOO_URL=<base>/models/{basename}."""
    server = ModelServer()
    server.start()
    monkeypatch.setenv("CP3RT_ZOO_URL", server.base + "/models/{basename}")
    yield server
    server.stop()
