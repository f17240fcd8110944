"""Kill anywhere: SIGKILL the extraction client, a Dask worker, or the whole process group at
seeded random moments; the re-run completes and the store equals an uninterrupted run,
array for array.

(``tests/extract/test_pipeline.py`` kills the sequential CLI once, after the first complete
video; here the moments are random, from process start-up on, and cover Dask.)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from comode.extract.datasets import load_dataset
from comode.extract.executors import DaskExecutor, SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.extract.video import WORKDIR_PREFIX
from comode.store.ownership import process_tag
from comode.store.validate import validate_store
from tests.commands import comode_command, extract_folder_args

VIDEOS = 10
SEED = 20261125


@pytest.fixture(scope="module", autouse=True)
def _no_fsync():
    """A SIGKILL keeps the page cache, so what these tests check does not depend on fsync; its
    latency on a disk shared with other processes does vary (a journal commit also writes
    their data), and made the kill moments drawn from one timed run land after the end of
    the others.  The fsync path has its own test (tests/store/test_durability.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMODE_FSYNC", "0")
        yield


def _extract_command(folder: Path, url: str, workers: int) -> list[str]:
    """`comode extract` itself: the client process we kill."""
    return comode_command(*extract_folder_args(folder, url, "--workers", workers, "--no-progress"))


@pytest.fixture(scope="module")
def run_seconds(tmp_path_factory, folder, reference, stores_equal) -> Callable[[int], float]:
    """Wall time of an uninterrupted `comode extract` with ``workers`` (measured once each, here
    and now: the kill moments are drawn inside it, whatever the machine's load)."""
    measured: dict[int, float] = {}

    def seconds(workers: int) -> float:
        if workers not in measured:
            url = str(tmp_path_factory.mktemp("timed") / "store.zarr")
            start = time.monotonic()
            subprocess.run(_extract_command(folder, url, workers), check=True, capture_output=True, timeout=300)
            measured[workers] = time.monotonic() - start
            stores_equal(url, reference)
        return measured[workers]

    return seconds


def _kill_then_rerun(
    folder: Path, url: str, *, workers: int, delay: float, helpers, after_first_video: bool = False
) -> dict:
    """Start the client in its own process group, SIGKILL the group after ``delay`` s (counted
    from the first complete video if ``after_first_video``), re-run."""
    process = subprocess.Popen(
        _extract_command(folder, url, workers),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    if after_first_video:
        helpers.wait_for(
            lambda: helpers.complete_count(url) >= 1 or process.poll() is not None, timeout=120, interval=0.005
        )
    time.sleep(delay)
    alive = process.poll() is None
    if alive:
        os.killpg(process.pid, signal.SIGKILL)  # the client, its ffmpeg, its Dask nanny and workers
    process.wait()
    # Nothing of that group survives (Dask workers included).
    assert helpers.wait_for(lambda: not _group_alive(process.pid), timeout=30), "processes survived the kill"
    done_at_kill = helpers.complete_count(url)
    rerun = subprocess.run(_extract_command(folder, url, 0), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # A kill while the store was being created left its staging folder; the re-run removed it.
    assert not list(Path(url).parent.glob(Path(url).name + ".creating-*"))
    # No temporary file of an interrupted write is left in the store (rewritten groups are replaced whole).
    assert not [p for p in Path(url).rglob("*") if p.name.endswith(".partial")]
    # The killed client could not delete its temporary folder; the re-run removed it.
    leftovers = list(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{process_tag(process.pid)}-*"))
    assert not leftovers, leftovers
    return {"delay_s": round(delay, 3), "killed_mid_run": alive, "complete_at_kill": done_at_kill}


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigkill_of_the_client_at_random_moments(tmp_path, folder, reference, stores_equal, helpers, run_seconds):
    rng = random.Random(SEED)
    duration = run_seconds(0)
    trials = []
    for trial in range(3):
        url = str(tmp_path / f"client{trial}.zarr")
        # From import time (no store yet) through store creation to the last video.
        outcome = _kill_then_rerun(folder, url, workers=0, delay=rng.uniform(0.15, 0.95) * duration, helpers=helpers)
        trials.append(outcome)
        stores_equal(url, reference)
        assert validate_store(url).ok
    print(f"client kills (uninterrupted run {duration:.2f} s):", trials)
    assert sum(t["killed_mid_run"] for t in trials) >= 2


def test_sigkill_of_the_whole_process_group_with_dask_workers(
    tmp_path, folder, reference, stores_equal, helpers, run_seconds
):
    rng = random.Random(SEED + 1)
    duration = run_seconds(2)
    trials = []
    for trial in range(2):
        url = str(tmp_path / f"group{trial}.zarr")
        if trial == 0:  # during LocalCluster start-up or the first tasks
            outcome = _kill_then_rerun(folder, url, workers=2, delay=rng.uniform(0.3, 0.9) * duration, helpers=helpers)
        else:  # while both workers extract
            outcome = _kill_then_rerun(
                folder, url, workers=2, delay=rng.uniform(0.0, 0.3), helpers=helpers, after_first_video=True
            )
        trials.append(outcome)
        stores_equal(url, reference)
    print(f"process-group kills (uninterrupted run {duration:.2f} s):", trials)
    assert all(t["killed_mid_run"] for t in trials) and 0 < trials[1]["complete_at_kill"] < VIDEOS


def test_sigkill_of_dask_workers_mid_run(tmp_path, folder, reference, stores_equal):
    """Kill a worker process (its nanny restarts it) twice during one run: the run completes
    by itself (the scheduler re-runs the lost tasks) and the store equals the reference."""
    rng = random.Random(SEED + 2)
    executor = DaskExecutor(workers=2)
    url = str(tmp_path / "workers.zarr")
    kills: list[dict] = []
    results: list[str] = []
    started = threading.Event()

    def killer() -> None:
        started.wait(60)
        for _ in range(2):
            time.sleep(rng.uniform(0.05, 0.4))
            pids = executor.client.run(os.getpid)  # worker address -> pid (nannies restart them)
            address = rng.choice(sorted(pids))
            os.kill(pids[address], signal.SIGKILL)
            kills.append({"worker": address, "pid": pids[address], "results_so_far": len(results)})
            executor.client.wait_for_workers(2, timeout=60)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        summary = run_extraction(
            load_dataset("folder", folder),
            url,
            ExtractSettings(),
            executor,
            on_plan=lambda plan: started.set(),
            on_result=lambda result, _: results.append(result.video_id),
        )
    finally:
        started.set()
        thread.join()
        executor.close()
    print("worker kills:", kills, "summary:", summary.completed, summary.failures)
    assert len(kills) == 2 and any(k["results_so_far"] < VIDEOS for k in kills), "no kill landed mid-run"
    if not summary.ok:  # a task killed on every try is recorded as crashed; a re-run redoes it
        assert all(reason.startswith("task crashed") for _, reason in summary.failures)
        run_extraction(load_dataset("folder", folder), url, ExtractSettings(), SequentialExecutor(), retry_failed=True)
    stores_equal(url, reference)


def test_a_store_creation_killed_half_way_leaves_nothing_that_blocks_or_lingers(
    tmp_path, folder, reference, stores_equal
):
    """The store is built in ``<store>.creating-<host>_<pid>-*`` and renamed into place: a process
    killed before the rename leaves only that folder (never a store without attributes, which
    every later run refused before); the next run removes it and creates the store.  The same
    leftover named after another host is kept: its pid says nothing about a process there."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now belongs to no process
    url = tmp_path / "store.zarr"
    staging = tmp_path / f"store.zarr.creating-{process_tag(dead.pid)}-0badf00d"
    elsewhere = tmp_path / f"store.zarr.creating-other-host.example_{dead.pid}-0badf00d"
    for leftover in (staging, elsewhere):
        (leftover / "videos").mkdir(parents=True)
        (leftover / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    summary = run_extraction(load_dataset("folder", folder), str(url), ExtractSettings(), SequentialExecutor())
    assert summary.ok and not staging.exists() and elsewhere.exists()
    stores_equal(str(url), reference)
