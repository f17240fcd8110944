"""A store's list of videos for readers: from the index, checked against ``videos/``.

:func:`list_videos` lists ``videos/`` (names only), reads the index, reads the few groups
the index cannot vouch for (unsettled videos: a write under way or cut short; folders it
does not know) and leaves out indexed videos whose folder is gone.  A stale index (folders
it does not know, or gone) is said in a log warning.  It falls back to reading every group
(:mod:`comode.store.scan`), and says so, when the store has no index, when the index does
not parse, or when it misses many groups (a store assembled by hand).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from comode.store import layout
from comode.store.index.files import index_files
from comode.store.index.read import IndexDamaged, compare, read_index
from comode.store.index.state import EMPTY_WRITE, STATUS_UNREADABLE, Marker, Settlement

logger = logging.getLogger("comode.store.index")

Scan = Callable[[], tuple[dict[str, dict[str, Any]], dict[str, str]]]


@dataclass(frozen=True)
class Listing:
    """The videos of a store as a reader sees them.

    videos: attributes by video id, every status ("complete", "failed", "writing"); from the
        index these are the indexed attributes (``INDEXED_ATTRS``), from a scan all of them.
    unreadable: reason by id, for groups whose metadata cannot be read.
    source: "index" or "scan".
    note: how it was made, for people (``store info``, logs).
    """

    videos: dict[str, dict[str, Any]]
    unreadable: dict[str, str]
    source: str
    note: str = ""
    nbytes: int | None = None  # bytes of all indexed groups' files, when every writer said


# (url, reason) pairs already warned about in this process: a run opens its store many
# times (every evaluation, every ablation cell), and one warning per reason is enough.
_WARNED: set[tuple[str, str]] = set()


def scan_listing(scan: Scan, why: str, url: str) -> Listing:
    if (url, why) not in _WARNED:
        _WARNED.add((url, why))
        logger.warning(
            "%s: %s; listing the videos by reading every group's metadata (slow for large stores: "
            "`comode store reindex %s` writes a new index)",
            url,
            why,
            url,
        )
    found, unreadable = scan()
    return Listing(videos=found, unreadable=unreadable, source="scan", note=why)


def list_videos(url: str, *, scan: Scan, storage_options: dict | None = None) -> Listing:
    """The videos of the store at ``url`` (``scan``: the full scan to fall back on)."""
    files = index_files(url, storage_options)
    names = files.video_names()  # BEFORE the index: see comode.store.index.read
    try:
        read = read_index(files)
    except IndexDamaged as error:
        return scan_listing(scan, f"its index is damaged ({error})", url)
    if read is None:
        if not names:
            return Listing(videos={}, unreadable={}, source="index", note="no videos yet")
        return scan_listing(scan, "it has no index (written before comode kept one, or copied without it)", url)
    names = names or set()
    if read.ignored and (url, "ignored") not in _WARNED:
        _WARNED.add((url, "ignored"))
        logger.warning(
            "%s: %d index entr(y/ies) left out, e.g. %s (a store from elsewhere? `comode store validate %s` "
            "lists them, `comode store reindex %s` writes an index without them)",
            url,
            len(read.ignored),
            read.ignored[0],
            url,
            url,
        )
    settlement = Settlement(read.state)
    comparison = compare(settlement, names)
    if comparison.too_stale(len(names)):
        return scan_listing(scan, f"its index is stale: {comparison.describe()}", url)
    if comparison.stale:
        logger.warning(
            "%s: the index is stale: %s; those groups are read one by one (`comode store reindex %s` "
            "brings the index up to date)",
            url,
            comparison.describe(),
            url,
        )
    markers = files.read_markers(sorted(set(settlement.unsettled()) | comparison.unknown))
    listing = assemble(settlement, markers, gone=comparison.missing)
    note = f"index ({read.what_was_read()}" + (f", {len(markers)} group(s) read" if markers else "") + ")"
    return Listing(videos=listing[0], unreadable=listing[1], source="index", note=note, nbytes=listing[2])


def assemble(
    settlement: Settlement, markers: dict[str, Marker | None], *, gone: frozenset[str] = frozenset()
) -> tuple[dict[str, dict[str, Any]], dict[str, str], int | None]:
    """(attributes by id, unreadable reason by id, total bytes or None) of the index state of
    ``settlement``, where the groups in ``markers`` (read just now) say what they hold and
    ``gone`` ones are left out."""
    from_index = (
        (video, token, live.attrs, live.nbytes)
        for video, (_, token, live) in settlement.of.items()
        if live is not None and video not in markers
    )
    from_groups = ((video, marker.write, marker.attrs, None) for video, marker in markers.items() if marker is not None)
    videos: dict[str, dict[str, Any]] = {}
    unreadable: dict[str, str] = {}
    nbytes: int | None = 0
    for source in (from_index, from_groups):
        for video, token, attrs, size in source:
            if token == EMPTY_WRITE or video in gone:
                continue  # a folder without metadata (not a video yet), or a group removed by hand
            if attrs.get(layout.ATTR_STATUS) == STATUS_UNREADABLE:
                unreadable[video] = attrs.get(layout.ATTR_ERROR, "unreadable group metadata")
                continue
            videos[video] = attrs
            nbytes = None if nbytes is None or size is None else nbytes + size
    return videos, unreadable, nbytes
