"""The CPU cores this process may use, and how many worker processes that can carry.

Shared by extraction (``extract --workers``, one single-threaded Dask worker per core by
default) and training (``data.workers``, DataLoader processes).  A count far above the
cores only costs: ``data.workers=10000`` started about 8 processes a second until memory ran
out, and ``extract --workers 10000`` logged tens of thousands of "Too many open files"
tracebacks.  So a count above :func:`worker_limit` is refused with one line.
"""

from __future__ import annotations

import os

__all__ = ["available_cores", "worker_limit", "worker_count_problem", "check_worker_count"]

# Workers per core still worth starting: loader workers wait on reads and decodes, so a few
# per core keep a GPU fed; beyond this they only add processes and memory.
WORKERS_PER_CORE = 4
# ... and never fewer than this, so that a config written for a bigger machine (8 loader
# workers per GPU) still runs on a small one, only slower.
MIN_WORKER_LIMIT = 16


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity on Linux, else all of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_limit() -> int:
    """The most worker processes a command may start here."""
    return max(MIN_WORKER_LIMIT, WORKERS_PER_CORE * available_cores())


def worker_count_problem(workers: int, *, option: str) -> str | None:
    """Why ``workers`` worker processes are refused (``option`` names the setting), or None."""
    if workers > worker_limit():
        return (
            f"{option}={workers} is more worker processes than this machine can use "
            f"({available_cores()} CPU core(s)): use at most {worker_limit()}"
        )
    return None


def check_worker_count(workers: int, *, option: str) -> int:
    """``workers`` itself, or the ValueError of :func:`worker_count_problem` (each worker
    is a process: a loader refuses before it starts any)."""
    problem = worker_count_problem(workers, option=option)
    if problem is not None:
        raise ValueError(problem)
    return workers
