"""Helpers for the cluster tests: kill a worker mid-run, wait for the cluster to heal."""

from __future__ import annotations

import os
import signal
from typing import Any


class WorkerKiller:
    """Call it from a run's progress callback: the first call SIGKILLs one worker process, so
    the kill lands while tasks are still queued on it (a timer could fire after the run)."""

    def __init__(self, client) -> None:
        self.client = client
        self.pid = next(iter(client.run(os.getpid).values()))
        self.calls = 0

    def __call__(self, *_: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            os.kill(self.pid, signal.SIGKILL)

    def assert_killed_mid_run(self, total: int) -> None:
        assert self.calls >= total, "the run did not report every task"
        wait_for_workers(self.client)  # the nanny restarts the worker
        assert self.pid not in self.client.run(os.getpid).values(), "the worker was not killed"


def wait_for_workers(client, n: int = 2, timeout: float = 60.0) -> None:
    """A LocalCluster restarts a killed worker; later tests want both back."""
    client.wait_for_workers(n, timeout=timeout)
