"""The :class:`~cp3rt.runtime.batch.inputs.Cluster` that ``run_inputs`` takes, on Dask.

``with open_cluster("local:4") as cluster: run_inputs(inputs, config, run, outputs, cluster=cluster)``
runs every image file and every plate field as a task, and the blocks of huge images as tasks.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cp3rt import defaults as D
from cp3rt.distributed._cluster import close_client, open_client
from cp3rt.distributed.blocks import cluster_block_runner
from cp3rt.distributed.files import run_distributed
from cp3rt.distributed.plates import run_plate_on_cluster
from cp3rt.runtime.batch.blocks.image_files import BlockRunner
from cp3rt.runtime.batch.files import BatchEvent, BatchSummary, OutputOptions
from cp3rt.runtime.batch.plates import PlateSummary
from cp3rt.runtime.config import PipelineConfig, RunConfig


@dataclasses.dataclass(frozen=True)
class DaskCluster:
    """Tasks on the cluster behind ``client``, each retried ``retries`` times."""

    client: Any
    retries: int = D.CLUSTER_RETRIES

    def run_files(self, config: PipelineConfig, images: Sequence[Path], run: RunConfig, outputs: OutputOptions,
                  *, on_event: Callable[[BatchEvent], None] | None) -> BatchSummary:
        return run_distributed(self.client, config, images, run, outputs, retries=self.retries, on_event=on_event)

    def run_plate(self, config: PipelineConfig, root: Path, run: RunConfig, outputs: OutputOptions, *,
                  block_size: int, on_event: Callable[[BatchEvent], None] | None) -> PlateSummary:
        return run_plate_on_cluster(self.client, config, root, run, outputs, block_size=block_size,
                                    retries=self.retries, on_event=on_event)

    def block_runner(self, config: PipelineConfig, run: RunConfig, *, nchan: int) -> BlockRunner:
        return cluster_block_runner(self.client, config, run, nchan=nchan, retries=self.retries)


@contextlib.contextmanager
def open_cluster(spec: str | None) -> Iterator[DaskCluster | None]:
    """A :class:`DaskCluster` for ``spec`` ('local', 'local:N', 'tcp://HOST:PORT'; see
    ``parse_cluster``), closed on exit with the local cluster it started. ``None`` yields None:
    no cluster, ``run_inputs`` then runs everything in this process."""
    if spec is None:
        yield None
        return
    client = open_client(spec)
    try:
        yield DaskCluster(client)
    finally:
        close_client(client)
