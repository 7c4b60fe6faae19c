"""Cluster plumbing shared by the task kinds: the ``--cluster`` spec, the client, the worker's
own Pipelines, and submitting tasks whose results come back in input order."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from cp3rt import defaults as D
from cp3rt._lazy import require
from cp3rt.errors import ConfigError
from cp3rt.runtime.config import PipelineConfig, RunConfig

_LOCAL = re.compile(r"^local(?::(\d+))?$")
_PIPELINES: dict[PipelineConfig, Any] = {}
_LOCK = threading.Lock()
_EXTRA = "cluster runs (pip install cp3rt[scale])"


def parse_cluster(spec: str) -> tuple[str, Any]:
    """'local' | 'local:N' -> ('local', N or None); 'tcp://host:port' -> ('tcp', address)."""
    m = _LOCAL.match(spec.strip())
    if m:
        n = int(m.group(1)) if m.group(1) else None
        if n is not None and n < 1:
            raise ConfigError(f"cluster={spec!r} is not allowed; allowed: local, local:N (N >= 1) or tcp://HOST:PORT.")
        return "local", n
    if re.match(r"^tcp://[^:/]+:\d+$", spec.strip()):
        return "tcp", spec.strip()
    raise ConfigError(f"cluster={spec!r} is not allowed; allowed: local, local:N (N >= 1) or tcp://HOST:PORT.")


def open_client(spec: str):
    """A dask.distributed Client for ``spec`` (the caller closes it; a local cluster with it)."""
    distributed = require("distributed", _EXTRA)
    kind, arg = parse_cluster(spec)
    if kind == "tcp":
        return distributed.Client(arg)
    cluster = distributed.LocalCluster(n_workers=arg, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    client._cp3rt_cluster = cluster  # closed together
    return client


def close_client(client) -> None:
    cluster = getattr(client, "_cp3rt_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def pipeline_for(config: PipelineConfig, run: RunConfig):
    """The worker process's Pipeline for ``config``, opened on first use and then kept, so a
    worker loads its engines once whatever the number of tasks."""
    from cp3rt.runtime.pipeline import Pipeline

    with _LOCK:
        pipe = _PIPELINES.get(config)
        if pipe is None:
            pipe = _PIPELINES[config] = Pipeline.from_config(config, run=run)
        return pipe


def map_ordered(client, fn: Callable[..., Any], calls: Sequence[tuple], names: Sequence[str], *,
                retries: int = D.CLUSTER_RETRIES,
                on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``fn(*calls[i])`` as one task each (named ``names[i]``, retried ``retries`` times; a task
    lost with a killed worker is rescheduled by Dask); results in input order, ``on_result``
    called as each arrives. A task that still fails raises here."""
    distributed = require("distributed", _EXTRA)
    token = uuid.uuid4().hex[:8]  # a repeated run on the same client must not reuse old results
    futures = {client.submit(fn, *args, retries=retries, pure=False, key=f"{name}-{token}"): i
               for i, (args, name) in enumerate(zip(calls, names))}
    results: list[Any] = [None] * len(calls)
    for fut in distributed.as_completed(futures):
        i = futures[fut]
        results[i] = fut.result()
        if on_result is not None:
            on_result(i, results[i])
    return results
