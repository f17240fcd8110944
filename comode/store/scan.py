"""List a store's videos the slow way: read every video group's metadata.

What the index (:mod:`comode.store.index`) saves readers from: O(videos) reads.  Still what
``store validate`` and ``store reindex`` do (they must look at every group), and what a
reader falls back to when a store has no index or a damaged one.
"""

from __future__ import annotations

import warnings
from typing import Any

import zarr

from comode.store import layout
from comode.store.location import filesystem, group_url

_NOT_A_GROUP = "an array where a video group is expected"


def scan_video_groups(
    videos: zarr.Group, storage_options: dict | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(attributes by video id, reason by id) of the members of a store's ``videos`` group
    (``storage_options``: the fsspec options it was opened with).

    A member that is not a readable group (a damaged ``zarr.json``, an array) gets a reason
    instead of failing the whole listing: readers skip it, ``store validate`` reports it,
    extraction redoes it."""
    try:  # zarr reads all members' metadata concurrently: fast, but one damaged file fails it all
        with warnings.catch_warnings():
            # A folder without zarr.json is a group zarr is creating right now (it makes the
            # folder before the metadata) or a redo that was killed (extraction redoes it):
            # not a video yet, and nothing a reader of the store should be warned about.
            warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
            members = list(videos.members())
    except Exception:  # noqa: BLE001 -- then read member by member to find the damage
        return _scan_one_by_one(videos, storage_options)
    found = {name: node.attrs.asdict() for name, node in members if isinstance(node, zarr.Group)}
    return found, {name: _NOT_A_GROUP for name, node in members if not isinstance(node, zarr.Group)}


def _scan_one_by_one(
    videos: zarr.Group, storage_options: dict | None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    fs, path = filesystem(group_url(videos), storage_options)
    found: dict[str, dict[str, Any]] = {}
    unreadable: dict[str, str] = {}
    for name in sorted({entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False)}):
        if name == layout.ZARR_JSON or name.endswith(".partial"):
            continue  # the videos group's own metadata; a temporary file of an interrupted write
        try:
            node = videos[name]
            if not isinstance(node, zarr.Group):
                unreadable[name] = _NOT_A_GROUP
                continue
            found[name] = node.attrs.asdict()
        except Exception as error:  # noqa: BLE001 -- any damage is reported, not raised
            unreadable[name] = f"unreadable group metadata (zarr.json): {type(error).__name__}: {error}"
    return found, unreadable
