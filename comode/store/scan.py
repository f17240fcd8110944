"""List a store's videos the slow way: read every video group's metadata.

What the index (:mod:`comode.store.index`) saves readers from: O(videos) reads.  Still what
``store validate`` and ``store reindex`` do (they must look at every group), and what a
reader falls back to when a store has no index or a damaged one.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import zarr

from comode.store import layout
from comode.store.containment import read_problem
from comode.store.location import filesystem, group_url, is_plain_local, local_path

_NOT_A_GROUP = "an array where a video group is expected"


def scan_video_groups(
    videos: zarr.Group, storage_options: dict | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(attributes by video id, reason by id) of the members of a store's ``videos`` group
    (``storage_options``: the fsspec options it was opened with).

    A member that is not a readable group (a damaged ``zarr.json``, an array) gets a reason
    instead of failing the whole listing: readers skip it, ``store validate`` reports it,
    extraction redoes it.  In a local store, a member whose folder or ``zarr.json`` zarr
    must not read (a link leading outside the store, a FIFO: :mod:`comode.store.containment`)
    gets a reason before zarr opens anything."""
    refused = _refused_members(videos, storage_options)
    if refused:
        return _scan_one_by_one(videos, storage_options, refused)
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


def _refused_members(videos: zarr.Group, storage_options: dict | None) -> dict[str, str]:
    """Reason by name for the members of a local ``videos`` folder that must not be read."""
    url = group_url(videos)
    if not is_plain_local(url, storage_options):
        return {}
    folder = local_path(url)
    root = os.path.dirname(folder)
    refused = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            path = os.path.join(folder, entry.name)
            problem = read_problem(root, path, folder=True) if entry.is_symlink() else None
            if problem is None and entry.is_dir():
                problem = read_problem(root, os.path.join(path, layout.ZARR_JSON))
                problem = problem and f"{layout.ZARR_JSON} is {problem}"
            elif problem is None and not entry.is_file():
                problem = read_problem(root, path)
            if problem is not None:
                refused[entry.name] = f"refused: {problem}"
    return refused


def _scan_one_by_one(
    videos: zarr.Group, storage_options: dict | None, refused: dict[str, str] | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    fs, path = filesystem(group_url(videos), storage_options)
    found: dict[str, dict[str, Any]] = {}
    unreadable: dict[str, str] = dict(refused or {})
    for name in sorted({entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False)}):
        if name == layout.ZARR_JSON or name.endswith(".partial") or name in unreadable:
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
