"""Where a video group's encoded files go: a local folder (durably) or an object store.

The writer (:mod:`comode.store.writer`) encodes a group's files in memory and hands them to
a sink in three steps, the same for both kinds of store:

1. :meth:`~LocalSink.clear` the group: its ``zarr.json`` first (without it the folder is no
   group at all, so a reader never sees an old "complete" marker above missing arrays),
   then everything else;
2. :meth:`~LocalSink.put` the data files (and the group's "writing" ``zarr.json``);
3. :meth:`~LocalSink.put_marker`: the group's ``zarr.json`` saying "complete" (or "failed").

Durability (local folders).  A file system may put writes on disk in any order, so a power
cut could leave the marker on disk without the chunks it vouches for.  :class:`LocalSink`
therefore fsyncs, in this order: every data file (written to a temporary name, fsynced,
renamed into place), every directory whose entries changed (the renames and new folders),
and only then writes the marker the same way and fsyncs the group's folder.  After
:meth:`LocalSink.put_marker` returns, the group survives a power cut whole; before it, a
power cut leaves a group that is not "complete", which the next run redoes.  The cost per
video is in docs/performance.md, "Store reads and writes" (the argument in docs/store.md,
"Writing and durability"); ``COMODE_FSYNC=0`` turns it off (a scratch store on tmpfs).

Object stores (:class:`ObjectSink`, any fsspec filesystem, e.g. s3fs): a PUT that returned
is durable and atomic per object, and the marker is PUT only after every data PUT returned.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Mapping

from comode.store import layout
from comode.store.containment import remove_entry, writable_dir
from comode.store.location import filesystem, is_plain_local, join, local_path

__all__ = ["LocalSink", "ObjectSink", "sink_for", "fsync_enabled"]


def fsync_enabled() -> bool:
    """Whether local writes are fsynced (default); ``COMODE_FSYNC=0`` turns it off."""
    return os.environ.get("COMODE_FSYNC", "1") not in ("0", "false", "no")


def replace_atomically(target: str, body: bytes, *, sync: bool, partial: str | None = None) -> None:
    """``body`` to a temporary name (``partial``, default a random one beside ``target``),
    fsynced when ``sync``, then renamed over ``target``: readers see the old file or the
    new one, never a part (the name's durability is the caller's: :func:`fsync_dir`)."""
    partial = partial or f"{target}.{uuid.uuid4().hex}.partial"
    try:
        # A new file (O_EXCL, O_NOFOLLOW): never a link or a FIFO someone left under that name.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        with open(descriptor, "wb") as handle:
            handle.write(body)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise


def fsync_dir(directory: str) -> None:
    """Make the names in ``directory`` (renames, new entries) durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class LocalSink:
    """Video groups written as files below ``root`` (a local store's folder)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.sync = fsync_enabled()

    def clear(self, path: str) -> None:
        """Remove the group at ``path`` (relative to the store): marker first, durably.

        Nothing is followed (:mod:`comode.store.containment`): a link or a stray file where
        the group belongs is unlinked itself, and a link inside the group is removed, not
        what it points to."""
        parent, name = os.path.split(path)
        folder = os.path.join(writable_dir(self.root, parent), name)
        if not os.path.isdir(folder) or os.path.islink(folder):
            remove_entry(folder)
            return
        try:
            os.remove(os.path.join(folder, layout.ZARR_JSON))  # a link or a FIFO is unlinked, not opened
        except FileNotFoundError:
            pass
        else:  # the old marker's removal must reach the disk before its data's does
            self.sync_dir(folder)
        remove_entry(folder)

    def put(self, path: str, files: Mapping[str, bytes]) -> None:
        """Write ``files`` ({path relative to the group: bytes}) below the group at ``path``;
        each durably in place when this returns.  Every folder on the way is a real folder
        of the store (:func:`~comode.store.containment.writable_dir`), never a link."""
        folder = writable_dir(self.root, path)
        touched = {folder}
        for key in files:  # every folder from the group down to each file's own
            directory = os.path.dirname(key)
            while directory:
                touched.add(os.path.join(folder, directory))
                directory = os.path.dirname(directory)
        for directory in sorted(touched, key=len):  # parents first: each part is checked once made
            writable_dir(folder, os.path.relpath(directory, folder))
        # Files, then folders, each batch in parallel: concurrent fsyncs share the file
        # system's journal commits and the device's cache flushes (measured in
        # benchmarks/bench_store_writes.py: one by one they cost twice as much).
        _all(self._write, [(os.path.join(folder, key), body) for key, body in files.items()])
        _all(self.sync_dir, [(directory,) for directory in touched | {os.path.dirname(folder)}])

    def put_marker(self, path: str, body: bytes) -> None:
        """Write the group's ``zarr.json`` last (after :meth:`put` returned), durably."""
        folder = writable_dir(self.root, path)
        self._write(os.path.join(folder, layout.ZARR_JSON), body)
        self.sync_dir(folder)

    def _write(self, target: str, body: bytes) -> None:
        replace_atomically(target, body, sync=self.sync)

    def nbytes(self, path: str) -> int:
        """Bytes of the files of the group at ``path`` (what the index records per group)."""
        folder = os.path.join(self.root, path)
        return sum(os.path.getsize(os.path.join(d, name)) for d, _, names in os.walk(folder) for name in names)

    def sync_tree(self, folder: str) -> None:
        """fsync every file and directory below ``folder`` (deepest first), and ``folder``."""
        if not self.sync:
            return
        for directory, _, names in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
            for name in names:
                descriptor = os.open(os.path.join(directory, name), os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
            self.sync_dir(directory)

    def sync_dir(self, directory: str) -> None:
        if self.sync:
            fsync_dir(directory)


class ObjectSink:
    """Video groups written as objects through an fsspec filesystem (s3fs, ...)."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.fs, self.root = filesystem(url, storage_options)

    def clear(self, path: str) -> None:
        prefix = join(self.root, path)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(join(prefix, layout.ZARR_JSON))
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(prefix, recursive=True)
        self.fs.invalidate_cache(prefix)

    def put(self, path: str, files: Mapping[str, bytes]) -> None:
        prefix = join(self.root, path)
        # One call: s3fs sends the PUTs concurrently and returns when all are done.
        self.fs.pipe({join(prefix, key): body for key, body in files.items()})

    def put_marker(self, path: str, body: bytes) -> None:
        self.fs.pipe_file(join(self.root, path, layout.ZARR_JSON), body)

    def nbytes(self, path: str) -> int:
        prefix = join(self.root, path)
        self.fs.invalidate_cache(prefix)
        return int(self.fs.du(prefix))


# One pool per process for the parallel writes and fsyncs of every group, made on first use:
# a pool per group started up to 16 threads for every video, and a Dask worker thread once
# hung in Thread.start() creating them (a `make demo` extraction, 286 of 288 videos written;
# every thread waiting for the GIL).  A persistent pool starts its threads once.
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="comode-sink")
        return _POOL


def _forget_pool_after_fork() -> None:
    # A forked child has none of the parent's threads: it must start its own pool.
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _all(function, calls: list[tuple]) -> None:
    """``function(*args)`` for every ``args`` in ``calls``, up to 16 at a time (the process's
    sink pool; ``function`` must not call ``_all`` itself); the first error is raised after
    all calls ended."""
    if len(calls) <= 1:
        for args in calls:
            function(*args)
        return
    futures = [_pool().submit(function, *args) for args in calls]
    wait(futures)
    for future in futures:
        future.result()


def sink_for(url: str, storage_options: dict | None = None) -> LocalSink | ObjectSink:
    """A local folder's :class:`LocalSink`, else an fsspec :class:`ObjectSink`."""
    if is_plain_local(url, storage_options):
        return LocalSink(local_path(url))
    return ObjectSink(url, storage_options)
