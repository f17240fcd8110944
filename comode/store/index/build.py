"""Write the index's snapshot: :func:`consolidate` (from the journals) and :func:`reindex` (from the groups).

Any snapshot is a cache of what the journals said up to the offsets it records, plus what
the groups it read said; readers apply the journal lines past those offsets on top.  So two
processes may consolidate at once (the last rename or PUT wins, and either snapshot is
right), and nothing is ever removed from a journal.

- :func:`consolidate` (extraction runs do it when they start, every few minutes, and at the
  end): merge the old snapshot and the journals' new lines; read the groups of unsettled
  videos and settle those no live writer can still change (writers that are dead processes
  of this host; two finished writes of one video); read folders the index does not know.
- :func:`reindex` (``comode store reindex``): read every group, keep only what the journals
  say about writes still under way.  For stores assembled, copied or edited by hand.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from comode.store import layout
from comode.store.claims import remove_abandoned_claims
from comode.store.index.files import LocalIndexFiles, ObjectIndexFiles, index_files, partial_writer
from comode.store.index.listing import Listing, Scan, assemble
from comode.store.index.read import IndexDamaged, compare, read_index
from comode.store.index.state import IndexState, Marker, Settlement, scan_markers
from comode.store.ownership import made_by_dead_local_process, process_tag
from comode.version import __version__

logger = logging.getLogger("comode.store.index")


@dataclass(frozen=True)
class IndexSummary:
    """What a consolidation or a reindex wrote."""

    source: str  # "journals" or "scan"
    videos: int  # videos the snapshot lists (settled, with a group)
    unsettled: int  # videos left for readers to read (writes under way)
    groups_read: int  # groups read to settle videos or find unknown folders
    journals: int  # journals the snapshot covers
    listing: Listing  # the videos as a reader would list them now


def consolidate(url: str, *, scan: Scan, storage_options: dict | None = None) -> IndexSummary:
    """Merge the journals into a new snapshot (falls back to :func:`reindex` when the index is
    missing, damaged or misses many groups)."""
    files = index_files(url, storage_options)
    names = files.video_names() or set()
    try:
        read = read_index(files)
    except IndexDamaged as error:
        logger.warning("%s: the index is damaged (%s): rebuilding it from the groups", url, error)
        return reindex(url, scan=scan, storage_options=storage_options)
    if read is None:
        if names:
            logger.info("%s: no index yet: building one from the groups (%d)", url, len(names))
            return reindex(url, scan=scan, storage_options=storage_options)
        return IndexSummary("journals", 0, 0, 0, 0, Listing({}, {}, "index", "no videos yet"))
    settlement = Settlement(read.state)  # until the settle() below
    comparison = compare(settlement, names)
    if comparison.too_stale(len(names)):
        logger.warning("%s: the index is stale (%s): rebuilding it from the groups", url, comparison.describe())
        return reindex(url, scan=scan, storage_options=storage_options)
    if comparison.stale:
        logger.warning("%s: the index was stale (%s): those groups were read into it", url, comparison.describe())
    to_read = set(settlement.unsettled()) | comparison.unknown | comparison.missing
    markers = files.read_markers(sorted(to_read))
    for video in sorted(to_read):
        read.state.settle(video, markers.get(video), writer_gone=made_by_dead_local_process)
    try:
        if not read.snapshot or read.journals_read or to_read:  # a run with nothing to do writes nothing
            _write_snapshot(files, read.state, read.offsets, source="journals")
    except OSError as error:  # a cache: without it readers merge more journal lines, nothing is lost
        logger.warning("%s: could not write the index snapshot (%s); readers merge the journals instead", url, error)
    _remove_leftovers(files)
    return _summary(read.state, markers, source="journals", journals=len(read.offsets))


def reindex(url: str, *, scan: Scan, storage_options: dict | None = None) -> IndexSummary:
    """Rebuild the snapshot from every group (``scan``) and the journals' writes under way."""
    files = index_files(url, storage_options)
    names = files.video_names() or set()  # before the journals, as readers do
    try:
        read = read_index(files, use_snapshot=False)
    except IndexDamaged as error:
        logger.warning("%s: journals that do not parse are left out of the new index (%s)", url, error)
        read = None
    state = read.state if read is not None else IndexState()
    offsets = read.offsets if read is not None else {}
    found, unreadable = scan()
    markers: dict[str, Marker | None] = dict(scan_markers(found, unreadable, names))
    sizes = _group_sizes(files, markers)
    for video in sorted(set(state.videos) | set(markers)):
        state.settle(video, markers.get(video), writer_gone=made_by_dead_local_process)
        write = state.videos.get(video, {}).get(markers[video].write) if markers.get(video) else None
        if write is not None and write.nbytes is None:
            write.nbytes = sizes.get(video)
    _write_snapshot(files, state, offsets, source="scan")
    _remove_leftovers(files)
    return _summary(state, markers, source="scan", journals=len(offsets))


def _summary(state: IndexState, markers: dict[str, Marker | None], *, source: str, journals: int) -> IndexSummary:
    """What was written, with the listing of ``state`` (its unsettled videos as ``markers`` read them)."""
    settlement = Settlement(state)
    unsettled = settlement.unsettled()
    videos, unreadable, nbytes = assemble(settlement, {video: markers.get(video) for video in unsettled})
    listing = Listing(
        videos=videos,
        unreadable=unreadable,
        source="index",
        nbytes=nbytes,
        note=f"index (written now from the {source})",
    )
    listed = sum(1 for _, _, live in settlement.of.values() if live is not None)
    return IndexSummary(source, listed, len(unsettled), len(markers), journals, listing)


def _write_snapshot(
    files: LocalIndexFiles | ObjectIndexFiles, state: IndexState, offsets: dict[str, int], *, source: str
) -> None:
    doc = {
        "index": layout.INDEX_FORMAT,
        "made_by": f"comode {__version__} ({process_tag()})",
        "made_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "journals": dict(sorted(offsets.items())),
        **state.to_json(),
    }
    files.write_atomic(layout.INDEX_SNAPSHOT, json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())


def _remove_leftovers(files: LocalIndexFiles | ObjectIndexFiles) -> None:
    """Temporary files of snapshot writes and claims whose process died (a SIGKILL mid-write)."""
    leftovers = [
        name for name, tag in ((n, partial_writer(n)) for n in files.list()) if tag and made_by_dead_local_process(tag)
    ]
    files.remove_leftovers(leftovers)
    remove_abandoned_claims(files)


def _group_sizes(files: LocalIndexFiles | ObjectIndexFiles, markers: dict[str, Marker | None]) -> dict[str, int]:
    """Bytes of each group's files (local stores; object stores: unknown, {})."""
    if not isinstance(files, LocalIndexFiles):
        return {}
    sizes = {}
    for video, marker in markers.items():
        if marker is None or marker.attrs.get(layout.ATTR_STATUS) != layout.STATUS_COMPLETE:
            continue
        total = 0
        for folder, _, names in os.walk(os.path.join(files.root, layout.VIDEOS_GROUP, video)):
            total += sum(os.stat(os.path.join(folder, name)).st_size for name in names)
        sizes[video] = total
    return sizes
