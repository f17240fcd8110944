"""Disk full while writing the store: a clear error, the store still valid, and a re-run
after freeing space equal to an uninterrupted run.

Two real ways to make the kernel refuse a write, no mocks:

* ``ENOSPC`` -- the store lives on a small tmpfs mounted for the test, with a filler file
  taking most of it (needs root and CAP_SYS_ADMIN, as in this container; skipped, saying
  so, elsewhere);
* ``EFBIG`` -- the extraction runs in a subprocess whose soft ``RLIMIT_FSIZE`` is below
  the largest file the store needs (SIGXFSZ ignored, so ``write`` fails with EFBIG as it
  does on a file system with a file size limit).  ffmpeg is started through a wrapper
  that lifts its own soft limit again, so only the store writes are limited.  Works
  without root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from comode.extract.datasets import load_dataset
from comode.extract.encode import ffmpeg_exe
from comode.extract.executors import SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import open_store
from comode.store.validate import validate_store
from comode.store.writer import StoreFullError

VIDEOS = 6


def _assert_valid_and_nothing_marked_failed(url: str) -> dict[str, int]:
    report = validate_store(url)
    assert report.ok, report.problems
    assert "failed" not in report.by_status, "a full disk is not the video's fault: nothing may be recorded failed"
    return report.by_status


def _store_bytes(url: str) -> int:
    return sum(p.stat().st_size for p in Path(url).rglob("*") if p.is_file())


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 6 MiB tmpfs at tmp_path/disk (root only); unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE variant covers this without root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); the RLIMIT_FSIZE variant covers this")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_no_space_left_on_a_real_file_system(small_tmpfs, folder, reference, stores_equal):
    filler = small_tmpfs / "filler"
    total = shutil.disk_usage(small_tmpfs).total
    filler.write_bytes(b"\0" * (total - _store_bytes(reference) // 2))  # room for about half the store
    url = str(small_tmpfs / "store.zarr")
    with pytest.raises(StoreFullError) as caught:
        run_extraction(load_dataset("folder", folder), url, ExtractSettings(), SequentialExecutor())
    message = str(caught.value)
    print(message)
    assert "No space left on device (errno ENOSPC)" in message and "run the same command again" in message
    by_status = _assert_valid_and_nothing_marked_failed(url)
    assert 0 < by_status.get("complete", 0) < VIDEOS
    filler.unlink()  # free space, run again: it resumes and finishes
    summary = run_extraction(load_dataset("folder", folder), url, ExtractSettings(), SequentialExecutor())
    assert summary.ok and summary.skipped_complete == by_status["complete"]
    stores_equal(url, reference)


LIMITED = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    root, url, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))  # soft limit only
    # `comode extract` itself (sequential), so that its exit code for a full disk is what is tested.
    import runpy
    sys.argv = ["comode", "extract", "--dataset", "folder", "--root", root, "--out", url, "--workers", "0",
                "--no-progress"]
    runpy.run_module("comode", run_name="__main__")
""")


def test_file_size_limit_while_writing(tmp_path, folder, reference, stores_equal):
    # ffmpeg writes its temporary NUT file outside the store: give it its limit back.
    wrapper = tmp_path / "ffmpeg-unlimited"
    wrapper.write_text(f'#!/bin/sh\nulimit -f unlimited\nexec "{ffmpeg_exe()}" "$@"\n')
    wrapper.chmod(0o755)
    sizes = sorted((p.stat().st_size, p) for p in Path(reference).rglob("*") if p.is_file())
    limit = sizes[-1][0] - 1  # the largest file of the store cannot be written
    url = str(tmp_path / "store.zarr")
    result = subprocess.run(
        [sys.executable, "-c", LIMITED, str(folder), url, str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COMODE_FFMPEG": str(wrapper)},
    )
    print(result.stderr)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "File too large (errno EFBIG)" in result.stderr and "The store is still valid" in result.stderr
    largest_video = sizes[-1][1].relative_to(reference).parts[1]
    assert f"while writing video {largest_video!r}" in result.stderr
    by_status = _assert_valid_and_nothing_marked_failed(url)
    assert open_store(url).video_attrs()[largest_video]["status"] == "writing"  # never counted as complete
    assert largest_video not in open_store(url).video_ids()
    assert by_status.get("writing") == 1
    # Without the limit the same command resumes and finishes.
    summary = run_extraction(load_dataset("folder", folder), url, ExtractSettings(), SequentialExecutor())
    assert summary.ok
    stores_equal(url, reference)
