"""Decoder isolation: a decoder that hangs or crashes is killed / contained, the worker and
the run go on, and the memory of each decode is bounded.

Hangs and crashes are made with the test-only hook ``COMODE_FAULT_INJECT`` (see
``comode/extract/encode.py``): the re-encode subprocess of the matching files sleeps
forever or dies of SIGSEGV, as a decoder stuck or crashing on a hostile file would;
``worker-crash`` kills the Dask worker process itself after the re-encode (a native crash
in the in-process decoder).  The memory bound is real: an 8K source under a 280 MiB
address-space limit.  (``tests/extract/test_encode.py`` also times out a real ffmpeg
blocked on a FIFO.)
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import dask
import pytest

from comode.extract.datasets import load_dataset
from comode.extract.encode import FAULT_INJECT_ENV
from comode.extract.executors import DaskExecutor, SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import open_store
from comode.store.validate import validate_store
from tests.commands import EIGHT_K_MPEG4, run_ffmpeg

HANG_PROGRAM = "while True: time.sleep(1)"


def _processes_running(fragment: str) -> list[int]:
    """pids whose command line contains ``fragment`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if fragment in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _address_space_limit(pid: int) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max address space"):
                return line.split()[3]  # soft limit, bytes
    except OSError:
        return None
    return None


@pytest.fixture
def dataset_root(tmp_path, tiny_folder_factory) -> Path:
    root = tiny_folder_factory(tmp_path / "videos", 4, frames=20)
    faults = root / "faults"
    faults.mkdir()
    for name in ("hang.mkv", "crash.mkv", "worker_crash.mkv"):
        os.link(root / "right" / "video00.mkv", faults / name)
    run_ffmpeg(*EIGHT_K_MPEG4, faults / "huge_8k.mp4")
    return root


EXPECTED = {
    "faults__hang.mkv": "timed out after 3 s (decoder hang",
    "faults__crash.mkv": "ffmpeg crashed (killed by SIGSEGV): decoder crash on this input",
    "faults__huge_8k.mp4": "out of memory: ffmpeg exceeded the per-video limit of 280 MiB",
    "faults__worker_crash.mkv": "task crashed: KilledWorker",
}


@pytest.mark.parametrize("executor_kind", ["sequential", "dask"])
def test_hanging_crashing_and_memory_hungry_decoders_are_contained(tmp_path, dataset_root, monkeypatch, executor_kind):
    faults = "hang:hang.mkv,crash:crash.mkv"
    if executor_kind == "dask":  # in the sequential executor it would kill the test process itself
        faults += ",worker-crash:worker_crash.mkv"
    monkeypatch.setenv(FAULT_INJECT_ENV, faults)  # Dask workers inherit it
    settings = ExtractSettings(timeout_s=3, memory_limit_mb=280)
    index = load_dataset("folder", dataset_root)

    limits_seen: list[str | None] = []
    stop = threading.Event()

    def watch_the_hang() -> None:  # the hung subprocess runs under the memory limit
        while not stop.is_set() and not limits_seen:
            for pid in _processes_running(HANG_PROGRAM):
                limits_seen.append(_address_space_limit(pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_the_hang)
    watcher.start()
    url = str(tmp_path / "store.zarr")
    start = time.monotonic()
    try:
        if executor_kind == "dask":
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # no retries of the crash
                executor = DaskExecutor(workers=2)
                try:
                    run_extraction(index, url, settings, executor)
                finally:
                    executor.close()
        else:
            run_extraction(index, url, settings, SequentialExecutor())
    finally:
        stop.set()
        watcher.join()
    elapsed = time.monotonic() - start

    attrs = open_store(url).video_attrs()
    errors = {vid: a.get("error") for vid, a in attrs.items() if a["status"] == "failed"}
    print({vid: (a["status"], a.get("frames")) for vid, a in attrs.items()})
    print(
        f"{executor_kind}: {elapsed:.1f} s, failures: {errors}, address-space limit of the hung process: {limits_seen}"
    )
    expected = dict(EXPECTED)
    if executor_kind == "sequential":
        expected.pop("faults__worker_crash.mkv")
    assert set(expected) <= set(attrs), "a faulty video left no record in the store"
    assert set(errors) == set(expected)
    for video_id, text in expected.items():
        assert errors[video_id].startswith(text), (video_id, errors[video_id])
    complete = sorted(vid for vid, a in attrs.items() if a["status"] == "complete")
    assert len(complete) == len(attrs) - len(expected) and len(complete) >= 4  # the run went on
    assert validate_store(url).ok
    assert limits_seen and limits_seen[0] == str(280 * 1024 * 1024)
    assert elapsed < 60  # the hang cost its time limit, not the run
    assert not _processes_running(HANG_PROGRAM), "the hung decoder was not killed"


def test_an_8k_source_passes_under_the_default_memory_limit(tmp_path, dataset_root):
    settings = ExtractSettings()
    assert settings.memory_limit_mb == 4096
    folder = tmp_path / "one" / "faults"
    folder.mkdir(parents=True)
    os.link(dataset_root / "faults" / "huge_8k.mp4", folder / "huge_8k.mp4")
    url = str(tmp_path / "one.zarr")
    summary = run_extraction(load_dataset("folder", tmp_path / "one"), url, settings, SequentialExecutor())
    assert summary.ok and summary.frames == 2
