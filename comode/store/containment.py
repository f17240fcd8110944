"""Keep every file operation on a local store inside the store.

Stores are copied between machines, shared on clusters and downloaded, so a store folder
may hold what comode never writes: symbolic links (to a folder of the user's, to
``/dev/zero``), FIFOs, device files, stray files (a macOS ``.DS_Store``), and index lines
naming ids like ``../../x``.  The rules, applied by the writer, the index and the readers:

- **Writing and deleting** never go through a link and never open a non-regular file:
  every folder from the store's root down to the one written is checked with ``lstat``
  (:func:`writable_dir`; a link or a non-folder there is refused with
  :class:`UnsafeStoreEntry`), and a link or a file where a video group is removed is
  unlinked itself, never what it points to (:func:`remove_entry`).
- **Reading** refuses a path that resolves outside the store and any file that is not a
  regular file (:func:`read_problem`, :func:`read_inside`): a FIFO blocks its reader for
  ever and ``/dev/zero`` reads until memory runs out.  A link that stays inside the store
  and ends at a regular file is read.  Nor is a ``zarr.json`` larger than
  :data:`METADATA_BYTES` read: readers read metadata whole, and a sparse file of gigabytes
  takes no room on disk.
- **Ids** that reach a path come from the index and journals too, not only from the writer:
  :func:`check_video_id` is the one test of all of them.

Local stores only: an object store has no links, FIFOs or devices.  The checks guard
against what a store holds, not against another process rewriting it while comode runs.
"""

from __future__ import annotations

import os
import shutil
import stat

from comode.store import layout

__all__ = [
    "UnsafeStoreEntry",
    "check_video_id",
    "is_safe_video_id",
    "writable_dir",
    "remove_entry",
    "read_problem",
    "read_inside",
    "tree_problems",
    "METADATA_BYTES",
]

# The largest zarr.json readers read.  A store's largest is its root's: about 10 KiB for
# the 400 class names of Kinetics-400.
METADATA_BYTES = 16 << 20


class UnsafeStoreEntry(ValueError):
    """A path in a store that comode refuses to write through or read (the message says
    which and why).  A ValueError: readers skip such a video like a damaged one, and the
    CLI reports the message as a user error."""


def is_safe_video_id(video_id: object) -> bool:
    """Whether ``video_id`` may name a folder under ``videos/`` (:data:`layout.SAFE_VIDEO_ID`)."""
    return isinstance(video_id, str) and layout.SAFE_VIDEO_ID.fullmatch(video_id) is not None


def check_video_id(video_id: object) -> str:
    """``video_id`` itself, or a ValueError saying it cannot name a video group."""
    if not is_safe_video_id(video_id):
        raise ValueError(
            f"unsafe video id {video_id!r}: ids must match {layout.SAFE_VIDEO_ID.pattern} "
            "(comode.extract.datasets.safe_video_id makes one from any path)"
        )
    return video_id  # type: ignore[return-value]


def kind(mode: int) -> str:
    """A file type in words, for messages."""
    for test, name in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISREG, "regular file"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "device"),
        (stat.S_ISBLK, "device"),
    ):
        if test(mode):
            return name
    return "special file"


def writable_dir(root: str, relative: str) -> str:
    """The folder ``root/relative``, made where missing, each part checked without following
    links: a link or a non-folder anywhere below ``root`` is an :class:`UnsafeStoreEntry`
    (``root`` itself is the user's path and may be a link)."""
    current = root
    done: list[str] = []
    for part in [p for p in relative.split("/") if p not in ("", ".")]:
        if part == "..":
            raise UnsafeStoreEntry(f"{root}: {relative!r} leaves the store")
        current = os.path.join(current, part)
        done.append(part)
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            try:
                os.mkdir(current)
                continue
            except FileExistsError:  # made by another writer just now
                mode = os.lstat(current).st_mode
        if not stat.S_ISDIR(mode):
            raise UnsafeStoreEntry(
                f"{root}: {'/'.join(done)} is a {kind(mode)}, not a folder; comode never writes through "
                f"one (a store from elsewhere? remove it, or copy the store with links resolved)"
            )
    return current


def remove_entry(path: str) -> None:
    """Remove ``path`` without following it: a folder with everything in it (links inside
    are removed, not followed), anything else (a link, a stray file, a FIFO) unlinked."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _inside(real_root: str, real: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def read_problem(root: str, path: str, *, folder: bool = False) -> str | None:
    """Why ``path`` (in the store at ``root``) must not be read, or None: it resolves outside
    the store, or it is not a regular file (``folder``: not a folder).  A missing path is
    no problem here (the reader's own FileNotFoundError says so)."""
    real = os.path.realpath(path)
    if not _inside(os.path.realpath(root), real):
        return f"a symbolic link leading outside the store (to {real!r})"
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return None
    except OSError as error:  # a link loop, a name too long
        return f"cannot be read safely ({error.strerror or error})"
    wanted = stat.S_ISDIR if folder else stat.S_ISREG
    if not wanted(mode):
        return f"a {kind(mode)}, not a {'folder' if folder else 'regular file'}"
    return None if folder else _metadata_problem(path, os.stat(real).st_size)


def _metadata_problem(path: str, size: int) -> str | None:
    if os.path.basename(path) == layout.ZARR_JSON and size > METADATA_BYTES:
        return f"a metadata file of {size} bytes, more than the {METADATA_BYTES} comode reads"
    return None


def read_inside(root: str, path: str, offset: int = 0) -> bytes:
    """The bytes of the regular file ``path`` (from ``offset``) in the store at ``root``;
    :class:`UnsafeStoreEntry` for what :func:`read_problem` refuses, FileNotFoundError
    when it is missing.  Opened without blocking, so a FIFO swapped in after the check is
    refused too instead of hanging."""
    problem = read_problem(root, path)
    if problem is not None:
        raise UnsafeStoreEntry(f"{path}: {problem}")
    descriptor = os.open(os.path.realpath(path), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeStoreEntry(f"{path}: a {kind(mode)}, not a regular file")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            handle.seek(offset)
            return handle.read()
    finally:
        os.close(descriptor)


def tree_problems(root: str, folder: str) -> list[str]:
    """Every link and non-regular file at or below ``folder`` (in the store at ``root``), as
    ``relative path: what it is``: what ``store validate`` reports and what makes a reader
    refuse a video group.  Links that stay inside the store and end at a regular file or
    folder are named too (comode never writes one; a writer would remove it)."""
    problems = []
    top = os.path.relpath(folder, root)

    def report(relative: str, what: str) -> None:
        problems.append(f"{relative}: {what}")

    problem = read_problem(root, folder, folder=True)
    if problem is not None or os.path.islink(folder):
        report(top, problem or "a symbolic link (inside the store; comode never writes one)")
        if problem is not None:
            return problems
    for directory, folders, files in os.walk(folder):
        for name in folders + files:  # os.walk lists a link to a folder among the folders
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            entry = os.lstat(path)
            mode = entry.st_mode
            if stat.S_ISLNK(mode):
                what = read_problem(root, path, folder=os.path.isdir(path))
                report(relative, what or "a symbolic link (inside the store; comode never writes one)")
            elif not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                report(relative, f"a {kind(mode)}, not a regular file")
            elif stat.S_ISREG(mode) and (problem := _metadata_problem(path, entry.st_size)):
                report(relative, problem)
    return problems
