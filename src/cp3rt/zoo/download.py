"""Download one zoo file safely: TLS verified, size and content sanity checks, atomic rename.

The reference downloader disables certificate checks and accepts whatever the server sends
(§2.1); cp3rt keeps verification on and refuses error pages and short transfers, so a bad
download never lands in the cache under a model's name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cp3rt._fs import atomic_path
from cp3rt._version import __version__
from cp3rt.defaults import DOWNLOAD_CHUNK_BYTES, DOWNLOAD_TIMEOUT_S, ENV_ZOO_URL, ZOO_URL
from cp3rt.errors import DownloadError

ProgressFn = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, bytes_total)``; ``bytes_total`` is None if the server does not say."""

_HTML_PREFIXES = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")


def zoo_url(basename: str) -> str:
    """URL of a zoo file: ``$CP3RT_ZOO_URL`` (a pattern with ``{basename}`` or a base URL) or the official one."""
    pattern = os.environ.get(ENV_ZOO_URL) or ZOO_URL
    if "{basename}" in pattern:
        return pattern.format(basename=basename)
    return pattern.rstrip("/") + "/" + basename


def download_file(
    url: str,
    dest: Path,
    *,
    min_bytes: int,
    sha256: str | None = None,
    progress: ProgressFn | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> str:
    """Fetch ``url`` into ``dest`` (atomically) and return the file's sha256.

    Raises DownloadError, leaving nothing at ``dest``, on HTTP/network errors, an HTML answer,
    a transfer shorter than the announced Content-Length, fewer than ``min_bytes`` bytes, or a
    sha256 different from ``sha256`` when one is given.
    """
    what = f"download of {dest.name} from {url}"
    request = urllib.request.Request(url, headers={"User-Agent": f"cp3rt/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # default context: TLS verified
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{what} failed: HTTP {exc.code} {exc.reason}.") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"{what} failed: {reason}; copy the file into {dest.parent} or set "
            f"{ENV_ZOO_URL} to a reachable mirror."
        ) from exc
    with response:
        total = _content_length(response)
        content_type = response.headers.get("Content-Type", "")
        if "text/html" in content_type.lower():
            raise DownloadError(f"{what} returned a web page ({content_type}), not a model file.")
        if total is not None and total < min_bytes:
            raise DownloadError(
                f"{what}: the server announces {total} bytes, far less than a model file "
                f"(at least {min_bytes}); refusing it."
            )
        with atomic_path(dest) as tmp:
            digest, done = _copy(response, tmp, total, progress, what)
            _check_body(tmp, done, total, min_bytes, what)
            got = digest.hexdigest()
            if sha256 is not None and got != sha256.lower():
                raise DownloadError(f"{what}: sha256 is {got}, expected {sha256}; file discarded.")
    return got


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _copy(
    response: http.client.HTTPResponse,
    tmp: Path,
    total: int | None,
    progress: ProgressFn | None,
    what: str,
) -> tuple["hashlib._Hash", int]:
    digest = hashlib.sha256()
    done = 0
    try:
        with open(tmp, "wb") as fh:
            while block := response.read(DOWNLOAD_CHUNK_BYTES):
                fh.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
            fh.flush()
            os.fsync(fh.fileno())
    except http.client.IncompleteRead as exc:
        got = done + len(exc.partial)
        raise DownloadError(f"{what} was cut off after {got} of {total} bytes.") from exc
    except OSError as exc:  # timeouts and resets mid-transfer
        raise DownloadError(f"{what} failed after {done} bytes: {exc}.") from exc
    return digest, done


def _check_body(tmp: Path, done: int, total: int | None, min_bytes: int, what: str) -> None:
    if total is not None and done != total:
        raise DownloadError(f"{what} was cut off after {done} of {total} bytes.")
    with open(tmp, "rb") as fh:
        head = fh.read(64).lstrip().lower()
    if head.startswith(_HTML_PREFIXES):
        raise DownloadError(f"{what} returned a web page, not a model file.")
    if done < min_bytes:
        raise DownloadError(
            f"{what} produced only {done} bytes, far less than a model file (at least {min_bytes})."
        )
