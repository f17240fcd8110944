"""Small JSON documents in a store's root folder beside ``zarr.json`` (such as
:data:`~comode.store.layout.DATASET_REPORT`): written whole and atomically, read whole.

Zarr ignores files it does not know, so they change nothing for any Zarr reader; they hold
what is too long for the root's attributes (every attribute read would carry it).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from typing import Any, Mapping

from comode.store.location import filesystem, is_plain_local, join, local_path
from comode.store.sinks import fsync_dir, fsync_enabled, replace_atomically

__all__ = ["write_root_file", "read_root_file"]


def write_root_file(url: str, name: str, document: Mapping[str, Any], storage_options: dict | None = None) -> None:
    """Write ``document`` as JSON to ``<store>/<name>``, replacing it whole (a reader sees the
    old one or the new one); not when the file already says the same (a run with nothing to
    do writes nothing)."""
    if read_root_file(url, name, storage_options) == json.loads(json.dumps(document)):
        return
    body = (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()
    if is_plain_local(url, storage_options):
        folder = local_path(url)
        for leftover in glob.glob(os.path.join(glob.escape(folder), f"{glob.escape(name)}.*.partial")):
            with contextlib.suppress(OSError):  # of a write a kill cut short
                os.remove(leftover)
        replace_atomically(os.path.join(folder, name), body, sync=fsync_enabled())
        if fsync_enabled():
            fsync_dir(folder)
        return
    fs, root = filesystem(url, storage_options)
    fs.pipe_file(join(root, name), body)


def read_root_file(url: str, name: str, storage_options: dict | None = None) -> dict[str, Any] | None:
    """The document at ``<store>/<name>``, or None if there is none or it does not parse."""
    try:
        if is_plain_local(url, storage_options):
            with open(os.path.join(local_path(url), name), "rb") as handle:
                body = handle.read()
        else:
            fs, root = filesystem(url, storage_options)
            body = fs.cat_file(join(root, name))
        document = json.loads(body)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None
