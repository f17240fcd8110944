"""Read the index of a store: its snapshot, then each journal's lines past what the snapshot holds.

Cost: one listing of the index folder (sizes included), one read of ``snapshot.json``, and
one read per journal that grew since the snapshot was written (none on a store no
extraction wrote to since).  The order of what is read matters when writers are busy:
callers list ``videos/`` *before* reading the index (:func:`compare`), so that every group
folder they saw has its ``start`` line in what they read next.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from comode.store import layout
from comode.store.containment import UnsafeStoreEntry
from comode.store.index.files import LocalIndexFiles, ObjectIndexFiles, journal_writer
from comode.store.index.state import IndexState, Settlement, apply_all, parse_lines


class IndexDamaged(ValueError):
    """The index cannot be merged (a line that does not parse, a journal shorter than the
    snapshot says): readers list by reading the groups instead; ``reindex`` rebuilds it."""


@dataclass
class IndexRead:
    state: IndexState
    offsets: dict[str, int]  # journal name -> bytes of it merged into ``state``
    snapshot: bool  # a snapshot was found
    journals_read: int = 0  # journals read past the snapshot
    ignored: list[str] = field(default_factory=list)  # entries left out: their video id is unsafe

    def what_was_read(self) -> str:
        """ "snapshot + N journal(s) read", for notes and summaries."""
        return f"{'snapshot + ' if self.snapshot else ''}{self.journals_read} journal(s) read"


def read_index(files: LocalIndexFiles | ObjectIndexFiles, *, use_snapshot: bool = True) -> IndexRead | None:
    """The merged index, or None when the store has none (no snapshot, no journal).

    ``use_snapshot=False`` merges every journal from its first line (what ``reindex`` does)."""
    try:
        listed = files.list()
    except UnsafeStoreEntry as error:
        raise IndexDamaged(str(error)) from None
    journals = {name: size for name, size in listed.items() if journal_writer(name) is not None}
    doc = None
    if use_snapshot and layout.INDEX_SNAPSHOT in listed:
        try:
            raw = files.read(layout.INDEX_SNAPSHOT)
            doc = json.loads(raw) if raw is not None else None
        except UnsafeStoreEntry as error:
            raise IndexDamaged(str(error)) from None
        except ValueError as error:
            raise IndexDamaged(f"{layout.INDEX_SNAPSHOT} does not parse ({error})") from None
        if doc is not None and doc.get("index") != layout.INDEX_FORMAT:
            raise IndexDamaged(
                f"{layout.INDEX_SNAPSHOT} is {doc.get('index')!r}, not {layout.INDEX_FORMAT!r} (written by another comode?)"
            )
    if doc is None and not journals:
        return None
    ignored: list[str] = []
    try:
        state = IndexState.from_json(doc, ignored) if doc else IndexState()
    except (KeyError, TypeError, AttributeError) as error:
        raise IndexDamaged(
            f"{layout.INDEX_SNAPSHOT} is not an index snapshot ({type(error).__name__}: {error})"
        ) from None
    offsets = {name: int(size) for name, size in (doc or {}).get("journals", {}).items()}
    result = IndexRead(state=state, offsets=offsets, snapshot=doc is not None, ignored=ignored)
    for name, size in sorted(journals.items()):
        start = offsets.get(name, 0)
        if size < start:
            raise IndexDamaged(f"{name} holds {size} bytes, fewer than the {start} the snapshot merged")
        if size == start:
            continue
        try:
            data = files.read(name, start)
        except UnsafeStoreEntry as error:  # listed as a regular file a moment ago
            raise IndexDamaged(str(error)) from None
        if data is None:  # listed a moment ago: journals are never removed by comode
            raise IndexDamaged(f"{name} disappeared while it was read")
        try:
            entries, used = parse_lines(data)
            apply_all(state, entries, writer=journal_writer(name), ignored=ignored)
        except (ValueError, KeyError, TypeError) as error:
            raise IndexDamaged(
                f"{name}: a line that is not a journal entry ({type(error).__name__}: {error})"
            ) from None
        offsets[name] = start + used
        result.journals_read += 1
    return result


# More unknown folders than this (and than 1% of the store) are read by a full scan, not one by one.
READ_ONE_BY_ONE = 100


@dataclass(frozen=True)
class Comparison:
    """The index against a listing of ``videos/``."""

    unknown: frozenset[str]  # group folders the index does not know (made by hand, or before the index)
    missing: frozenset[str]  # settled videos of the index whose folder is gone (removed by hand)

    @property
    def stale(self) -> bool:
        return bool(self.unknown or self.missing)

    def too_stale(self, listed: int) -> bool:
        """Too many unknown folders (of ``listed`` ones) to read one by one: rebuild from a full scan."""
        return len(self.unknown) > max(READ_ONE_BY_ONE, listed // 100)

    def describe(self) -> str:
        parts = []
        if self.unknown:
            parts.append(f"{len(self.unknown)} group(s) not in it (e.g. {sorted(self.unknown)[0]})")
        if self.missing:
            parts.append(f"{len(self.missing)} indexed group(s) gone (e.g. {sorted(self.missing)[0]})")
        return ", ".join(parts)


def compare(settlement: Settlement, names: set[str]) -> Comparison:
    """Which folders of ``names`` (listed before the index was read) the index (its
    ``settlement``) does not know, and which settled videos it lists that are not in ``names``."""
    missing = frozenset(
        video
        for video, (settled, _, live) in settlement.of.items()
        if settled and live is not None and video not in names
    )
    return Comparison(unknown=frozenset(names - settlement.known()), missing=missing)
