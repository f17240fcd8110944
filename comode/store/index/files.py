"""Where the index lives in a store, and the few file operations it needs (local or object store).

    store.zarr/index/zarr.json                       a Zarr group (so Zarr readers list it as one)
    store.zarr/index/snapshot.json                   the merged state, and how much of each journal it holds
    store.zarr/index/journal-<writer>-<seq>.jsonl    one writer's lines, appended (object stores: rewritten whole)
    store.zarr/index/claims/<video_id>.json          who is writing that video's group now (comode.store.claims)

Local stores use plain ``os`` calls (appends and fsyncs: what makes a journal line durable
before the group it announces is touched); object stores use fsspec (a PUT is atomic and
durable when it returns; there is no append, so a journal is a series of small segments
each rewritten whole).  Every operation here is O(1) requests except :meth:`video_names`
(one directory read locally, one LIST per 1,000 videos on S3).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from typing import Iterable

from comode.store import layout
from comode.store.containment import (
    UnsafeStoreEntry,
    check_video_id,
    is_safe_video_id,
    read_inside,
    read_problem,
    writable_dir,
)
from comode.store.index.state import Marker
from comode.store.location import filesystem, is_plain_local, join, local_path
from comode.store.ownership import process_tag
from comode.store.sinks import fsync_dir, fsync_enabled, replace_atomically
from comode.store.zarr_files import group_metadata

_JOURNAL = re.compile(r"^journal-(?P<tag>.+)-(?P<nonce>[0-9a-f]{8})-(?P<seq>\d{6})\.jsonl$")
GROUP_METADATA = group_metadata(
    {
        "index": layout.INDEX_FORMAT,
        "about": "the video listing of this store, derived from videos/ (schemas/README.md, 'Index')",
    }
)


def journal_name(tag: str, nonce: str, seq: int) -> str:
    return f"journal-{tag}-{nonce}-{seq:06d}.jsonl"


def journal_writer(name: str) -> str | None:
    """The ``<host>_<pid>`` tag of the process that writes journal ``name`` (None: not a journal)."""
    match = _JOURNAL.match(name)
    return match["tag"] if match else None


def _is_group_name(name: str) -> bool:
    """Whether an entry of ``videos/`` can be a video group: a safe id (not ``.DS_Store`` or
    another stray or hidden name), neither the folder's metadata nor a temporary file."""
    return is_safe_video_id(name) and name != layout.ZARR_JSON and not name.endswith(".partial")


class LocalIndexFiles:
    """The index of a store in a local folder."""

    def __init__(self, url: str) -> None:
        self.root = local_path(url)
        self.folder = os.path.join(self.root, layout.INDEX_GROUP)
        self.sync = fsync_enabled()

    def video_names(self) -> set[str] | None:
        """Names under ``videos/`` (None: no such folder)."""
        try:
            with os.scandir(os.path.join(self.root, layout.VIDEOS_GROUP)) as entries:
                # Folders only (a link to one too: read_markers then says where it leads).
                return {entry.name for entry in entries if _is_group_name(entry.name) and entry.is_dir()}
        except FileNotFoundError:
            return None

    def list(self) -> dict[str, int]:
        """File name -> size of every regular file in the index folder ({} when there is none;
        links and FIFOs are no index files); UnsafeStoreEntry when the folder leads outside
        the store."""
        problem = read_problem(self.root, self.folder, folder=True)
        if problem is not None:
            raise UnsafeStoreEntry(f"{layout.INDEX_GROUP}/ is {problem}")
        try:
            with os.scandir(self.folder) as entries:
                return {
                    entry.name: entry.stat(follow_symlinks=False).st_size
                    for entry in entries
                    if entry.is_file(follow_symlinks=False)
                }
        except FileNotFoundError:
            return {}

    def read(self, name: str, offset: int = 0) -> bytes | None:
        try:
            return read_inside(self.root, os.path.join(self.folder, name), offset)
        except FileNotFoundError:
            return None

    def write_atomic(self, name: str, body: bytes) -> None:
        """``body`` under a temporary name (fsynced), renamed over ``name``, the folder fsynced."""
        target = os.path.join(self.ensure_group(), name)
        replace_atomically(target, body, sync=self.sync, partial=_partial_name(target))
        self._sync_folder()

    def ensure_group(self) -> str:
        """The index folder with its ``zarr.json`` (made with the store; stores from before the
        index get it from their first writer); a real folder of the store, never a link."""
        writable_dir(self.root, layout.INDEX_GROUP)
        if os.path.lexists(os.path.join(self.folder, layout.ZARR_JSON)):
            return self.folder
        target = os.path.join(self.folder, layout.ZARR_JSON)
        replace_atomically(target, GROUP_METADATA, sync=self.sync, partial=_partial_name(target))
        self._sync_folder()
        if self.sync:
            fsync_dir(self.root)
        return self.folder

    def create_journal(self, name: str) -> int:
        """A new journal file opened for appending (its name durable before any line is)."""
        folder = self.ensure_group()
        descriptor = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._sync_folder()
        return descriptor

    def remove_leftovers(self, names: Iterable[str]) -> None:
        folder = writable_dir(self.root, layout.INDEX_GROUP)
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))  # a link is removed, not followed

    def create_claim(self, video: str, body: bytes) -> bool:
        """Create ``claims/<video>.json`` with ``body`` unless it exists (then False)."""
        folder = writable_dir(self.root, f"{layout.INDEX_GROUP}/{layout.INDEX_CLAIMS}")
        try:
            descriptor = os.open(os.path.join(folder, f"{video}.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(descriptor, body)
        finally:
            os.close(descriptor)
        return True

    def read_claim(self, video: str) -> bytes | None:
        try:
            return read_inside(self.root, os.path.join(self.folder, layout.INDEX_CLAIMS, f"{video}.json"))
        except FileNotFoundError:
            return None

    def remove_claim(self, video: str, body: bytes) -> bool:
        """Remove the claim of ``video`` if it still holds ``body``: moved away first (atomic),
        so that of two processes removing one claim only one gets it; a claim that turns
        out to be another (made in between) is put back."""
        path = os.path.join(writable_dir(self.root, f"{layout.INDEX_GROUP}/{layout.INDEX_CLAIMS}"), f"{video}.json")
        taken = f"{path}.{uuid.uuid4().hex[:8]}.taken"
        try:
            os.rename(path, taken)
        except FileNotFoundError:
            return False
        try:
            ours = read_inside(self.root, taken) == body
        except UnsafeStoreEntry:  # a link or a FIFO under a claim's name: no claim of ours
            ours = False
        if not ours:
            with contextlib.suppress(FileExistsError):
                os.link(taken, path)  # put it back (unless yet another claim is there by now)
        os.remove(taken)
        return ours

    def claims(self) -> list[str]:
        folder = os.path.join(self.folder, layout.INDEX_CLAIMS)
        if read_problem(self.root, folder, folder=True) is not None:
            return []  # a link leading out: no claims of this store's writers
        try:
            return [name[: -len(".json")] for name in os.listdir(folder) if name.endswith(".json")]
        except FileNotFoundError:
            return []

    def read_markers(self, videos: Iterable[str]) -> dict[str, Marker | None]:
        """What each group's ``zarr.json`` says (None: no group folder)."""
        found: dict[str, Marker | None] = {}
        for video in videos:
            folder = os.path.join(self.root, layout.VIDEOS_GROUP, check_video_id(video))
            if not os.path.isdir(folder):  # nothing there, or a stray file: no group
                found[video] = None
                continue
            problem = read_problem(self.root, folder, folder=True)
            try:
                if problem is not None:
                    raise UnsafeStoreEntry(f"the group folder is {problem}")
                body = read_inside(self.root, os.path.join(folder, layout.ZARR_JSON))
            except (FileNotFoundError, NotADirectoryError):
                found[video] = Marker.empty() if os.path.isdir(folder) else None
                continue
            except UnsafeStoreEntry as error:
                found[video] = Marker.unreadable(f"refused: {error}")
                continue
            found[video] = _parse_marker(body)
        return found

    def _sync_folder(self) -> None:
        if self.sync:
            fsync_dir(self.folder)


class ObjectIndexFiles:
    """The index of a store on an object store (any fsspec filesystem: s3fs, ...)."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.fs, self.root = filesystem(url, storage_options)
        self.folder = join(self.root, layout.INDEX_GROUP)

    def video_names(self) -> set[str] | None:
        prefix = join(self.root, layout.VIDEOS_GROUP)
        try:
            entries = self.fs.ls(prefix, detail=False, refresh=True)
        except FileNotFoundError:
            return None
        names = {entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries}
        return {name for name in names if _is_group_name(name)}

    def list(self) -> dict[str, int]:
        try:
            entries = self.fs.ls(self.folder, detail=True, refresh=True)
        except FileNotFoundError:
            return {}
        return {
            entry["name"].rstrip("/").rsplit("/", 1)[-1]: int(entry.get("size") or 0)
            for entry in entries
            if entry.get("type") == "file"
        }

    def read(self, name: str, offset: int = 0) -> bytes | None:
        try:
            return self.fs.cat_file(join(self.folder, name), start=offset or None)
        except FileNotFoundError:
            return None

    def write_atomic(self, name: str, body: bytes) -> None:
        self.ensure_group()
        self.fs.pipe_file(join(self.folder, name), body)

    def ensure_group(self) -> None:
        # No folders on an object store; the group's zarr.json is written once (and again
        # by a writer that finds none: the same bytes).
        if not getattr(self, "_group_checked", False):
            if not self.fs.exists(join(self.folder, layout.ZARR_JSON)):
                self.fs.pipe_file(join(self.folder, layout.ZARR_JSON), GROUP_METADATA)
            self._group_checked = True

    def put_journal(self, name: str, body: bytes) -> None:
        self.fs.pipe_file(join(self.folder, name), body)

    def remove_leftovers(self, names: Iterable[str]) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(join(self.folder, name))

    def create_claim(self, video: str, body: bytes) -> bool:
        """A conditional PUT (``If-None-Match: *``): AWS S3 and MinIO refuse it when the
        object exists; a server that ignores the condition makes claims best-effort."""
        try:
            self.fs.pipe_file(join(self.folder, layout.INDEX_CLAIMS, f"{video}.json"), body, mode="create")
        except FileExistsError:
            return False
        return True

    def read_claim(self, video: str) -> bytes | None:
        try:
            return self.fs.cat_file(join(self.folder, layout.INDEX_CLAIMS, f"{video}.json"))
        except FileNotFoundError:
            return None

    def remove_claim(self, video: str, body: bytes) -> bool:
        """Remove the claim of ``video`` if it still holds ``body`` (read, then delete: an
        object store has no atomic compare-and-delete)."""
        if self.read_claim(video) != body:
            return False
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(join(self.folder, layout.INDEX_CLAIMS, f"{video}.json"))
        return True

    def claims(self) -> list[str]:
        try:
            entries = self.fs.ls(join(self.folder, layout.INDEX_CLAIMS), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return [entry.rsplit("/", 1)[-1][: -len(".json")] for entry in entries if entry.endswith(".json")]

    def read_markers(self, videos: Iterable[str]) -> dict[str, Marker | None]:
        videos = list(videos)
        if not videos:
            return {}
        paths = {join(self.root, layout.VIDEOS_GROUP, video, layout.ZARR_JSON): video for video in videos}
        bodies = self.fs.cat(list(paths), on_error="return")  # concurrent GETs
        found: dict[str, Marker | None] = {}
        for path, video in paths.items():
            body = bodies.get(path)
            if isinstance(body, bytes):
                found[video] = _parse_marker(body)
            else:  # no zarr.json: a folder (prefix) with other objects is a write under way
                found[video] = (
                    Marker.empty() if self._has_objects(join(self.root, layout.VIDEOS_GROUP, video)) else None
                )
        return found

    def _has_objects(self, prefix: str) -> bool:
        try:
            return bool(self.fs.ls(prefix, detail=False, refresh=True))
        except FileNotFoundError:
            return False


def _parse_marker(body: bytes) -> Marker:
    try:
        attrs = json.loads(body)["attributes"]
        if not isinstance(attrs, dict):
            raise TypeError("attributes is not an object")
    except Exception as error:  # noqa: BLE001 -- damage is a finding, not a crash
        return Marker.unreadable(f"unreadable group metadata (zarr.json): {type(error).__name__}: {error}")
    return Marker.from_attrs(attrs)


def _partial_name(target: str) -> str:
    """A temporary name for ``target`` that says which process made it (its leftovers are
    removed once that process is dead: ``build._remove_leftovers``, :func:`partial_writer`)."""
    return f"{target}.{process_tag()}-{uuid.uuid4().hex[:8]}.partial"


# The temporary names :func:`_partial_name` gives the files the index writes atomically.
_PARTIAL = re.compile(
    rf"^(?:{re.escape(layout.INDEX_SNAPSHOT)}|{re.escape(layout.ZARR_JSON)})\.(?P<tag>.+)-[0-9a-f]{{8}}\.partial$"
)


def partial_writer(name: str) -> str | None:
    """The ``<host>_<pid>`` tag of the process that made ``name``, a temporary file of an
    atomic write in the index folder (None: not one)."""
    match = _PARTIAL.match(name)
    return match["tag"] if match else None


def index_files(url: str, storage_options: dict | None = None) -> LocalIndexFiles | ObjectIndexFiles:
    if is_plain_local(url, storage_options):
        return LocalIndexFiles(url)
    return ObjectIndexFiles(url, storage_options)
