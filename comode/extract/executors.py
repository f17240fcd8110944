"""Executors: run a function over items and yield results as they complete.

A 15-line sequential executor (tests, debugging, ``--workers 0``) beside the Dask one, with
the same interface, so the pipeline and its tests are parametrised over both (rechunker's
pattern).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Iterable, Iterator, Protocol

from comode.cores import available_cores
from comode.logs import forward_dask_logs

logger = logging.getLogger(__name__)


class Executor(Protocol):
    description: str

    def map_unordered(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> Iterator[tuple[Any, Any]]:
        """Yield (item, fn(item, *args)) pairs in completion order; an exception is yielded as the result."""


class SequentialExecutor:
    description = "sequential (in this process)"

    def map_unordered(self, fn, items, *args):
        for item in items:
            try:
                yield item, fn(item, *args)
            except Exception as error:  # the pipeline decides what a crashed task means
                yield item, error

    def close(self) -> None:
        pass


def default_worker_count() -> int:
    """One single-threaded worker per core: each task's ffmpeg and decoder use one thread."""
    return available_cores()


class DaskExecutor:
    """Runs tasks on a Dask cluster: a LocalCluster by default, or an existing scheduler."""

    def __init__(self, *, scheduler: str | None = None, workers: int | None = None, memory_limit: str = "auto"):
        from dask.distributed import Client, LocalCluster  # lazy: ~0.5 s to import, unused by --workers 0

        self._cluster = None
        if scheduler:
            self.client = Client(scheduler, timeout="30s")
            self.description = f"dask scheduler {scheduler} ({len(self.client.scheduler_info()['workers'])} workers)"
        else:
            n = workers or default_worker_count()
            # Processes, one thread each: the decoders release the GIL only partly, and a
            # crashing native decoder must take down one worker, not the client.
            self._cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                memory_limit=memory_limit,
                silence_logs=40,
            )
            self.client = Client(self._cluster)
            self.description = f"dask LocalCluster ({n} workers x 1 thread)"
        # Workers' warnings and comode records reach this process's console and log file.
        forward_dask_logs(self.client)

    def map_unordered(self, fn, items, *args):
        """Tasks go to the scheduler a window at a time (:meth:`window`): the client and the
        scheduler hold a few tasks per worker thread, not one per video (all at once, a
        Kinetics-size run would keep 240k pending tasks in both, ~10 kB each:
        docs/performance.md), and a new task is submitted as each one finishes."""
        from dask.distributed import as_completed  # lazy, as in __init__

        # pure=False: a re-run must recompute, never reuse a cached result.
        run = uuid.uuid4().hex[:8]
        pending = iter(enumerate(items))
        futures: dict[Any, Any] = {}

        def submit_next() -> Any:
            for number, item in pending:
                future = self.client.submit(fn, item, *args, pure=False, key=f"extract-{run}-{number}")
                futures[future] = item
                return future
            return None

        queue = as_completed([f for f in (submit_next() for _ in range(self.window())) if f is not None])
        for future in queue:
            item = futures.pop(future)
            try:
                yield item, future.result()
            except Exception as error:  # KilledWorker, a worker that died mid-task, ...
                yield item, error
            future.release()
            following = submit_next()
            if following is not None:
                queue.add(following)

    def window(self) -> int:
        """Tasks in flight at once: 4 per worker thread (so that no worker waits for the
        client between tasks), at least 32."""
        threads = sum(self.client.nthreads().values())
        return max(32, 4 * threads)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            try:
                self._cluster.close()
            except KeyError as error:
                # distributed's LocalCluster can raise KeyError from its worker-status watcher
                # when it closes after a worker was killed and restarted during the run (seen
                # in CI: its workers and scheduler are already closed by then).  The run's
                # results are in the store; a finished run must not end in a traceback.
                logger.warning(
                    "the local Dask cluster reported an error while closing (%r); "
                    "its workers and scheduler were already shut down",
                    error,
                )


def make_executor(*, scheduler: str | None = None, workers: int | None = None) -> SequentialExecutor | DaskExecutor:
    """``workers == 0`` means sequential in this process; otherwise Dask."""
    if workers == 0 and not scheduler:
        return SequentialExecutor()
    return DaskExecutor(scheduler=scheduler, workers=workers)
