"""Training checkpoints: atomic writes, safe loads, and RNG states as plain tensors.

A checkpoint is one ``torch.save`` dict holding only tensors and plain Python values
(str, int, float, bool, None, lists, tuples, dicts), so it loads with
``torch.load(weights_only=True)``: opening a checkpoint can never run pickled code.

Writes are atomic: the bytes go to ``<name>.<pid>-<random>.tmp`` in the same directory (a
name of its own, so two writers never share one), are fsync'ed, and ``os.replace`` swaps
the file in (then the directory is fsync'ed).  A crash or SIGKILL at any moment leaves
either the previous ``last.pt`` or the new one, never a mix; a failed write removes its
temporary file, and a killed run's is removed by the next run in the folder
(:mod:`comode.train.runlock`).  A full disk is a :class:`CheckpointError` that says so.

Layout of a run directory::

    out_dir/last.pt          the newest state (every save_every_steps, or every epoch end
                             when that is null; and at the end)
    out_dir/epoch_010.pt     snapshots every checkpoint_every_epochs epochs
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import random
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "LAST_CHECKPOINT",
    "CheckpointError",
    "epoch_checkpoint_name",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]

CHECKPOINT_FORMAT = "comode.checkpoint/1"
LAST_CHECKPOINT = "last.pt"
# The ending of the temporary name of a file being written (replacing()).
TEMPORARY_SUFFIX = ".tmp"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt, or not a comode checkpoint."""


def epoch_checkpoint_name(epoch: int) -> str:
    """``epoch_010.pt`` for the state after ``epoch`` completed epochs."""
    return f"epoch_{epoch:03d}.pt"


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary name of this write's own beside ``path``, renamed over ``path`` when the
    block ends; removed when the block fails (nothing half-written holds the space)."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` (plus the format tag) to ``path``; returns ``path``.
    A full disk (or quota, or file size limit) is a CheckpointError saying so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with replacing(path) as temporary, open(temporary, "wb") as handle:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except (OSError, RuntimeError) as error:  # torch.save wraps the OSError of its writer
        if not _is_disk_full(error):
            raise
        raise CheckpointError(
            f"cannot save checkpoint {path}: the disk is full (or a quota or file size limit is reached: {error}); "
            f"the previous {path.name} is kept. Free space and continue with --resume"
        ) from None
    _fsync_directory(path.parent)
    return path


def _is_disk_full(error: BaseException) -> bool:
    full = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    while error is not None:
        if isinstance(error, OSError) and error.errno in full:
            return True
        if "No space left on device" in str(error) or "File too large" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing anything else.

    ``weights_only=True``: only tensors and plain values are unpickled.  The archive's CRC-32s
    are checked first (``torch.load`` does not), so bit rot is refused, not loaded.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, holds pickled objects
            other than tensors and plain values, or is not a comode checkpoint.  The message
            names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; a cut-off one loses its directory
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({path.stat().st_size} bytes, not a complete "
            "torch.save archive; an interrupted write or copy?)"
        )
    damaged = _first_crc_mismatch(path)
    if damaged:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: the CRC-32 of its record {damaged!r} does not match (bit rot or a "
            "damaged copy); use an earlier checkpoint (epoch_NNN.pt) or a good copy"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain values (or a damaged "
            f"pickle) and was refused (weights_only loading): {_first_line(error)}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({path.stat().st_size} bytes; an "
            f"interrupted copy?) and cannot be loaded: {_first_line(error)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (found {found!r})")
    return state


def _first_crc_mismatch(path: Path) -> str | None:
    """Name of the first archive member whose CRC-32 does not match, else None.

    ``torch.load`` does not check the CRCs that ``torch.save`` writes: a flipped bit inside a
    tensor's bytes loads silently as a wrong weight (measured).  Checking them costs one
    sequential read of the file, small beside loading it (docs/performance.md).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        return f"<archive unreadable: {_first_line(error)}>"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --------------------------------------------------------------------------------------
# RNG states as tensors and plain values (weights_only-safe)
# --------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (if present) CUDA generator states, weights_only-safe."""
    version, python_state, gauss_next = random.getstate()
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(python_state, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`.  CUDA states are restored when the device count matches."""
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state["cuda"]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
