"""Data order and the one loader pretraining uses: which videos each step of each rank
gets, and the DataLoader that decodes them in worker processes.

Processes: loader workers start with the "forkserver" method: they fork from a clean
single-threaded server process (tensorstore and zarr run I/O threads in any process that
has read a store, and a process-wide FFmpeg object with its own threads deadlocked a
forked worker once -- measured), start faster than spawned ones and persist across
epochs (start-up costs: docs/performance.md).  Batches are collated with :func:`collate` (channels-last
stacking: a plain memcpy instead of default_collate's strided copy).

With "forkserver" the main module is imported by the workers' server: a script must
create and iterate the loader under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import multiprocessing
import random
import signal
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, default_collate

from comode.cores import check_worker_count
from comode.data.seeds import STREAM_LOADER, STREAM_ORDER, derive_seed
from comode.distributed import local_batch_size

__all__ = ["STOP_SIGNALS", "EpochBatchSampler", "RunLoader", "collate", "ignore_in_worker"]

# The signals that stop a run cleanly (comode.train.stop): the main process finishes its
# step and saves; the loader's workers leave them to it (:func:`ignore_in_worker`).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class EpochBatchSampler(Sampler[list[int]]):
    """One rank's batches of one epoch, optionally starting after ``start`` consumed batches.

    The epoch order is a permutation of the dataset seeded by (seed, epoch) -- the same on
    every rank -- cut into ``steps_per_epoch`` global batches of ``global_batch`` indices
    (the remainder is dropped); rank r takes rows [r * B_local, (r + 1) * B_local) of each,
    so the W local batches concatenated in rank order are exactly the global batch (the
    order :func:`gather_with_gradients` puts the keys in).
    """

    def __init__(
        self, *, dataset_size: int, global_batch: int, rank: int, world_size: int, seed: int, epoch: int, start: int = 0
    ) -> None:
        self.local_batch = local_batch_size(global_batch, ranks=world_size)
        self.steps_per_epoch = dataset_size // global_batch
        self.dataset_size, self.global_batch = dataset_size, global_batch
        self.rank, self.seed = rank, seed
        self.set_epoch(epoch, start=start)

    def set_epoch(self, epoch: int, *, start: int = 0) -> None:
        """Batches of ``epoch`` from the ``start``-th on, from the next ``iter()``.  The
        sampler lives in the training process, so a loader with persistent workers can keep
        them across epochs."""
        if not 0 <= start <= self.steps_per_epoch:
            raise ValueError(f"start={start} outside the epoch's {self.steps_per_epoch} batches")
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, STREAM_ORDER, self.epoch))
        order = torch.randperm(self.dataset_size, generator=generator).tolist()
        offset = self.rank * self.local_batch
        for batch in range(self.start, self.steps_per_epoch):
            first = batch * self.global_batch + offset
            yield order[first : first + self.local_batch]

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start


# Sample keys holding a channels-first view of channels-last (decoded) memory.
_CHANNELS_LAST_KEYS = ("clip", "iframe")


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """default_collate, except that ``clip`` / ``iframe`` are stacked in their decoded
    channels-last memory (a memcpy, into shared memory in a worker) and returned as
    channels-first views: (B, 3, T, h, w) and (B, 3, h, w), strided.  default_collate
    would transpose every sample while copying (measured slower: docs/performance.md)."""
    rest = default_collate([{k: v for k, v in s.items() if k not in _CHANNELS_LAST_KEYS} for s in samples])
    for key in _CHANNELS_LAST_KEYS:
        if key in samples[0]:
            rest[key] = default_collate([s[key].movedim(0, -1) for s in samples]).movedim(-1, 1)
    return rest


class RunLoader:
    """The run's one DataLoader; :meth:`epoch` points it at an epoch (and a resume position).

    Worker processes persist across epochs (they would otherwise be started again for
    every epoch, with a cold cache each time, which dominates short epochs): the
    sampler is in this process, and the dataset's epoch is shared memory
    (``EpochDataset.set_epoch``), so re-iterating the same loader is enough.  The loader
    benchmark (``benchmarks/bench_loader.py``) measures this same loader.

    Args:
        dataset: an :class:`~comode.data.training_data.EpochDataset`.
        global_batch: clips per step over all ranks (this rank gets global_batch / world_size).
        workers: loader processes (0 = load in this process).
        seed: the run's seed (data order and worker seeds derive from it).
        rank, world_size: this process's place under DDP.
        collate_fn: how samples are stacked into a batch: :func:`collate` for
            :class:`~comode.data.dataset.PretrainDataset` samples; None = torch's default_collate.
        start_method: how worker processes start ("forkserver": see the module docstring).
        pin_memory: page-locked batches for fast host-to-GPU copies.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        global_batch: int,
        workers: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        collate_fn: Callable[[list[Any]], Any] | None = collate,
        start_method: str = "forkserver",
        pin_memory: bool = False,
    ) -> None:
        check_worker_count(workers, option="data.workers")
        self.dataset = dataset
        self.sampler = EpochBatchSampler(
            dataset_size=len(dataset), global_batch=global_batch, rank=rank, world_size=world_size, seed=seed, epoch=0
        )
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            persistent_workers=workers > 0,
            # Worker base seeds come from this generator, not from the global RNG, so creating
            # a loader neither consumes nor depends on the training process's random state.
            generator=torch.Generator().manual_seed(derive_seed(seed, STREAM_LOADER, rank)),
            **_worker_options(workers=workers, start_method=start_method),
        )

    def epoch(self, epoch: int, *, start: int = 0) -> DataLoader:
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start=start)
        return self.loader


def ignore_in_worker() -> None:
    """Called in each DataLoader worker: leave SIGTERM and Ctrl-C to the main process.

    Ctrl-C reaches every process of the terminal's process group, and a worker that died
    of it would break the step being finished.  The DataLoader shuts its workers down
    itself, and they exit if the main process dies."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _init_worker(worker_id: int) -> None:
    """Seed numpy / random from the worker's torch seed (DataLoader derives it from the
    loader's generator and the worker id), for any third-party code that uses them; the
    dataset itself draws only from its explicit (seed, epoch, index) generators.  And leave
    SIGTERM / Ctrl-C to the main process, which finishes its step and saves
    (:mod:`comode.train.stop`)."""
    ignore_in_worker()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _context(start_method: str) -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        # Import the heavy modules once in the server; every worker forks from it warm.
        context.set_forkserver_preload(["torch", "comode.data.dataset"])
    return context


def _worker_options(*, workers: int, start_method: str, prefetch_factor: int = 4) -> dict[str, Any]:
    """DataLoader keyword arguments for ``workers`` > 0 worker processes: the start method
    (see the module docstring), prefetch depth and worker seeding; none without workers."""
    if workers == 0:
        return {}
    return {
        "multiprocessing_context": _context(start_method),
        "prefetch_factor": prefetch_factor,
        "worker_init_fn": _init_worker,
    }
