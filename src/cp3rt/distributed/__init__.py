"""Run ``cp3rt run`` work on a Dask distributed cluster (issue 6, part 4).

``--cluster local[:N]`` starts a LocalCluster of N single-threaded worker processes (default:
one per core); ``--cluster tcp://HOST:PORT`` uses a running scheduler. Three kinds of task:
an image file (``files``), a block of a huge image (``blocks``) and a field of an HCS plate
(``plates``). A task opens no engines itself: each worker process keeps one Pipeline per
PipelineConfig, so engines load once per worker. Tasks are retried, and a task lost with a
killed worker is rescheduled by Dask; every write a task makes replaces what an earlier
attempt left (atomic renames, chunk-exclusive zarr writes, completion markers written last),
so nothing is lost or duplicated and the result equals the single-process run.
``open_cluster`` gives the ``DaskCluster`` that ``cp3rt.runtime.run_inputs(..., cluster=)`` takes.
"""

from cp3rt.distributed._cluster import close_client, open_client, parse_cluster
from cp3rt.distributed.blocks import cluster_block_runner, segment_blocks_on_cluster
from cp3rt.distributed.cluster import DaskCluster, open_cluster
from cp3rt.distributed.files import run_distributed
from cp3rt.distributed.plates import run_plate_on_cluster

__all__ = [
    "DaskCluster", "close_client", "cluster_block_runner", "open_client", "open_cluster", "parse_cluster",
    "run_distributed", "run_plate_on_cluster", "segment_blocks_on_cluster",
]
