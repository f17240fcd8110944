"""The index's state: what every journal line and the snapshot say, merged (pure, no I/O).

Every write of a video group has a **write id** (``write_id``, a group attribute, new for
each write).  Journals say two things about a write:

- ``start``: the writer is about to remove the group and write it anew; ``replaces`` is the
  write id of the group it found there (which therefore stops counting);
- ``done``: the write's marker (``complete`` or ``failed``) is durably in place; the line
  carries the group's indexed attributes.

Merging is a set union keyed by (video, write id), so journals can be read in any order,
from any number of writers, and read again: the same lines give the same state.  A write
is **live** once done and not replaced; **pending** once started and not done.  A video is
**settled** when it has no pending write and at most one live write: then the index says
what its group says.  Otherwise (a writer is busy with it, was killed during its write, or
two runs wrote it at once) it is **unsettled**, and readers read that one group instead.

Why this is safe against kills and concurrent runs: a write becomes live only after its
marker is durable, and stops being live (``replaces``, in a ``start`` that is durable
before the group is touched) before any of its files go.  A writer that removes a group it
did not know about (two runs writing one video at once) has a pending start for it, so the
video is unsettled, never wrongly settled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from comode.store import layout
from comode.store.containment import is_safe_video_id

# Index-only statuses of groups seen by reading them (never written by a writer):
# a group folder whose zarr.json does not parse, and a folder without zarr.json.
STATUS_UNREADABLE = "unreadable"
# Write ids of groups that carry none: written before the index existed (or by hand), a
# group whose zarr.json does not parse, a folder without zarr.json.
LEGACY_WRITE, UNREADABLE_WRITE, EMPTY_WRITE = "legacy", "unreadable", "empty"


def indexed(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The indexed subset of a group's attributes."""
    return {key: attrs[key] for key in layout.INDEXED_ATTRS if key in attrs}


@dataclass(frozen=True)
class Marker:
    """What a video group's ``zarr.json`` says: its write id and indexed attributes."""

    write: str
    attrs: dict[str, Any]

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "Marker":
        return cls(str(attrs.get(layout.WRITE_ID) or LEGACY_WRITE), indexed(attrs))

    @classmethod
    def unreadable(cls, reason: str) -> "Marker":
        return cls(UNREADABLE_WRITE, {layout.ATTR_STATUS: STATUS_UNREADABLE, layout.ATTR_ERROR: reason})

    @classmethod
    def empty(cls) -> "Marker":
        """A group folder without ``zarr.json``: a write under way, or one a kill cut short."""
        return cls(EMPTY_WRITE, {layout.ATTR_STATUS: layout.STATUS_WRITING})


def scan_markers(
    found: Mapping[str, Mapping[str, Any]], unreadable: Mapping[str, str], names: Iterable[str]
) -> dict[str, Marker]:
    """What each group says by a full scan: ``found`` (attributes by id), ``unreadable``
    (reason by id), and the folders of ``names`` in neither (no ``zarr.json``)."""
    markers = {video: Marker.from_attrs(attrs) for video, attrs in found.items()}
    markers.update({video: Marker.unreadable(reason) for video, reason in unreadable.items()})
    markers.update({video: Marker.empty() for video in set(names) - set(markers)})
    return markers


@dataclass
class Write:
    """One write of one video group, as far as the journals tell."""

    writer: str | None = None  # the journal that started it; None once it ended or was abandoned
    attrs: dict[str, Any] | None = None  # set when done: the indexed attributes (status included)
    nbytes: int | None = None  # bytes of the group's files, when the writer said
    replaced: bool = False  # a later write (or a reading of the group) superseded it

    @property
    def live(self) -> bool:
        return self.attrs is not None and not self.replaced

    @property
    def pending(self) -> bool:
        return self.writer is not None and self.attrs is None

    def to_json(self) -> dict[str, Any]:
        return {
            key: value
            for key, value in (
                ("writer", self.writer),
                ("attrs", self.attrs),
                ("bytes", self.nbytes),
                ("replaced", self.replaced or None),
            )
            if value is not None
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "Write":
        return cls(
            writer=doc.get("writer"),
            attrs=doc.get("attrs"),
            nbytes=doc.get("bytes"),
            replaced=bool(doc.get("replaced", False)),
        )


@dataclass
class IndexState:
    """Video id -> write id -> :class:`Write`: the merge of a snapshot and journal lines."""

    videos: dict[str, dict[str, Write]] = field(default_factory=dict)

    def apply(self, entry: Mapping[str, Any], *, writer: str) -> None:
        """One journal line (already parsed) of the journal of ``writer``."""
        op, video, token = entry["op"], entry["video"], entry["write"]
        writes = self.videos.setdefault(video, {})
        if op == "start":
            write = writes.setdefault(token, Write())
            if write.attrs is None:
                write.writer = writer
            replaced = entry.get("replaces")
            if replaced and replaced != token:
                writes.setdefault(replaced, Write()).replaced = True
        elif op == "done":
            write = writes.setdefault(token, Write())
            write.attrs, write.nbytes, write.writer = dict(entry["attrs"]), entry.get("bytes"), None
        else:
            raise ValueError(f"unknown journal operation {op!r}")
        _forget_finished(writes)

    def settled(self, video: str) -> tuple[bool, str | None, Write | None]:
        """(settled?, write id and write of its live write, or None) of ``video``."""
        writes = self.videos.get(video, {})
        if len(writes) == 1:  # most videos of a store: the general case below, quicker
            ((token, write),) = writes.items()
            if write.pending:
                return False, None, None
            return (True, token, write) if write.live else (True, None, None)
        live = [(token, write) for token, write in writes.items() if write.live]
        if any(write.pending for write in writes.values()) or len(live) > 1:
            return False, None, None
        return (True, *live[0]) if live else (True, None, None)

    def unsettled(self) -> list[str]:
        return Settlement(self).unsettled()

    def knows(self, video: str) -> bool:
        """Whether a group folder of ``video`` may exist by what the journals say (a live or
        pending write); a folder of a video it does not know was made by other means."""
        return any(write.live or write.pending for write in self.videos.get(video, {}).values())

    def settle(self, video: str, marker: Marker | None, *, writer_gone: Callable[[str], bool]) -> None:
        """Make ``video``'s state agree with its group as read now (``marker``; None: no folder).

        Pending writes of writers that are gone (``writer_gone(writer)``: dead processes of
        this host) are ended: done if the group carries their write id, else abandoned.
        If no pending write is left, nobody can change the group without a new ``start``,
        so the group's write becomes the one live write.  With a pending write left, the
        video stays unsettled (its writer may still be removing the group)."""
        writes = self.videos.setdefault(video, {})
        for token, write in writes.items():
            if write.pending and writer_gone(write.writer):
                write.writer = None
                if marker is not None and marker.write == token:
                    write.attrs = dict(marker.attrs)
                else:
                    write.replaced = True
        if not any(write.pending for write in writes.values()):
            current = writes.get(marker.write) if marker is not None else None
            nbytes = current.nbytes if current is not None and current.attrs is not None else None
            writes.clear()  # every other write is over: the group's is the one that counts
            if marker is not None:
                writes[marker.write] = Write(attrs=dict(marker.attrs), nbytes=nbytes)
        _forget_finished(writes)
        if not writes:
            del self.videos[video]

    # ------------------------------------------------------------------ snapshot form

    def to_json(self) -> dict[str, Any]:
        """``videos`` (settled videos with their one live write: what a reader lists) and
        ``writes`` (every other write record: pending, replaced before done, ...)."""
        settled_docs: dict[str, Any] = {}
        others: dict[str, Any] = {}
        for video in sorted(self.videos):
            writes = self.videos[video]
            is_settled, token, live = self.settled(video)
            rest = {t: write for t, write in writes.items() if not (is_settled and write is live)}
            if is_settled and live is not None:
                settled_docs[video] = {
                    "write": token,
                    "attrs": live.attrs,
                    **({"bytes": live.nbytes} if live.nbytes is not None else {}),
                }
            if rest:
                others[video] = {token: write.to_json() for token, write in rest.items()}
        return {"videos": settled_docs, "writes": others}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], ignored: list[str] | None = None) -> "IndexState":
        """The state a snapshot holds; videos whose id is unsafe are left out and said in
        ``ignored`` (one line each)."""
        state = cls()
        for video, entry in doc.get("videos", {}).items():
            if _unsafe(video, ignored, "snapshot"):
                continue
            state.videos[video] = {entry["write"]: Write(attrs=entry["attrs"], nbytes=entry.get("bytes"))}
        for video, writes in doc.get("writes", {}).items():
            if _unsafe(video, ignored, "snapshot"):
                continue
            state.videos.setdefault(video, {}).update({token: Write.from_json(w) for token, w in writes.items()})
        return state


class Settlement:
    """:meth:`IndexState.settled` of every video of a state, worked out once: what opening a
    store asks of one state several times (:func:`~comode.store.index.read.compare`, the
    unsettled videos, :func:`~comode.store.index.listing.assemble`).  Stale once the state
    changes (``apply``, ``settle``): make a new one then."""

    def __init__(self, state: IndexState) -> None:
        self.of: dict[str, tuple[bool, str | None, Write | None]] = {
            video: state.settled(video) for video in state.videos
        }

    def settled(self, video: str) -> tuple[bool, str | None, Write | None]:
        return self.of.get(video, (True, None, None))

    def unsettled(self) -> list[str]:
        return sorted(video for video, (settled, _, _) in self.of.items() if not settled)

    def known(self) -> set[str]:
        """The videos :meth:`IndexState.knows`: a live or pending write (unsettled: a pending
        write or several live ones; settled: its one live write)."""
        return {video for video, (settled, _, live) in self.of.items() if not settled or live is not None}


def _forget_finished(writes: dict[str, Write]) -> None:
    """Drop writes that can change nothing any more: done and replaced."""
    for token in [token for token, write in writes.items() if write.attrs is not None and write.replaced]:
        del writes[token]


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """(entries, bytes consumed) of journal bytes: whole lines only.  A last line without its
    newline is a write a kill cut short: not consumed, left for later (or for ever)."""
    end = data.rfind(b"\n") + 1
    entries = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return entries, end


def apply_all(
    state: IndexState, entries: Iterable[Mapping[str, Any]], *, writer: str, ignored: list[str] | None = None
) -> None:
    """Apply journal ``entries`` of ``writer``'s journal; a line whose video id could not name a
    group (``123``, ``../../x``, a NUL) is left out and said in ``ignored``: one hostile or
    damaged line must not stop every reader of the store, nor lead one outside it."""
    for entry in entries:
        if isinstance(entry, Mapping) and _unsafe(entry.get("video"), ignored, f"journal of {writer}"):
            continue
        state.apply(entry, writer=writer)


def _unsafe(video: object, ignored: list[str] | None, where: str) -> bool:
    if is_safe_video_id(video):
        return False
    if ignored is not None:
        ignored.append(f"{where}: video id {video!r} cannot name a group")
    return True
