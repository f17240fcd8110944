"""The store index: the list of a store's videos, readable in O(1) requests whatever its size.

Derived data, kept beside ``videos/`` in ``index/`` (format: ``schemas/README.md``,
"Index"; design: ``docs/store.md``, "The index"; measurements: ``docs/performance.md``):

- every writer process appends to its own journal: a ``start`` line before it touches a
  video group (durable first), a ``done`` line after the group's marker is durable
  (:mod:`~comode.store.index.journal`);
- a snapshot merges the journals up to recorded offsets (:mod:`~comode.store.index.build`);
- readers merge the snapshot with the journals' newer lines, read the few groups the index
  cannot vouch for, compare it with a listing of ``videos/`` and fall back to reading every
  group (with a warning) when it is missing, damaged or far out of date
  (:mod:`~comode.store.index.listing`);
- the merge rules (:mod:`~comode.store.index.state`) make it safe against a kill at any
  moment and against several writers (processes, hosts, runs) at once.
"""

from comode.store.index.build import IndexSummary, consolidate, reindex
from comode.store.index.journal import Journal, journal_for, new_write_id
from comode.store.index.listing import Listing, list_videos
from comode.store.index.read import IndexDamaged, read_index
from comode.store.index.state import IndexState, Marker

__all__ = [
    "IndexDamaged",
    "IndexState",
    "IndexSummary",
    "Journal",
    "Listing",
    "Marker",
    "consolidate",
    "journal_for",
    "list_videos",
    "new_write_id",
    "read_index",
    "reindex",
]
