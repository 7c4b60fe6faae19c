"""Run ``cp3rt run`` work on a Dask distributed cluster (issue 6, part 4).

``--cluster local[:N]`` starts a LocalCluster of N single-threaded worker processes (default:
one per core); ``--cluster tcp://HOST:PORT`` uses a running scheduler. Every input file is one
task; a task opens no engines itself: each worker process keeps one Pipeline per
PipelineConfig (``_pipeline_for``), so engines load once per worker. Tasks are retried
(``retries``) and a task lost with a killed worker is rescheduled by Dask; outputs are written
atomically under their final names, so a re-run task cannot leave a partial or duplicate file
and the result equals the single-process run.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cp3rt import defaults as D
from cp3rt._lazy import require
from cp3rt.errors import ConfigError
from cp3rt.runtime.batch import BatchEvent, BatchSummary, ImageOutcome, OutputOptions
from cp3rt.runtime.run_config import PipelineConfig, RunConfig

_LOCAL = re.compile(r"^local(?::(\d+))?$")
_PIPELINES: dict[PipelineConfig, Any] = {}
_LOCK = threading.Lock()


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


def _pipeline_for(config: PipelineConfig, run: RunConfig):
    """The worker process's Pipeline for ``config``, opened on first use and then kept."""
    from cp3rt.runtime.pipeline import Pipeline

    with _LOCK:
        pipe = _PIPELINES.get(config)
        if pipe is None:
            pipe = _PIPELINES[config] = Pipeline.from_config(config, run=run)
        return pipe


def _process(config: PipelineConfig, run: RunConfig, outputs: OutputOptions, image: str) -> ImageOutcome:
    from cp3rt.runtime.batch import _one

    return _one(_pipeline_for(config, run), Path(image), run, outputs, lambda d, n: None)


def open_client(spec: str):
    """A dask.distributed Client for ``spec`` (the caller closes it; a local cluster with it)."""
    distributed = require("distributed", "cluster runs (pip install cp3rt[scale])")
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


def run_distributed(
    client,
    config: PipelineConfig,
    images: Sequence[Path],
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    *,
    retries: int = D.CLUSTER_RETRIES,
    on_event: Callable[[BatchEvent], None] | None = None,
) -> BatchSummary:
    """Process every image as one task on ``client``'s cluster; outcomes in input order."""
    distributed = require("distributed", "cluster runs (pip install cp3rt[scale])")
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    emit = on_event or (lambda _e: None)
    t0 = time.perf_counter()
    total = len(images)
    futures = {
        client.submit(_process, config, run, outputs, str(p), retries=retries, pure=False,
                      key=f"cp3rt-{i}-{Path(p).name}"): i
        for i, p in enumerate(images)
    }
    outcomes: list[ImageOutcome | None] = [None] * total
    for fut in distributed.as_completed(futures):
        i = futures[fut]
        outcome = fut.result()
        outcomes[i] = outcome
        emit(BatchEvent("end", i, total, Path(images[i]), outcome=outcome))
    return BatchSummary(tuple(o for o in outcomes if o is not None), time.perf_counter() - t0)
