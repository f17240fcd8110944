"""One run per run folder, and never a run in someone else's folder.

A run folder gets reused by a copy-pasted command: two ``train pretrain`` runs into one
``--out`` both ran (their ``metrics.jsonl`` and ``train.log`` interleaved, the first run's
checkpoint silently replaced), and ``--out`` named a folder of the user's or a store's
``videos/``.  :func:`hold_run_folder` is what a run does before it writes anything:

- it refuses a folder inside a Zarr store (any ancestor holding a ``zarr.json``);
- it takes an exclusive ``fcntl`` lock on ``<out>/comode-run.lock`` for the whole run (the
  kernel drops it when the process dies, however it dies, so a killed run never leaves a
  stale lock); a second run gets :class:`RunFolderBusy` naming the holder;
- the lock file is also the mark of a folder comode made: a folder holding other files and
  no mark is refused unless the run resumes (``--resume``) or was told ``--overwrite``.

A thread that holds a folder may hold it again (the ``evaluate finetune`` command holds its
``--out`` before it writes its log there, then calls :func:`run_finetune`, which holds its
output folder as any library call must); another thread or process gets
:class:`RunFolderBusy`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import threading
from pathlib import Path
from typing import Iterator

from comode.train.checkpoint import TEMPORARY_SUFFIX
from comode.train.rundir import holds_a_run

__all__ = ["LOCK_FILE", "RunFolderBusy", "hold_run_folder", "refuse_store_folder"]

LOCK_FILE = "comode-run.lock"


class RunFolderBusy(FileExistsError):
    """Another run holds the run folder (a FileExistsError: the CLI reports it, exit 2)."""


def refuse_store_folder(path: Path, *, option: str) -> None:
    """FileExistsError when ``path`` is (inside) a Zarr store: a run's or an export's files
    there would become part of a store others read."""
    for folder in (path, *path.parents):
        if (folder / "zarr.json").is_file():
            raise FileExistsError(
                f"{option} {path} is inside the Zarr store {folder}; write runs and exports outside stores"
            )


# (st_dev, st_ino) of each folder this process holds -> (pid, thread) holding it (a forked
# child is not its parent's thread).
_HELD: dict[tuple[int, int], tuple[int, int]] = {}


@contextlib.contextmanager
def hold_run_folder(out_dir: Path, *, resume: bool, overwrite: bool) -> Iterator[Path]:
    """Hold ``out_dir`` (made if missing) for the ``with`` block; see the module docstring.

    Raises:
        RunFolderBusy: another run holds the folder.
        FileExistsError: the folder is inside a store, or holds files comode did not write
            (neither ``resume`` nor ``overwrite``).
    """
    out_dir = Path(out_dir).absolute()
    refuse_store_folder(out_dir, option="--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = os.stat(out_dir)
    key = (folder.st_dev, folder.st_ino)  # the same folder however it is spelled
    this_thread = (os.getpid(), threading.get_ident())
    if _HELD.get(key) == this_thread:
        yield out_dir  # this thread holds it already (and checked it then)
        return
    # A folder with a run (last.pt: checkpoint_to_resume says what to do) is comode's too.
    marked = (out_dir / LOCK_FILE).exists() or holds_a_run(out_dir)
    if not (marked or resume or overwrite):
        foreign = sorted(entry.name for entry in out_dir.iterdir())
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise FileExistsError(
                f"--out {out_dir} holds files comode did not write ({shown}); choose another --out, "
                "or pass --overwrite to write the run there anyway"
            )
    descriptor = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(descriptor, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunFolderBusy(
                f"--out {out_dir} is in use by another run ({holder}); wait for it to end or choose another --out"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        _remove_temporaries(out_dir)  # the lock is ours: no other run is writing one now
        _HELD[key] = this_thread
        try:
            yield out_dir
        finally:
            del _HELD[key]
    finally:
        os.close(descriptor)  # releases the lock


# The temporary names checkpoint.replacing() gives (and the one name saves used before).
_TEMPORARY = re.compile(rf"^(?:.+\.\d+-[0-9a-f]{{8}}|last\.pt){re.escape(TEMPORARY_SUFFIX)}$")


def _remove_temporaries(out_dir: Path) -> None:
    """Half-written files of runs killed mid-save (each save has its own temporary name)."""
    for path in out_dir.iterdir():
        if _TEMPORARY.match(path.name) and path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.unlink()
