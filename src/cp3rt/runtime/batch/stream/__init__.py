"""Streaming batch engine: many images in flight, their tiles sharing engine batches.

Design (issue 6, part 1)
------------------------
* ``workers`` threads each take the next image, read it, normalise, tile, stitch and run the
  dynamics for it exactly as :func:`cp3rt.runtime.pipeline.run_stages` does for one image, so
  every image is still stitched on its own and results are those of the one-at-a-time path.
* Engine calls do not go to the engine directly: each worker hands its tile batch to one
  :class:`TileBatcher` thread, which concatenates the requests waiting for the same engine
  and tile shape (tiles of different shapes cannot share a tensor) into one call of up to
  ``max_batch`` tiles, runs it, and hands every requester its slice back. Batch composition
  never changes a tile's output (BatchNorm runs in inference mode), so sharing is free.
* While one worker waits on the engine another reads its file or runs dynamics: reading,
  engine and dynamics overlap. Memory is bounded: at most ``workers`` images are in flight.

The GIL and the cores: onnxruntime releases the GIL while it runs, and every numba kernel of
the dynamics is compiled ``nogil`` (``dynamics.threads``), so a worker in dynamics does not stop
the others; what holds the GIL is the Python between kernels (``benchmarks/bench_cores.py``
measures how much). Each worker launches its kernels on its share of the cores
(``StreamConfig.kernel_threads``, default ``dynamics.threads.kernel_threads``), and hosts with
more cores get more workers (``default_workers``). On numba's workqueue layer, which aborts the process on
concurrent parallel launches, those launches take turns.
"""

from cp3rt.runtime.batch.stream.batcher import StreamConfig, StreamingView, StreamStats, TileBatcher, streaming_view
from cp3rt.runtime.batch.stream.folder import stream_batch
from cp3rt.runtime.batch.stream.map import stream_map

__all__ = ["StreamConfig", "StreamStats", "StreamingView", "TileBatcher", "stream_batch", "stream_map",
           "streaming_view"]
