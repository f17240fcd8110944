"""The writer's side of the index: one journal per process and store, lines appended.

:func:`journal_for` gives this process's :class:`Journal` of a store (made on first use; a
forked child gets its own).  The group writer (:mod:`comode.store.writer`) calls
:meth:`Journal.start` before it removes a group and :meth:`Journal.done` after the group's
marker is durable (the order is what makes the index safe, see
:mod:`comode.store.index.state`).

Hand-written rather than a library: the whole format is JSON lines appended to a file
that only this process writes; what matters is the order of the fsyncs (a ``start`` line
is on disk before the group it announces is touched), which is ours to get right.

- Local stores: one file per process (``O_APPEND``), each ``start`` fsynced before it
  returns (``done`` lines are not: losing one only leaves its video unsettled, which a
  reader resolves by reading that group).  A failed append (disk full) leaves at most a
  partial last line, which readers ignore; the next line goes to a new file.
- Object stores have no append: a journal is a series of segments of at most
  :data:`SEGMENT_LINES` lines, each PUT whole after every line (a PUT is atomic), so a
  line costs one PUT of at most ~64 KB.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any, Mapping

from comode.store.index.files import LocalIndexFiles, ObjectIndexFiles, index_files, journal_name
from comode.store.index.state import indexed
from comode.store.ownership import process_tag

# Lines per object-store segment: each line re-PUTs its segment (on average 128 lines of
# ~250 B: small beside the group it records), and readers fetch one object per 256 lines
# written since the last snapshot.
SEGMENT_LINES = 256


def new_write_id() -> str:
    """A fresh write id (the ``write_id`` attribute of the group this write makes)."""
    return uuid.uuid4().hex[:16]


class Journal:
    """This process's journal of one store."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.files = index_files(url, storage_options)
        self.pid = os.getpid()
        self.tag, self.nonce = process_tag(), uuid.uuid4().hex[:8]
        self._lock = threading.Lock()  # Dask workers with several threads share this journal
        self._seq = 0
        self._descriptor: int | None = None
        self._lines: list[bytes] = []  # object stores: the current segment

    def start(self, video: str, write: str, *, replaces: str | None) -> None:
        """Announce a write of ``video`` that will remove whatever group is there (write id
        ``replaces``); durable when this returns."""
        self._append({"op": "start", "video": video, "write": write, "replaces": replaces}, durable=True)

    def done(self, video: str, write: str, *, attrs: Mapping[str, Any], nbytes: int | None) -> None:
        """Record that ``video``'s group (write ``write``) is in place with ``attrs``."""
        self._append(
            {"op": "done", "video": video, "write": write, "attrs": indexed(attrs), "bytes": nbytes}, durable=False
        )

    def _append(self, entry: dict[str, Any], *, durable: bool) -> None:
        line = (json.dumps(entry, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        with self._lock:
            if isinstance(self.files, LocalIndexFiles):
                self._append_local(line, durable=durable)
            else:
                self._append_object(line)

    def _append_local(self, line: bytes, *, durable: bool) -> None:
        files: LocalIndexFiles = self.files  # type: ignore[assignment]
        if self._descriptor is None:
            self._descriptor = files.create_journal(journal_name(self.tag, self.nonce, self._seq))
        try:
            written = os.write(self._descriptor, line)
            if written != len(line):
                raise OSError(28, "No space left on device (journal line cut short)")
            if durable and files.sync:
                os.fsync(self._descriptor)
        except OSError:
            # A partial last line stays behind (readers ignore it); later lines go to a new file.
            os.close(self._descriptor)
            self._descriptor, self._seq = None, self._seq + 1
            raise

    def _append_object(self, line: bytes) -> None:
        files: ObjectIndexFiles = self.files  # type: ignore[assignment]
        if len(self._lines) >= SEGMENT_LINES:
            self._lines, self._seq = [], self._seq + 1
        files.ensure_group()
        body = b"".join(self._lines) + line
        files.put_journal(journal_name(self.tag, self.nonce, self._seq), body)  # raises: the line is not kept
        self._lines.append(line)


_journals: dict[tuple[str, str], Journal] = {}
_journals_lock = threading.Lock()


def journal_for(url: str, storage_options: dict | None = None) -> Journal:
    """This process's journal of the store at ``url`` (a new one after a fork)."""
    key = (url, json.dumps(storage_options, sort_keys=True, default=str))
    with _journals_lock:
        journal = _journals.get(key)
        if journal is None or journal.pid != os.getpid():
            journal = _journals[key] = Journal(url, storage_options)
        return journal
