"""End to end: dataset -> store through both executors, resume, kill -9 and re-run, and a
real Dask scheduler with two worker processes on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr

from comode.extract.datasets import load_dataset
from comode.extract.executors import DaskExecutor, SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import open_store
from comode.store.validate import validate_store
from tests.commands import comode_command, extract_folder_args


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory, small_real_folder) -> str:
    """An uninterrupted sequential extraction of the small real folder."""
    url = str(tmp_path_factory.mktemp("reference") / "ref.zarr")
    summary = run_extraction(load_dataset("folder", small_real_folder), url, ExtractSettings(), SequentialExecutor())
    assert summary.ok and summary.completed == 3
    return url


def test_sequential_store_is_valid_and_rerun_does_no_work(reference_store, small_real_folder):
    report = validate_store(reference_store)
    assert report.ok and report.by_status == {"complete": 3}
    store = open_store(reference_store)
    assert store.classes == ["people", "space"]
    assert sum(store.video(v).num_frames for v in store.video_ids()) == 164 + 325 + 280
    before = {p: p.stat().st_mtime_ns for p in Path(reference_store).rglob("*") if p.is_file()}
    again = run_extraction(
        load_dataset("folder", small_real_folder), reference_store, ExtractSettings(), SequentialExecutor()
    )
    assert (again.completed, again.skipped_complete, again.frames) == (0, 3, 0)
    after = {p: p.stat().st_mtime_ns for p in Path(reference_store).rglob("*") if p.is_file()}
    assert after == before  # nothing rewritten


def test_dask_local_cluster_gives_the_same_store(tmp_path, reference_store, small_real_folder, stores_equal):
    url = str(tmp_path / "dask.zarr")
    executor = DaskExecutor(workers=2)
    try:
        summary = run_extraction(load_dataset("folder", small_real_folder), url, ExtractSettings(), executor)
    finally:
        executor.close()
    assert summary.ok and summary.completed == 3
    stores_equal(url, reference_store)


def test_bad_videos_are_recorded_and_the_run_goes_on(tmp_path, real_dir):
    root = tmp_path / "mixed"
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    (root / "good" / "makeup.avi").symlink_to(real_dir / "mmaction2_apply_eye_makeup.avi")
    (root / "bad" / "zero.mp4").write_bytes(b"")
    (root / "bad" / "noise.mkv").write_bytes(os.urandom(20_000))
    url = str(tmp_path / "mixed.zarr")
    summary = run_extraction(load_dataset("folder", root), url, ExtractSettings(), SequentialExecutor())
    assert summary.completed == 1 and len(summary.failures) == 2
    store = open_store(url)
    assert store.video_ids() == ["good__makeup.avi"]
    reasons = {vid: a["error"] for vid, a in store.video_attrs().items() if a["status"] == "failed"}
    assert reasons == {"bad__zero.mp4": "empty file (0 bytes)", "bad__noise.mkv": "not a readable video (invalid data)"}
    # A re-run leaves recorded failures alone unless asked to retry them.
    again = run_extraction(load_dataset("folder", root), url, ExtractSettings(), SequentialExecutor())
    assert (again.completed, again.skipped_failed, len(again.failures)) == (0, 2, 0)
    retried = run_extraction(
        load_dataset("folder", root), url, ExtractSettings(), SequentialExecutor(), retry_failed=True
    )
    assert len(retried.failures) == 2


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _complete_count(url: str) -> int:
    try:
        videos = zarr.open_group(url, mode="r")["videos"]
        return sum(g.attrs.get("status") == "complete" for _, g in videos.groups())
    except Exception:
        return 0


def test_sigkill_halfway_then_rerun_equals_an_uninterrupted_run(
    tmp_path, reference_store, small_real_folder, stores_equal
):
    url = str(tmp_path / "killed.zarr")
    command = comode_command(*extract_folder_args(small_real_folder, url, "--workers", "0", "--no-progress"))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert _wait_for(lambda: _complete_count(url) >= 1, timeout=120), "first video never completed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the client and its ffmpeg child, mid-run
        process.wait()
    assert _complete_count(url) < 3, "the run finished before it could be killed"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "already complete" in rerun.stderr
    stores_equal(url, reference_store)


@pytest.fixture
def dask_cluster(tmp_path):
    """A real `dask scheduler` and two `dask worker` processes on loopback."""
    scheduler_file = tmp_path / "scheduler.json"
    dask = (
        shutil.which("dask", path=os.path.dirname(sys.executable))
        or shutil.which("dask")
        or pytest.skip("the dask command line is not installed")
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [
                dask,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    ]
    try:
        assert _wait_for(scheduler_file.exists, timeout=60), "scheduler did not start"
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [
                        dask,
                        "worker",
                        "--scheduler-file",
                        str(scheduler_file),
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            )
        import json

        address = json.loads(scheduler_file.read_text())["address"]
        from dask.distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_extraction_through_a_real_dask_scheduler_and_two_workers(
    tmp_path, dask_cluster, reference_store, small_real_folder, stores_equal
):
    url = str(tmp_path / "cluster.zarr")
    result = subprocess.run(
        comode_command(*extract_folder_args(small_real_folder, url, "--scheduler", dask_cluster, "--no-progress")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"dask scheduler {dask_cluster} (2 workers)" in result.stderr
    stores_equal(url, reference_store)


def test_closing_after_distributeds_status_race_is_a_warning_not_a_traceback(caplog):
    """distributed's LocalCluster.close() can raise KeyError from its worker-status watcher
    after a worker was killed during the run (seen in CI, test_kill_anywhere): the finished
    run must not end in a traceback.  Other errors still propagate."""
    from comode.extract.executors import DaskExecutor

    class Closing:
        def __init__(self, error):
            self.error = error

        def close(self):
            raise self.error

    executor = DaskExecutor.__new__(DaskExecutor)  # no cluster started: only close() is under test
    executor.client = Closing(None)
    executor.client.close = lambda: None
    executor._cluster = Closing(KeyError("tcp://127.0.0.1:40661"))
    with caplog.at_level("WARNING"):
        executor.close()
    assert "reported an error while closing" in caplog.text
    executor._cluster = Closing(RuntimeError("something else"))
    with pytest.raises(RuntimeError):
        executor.close()


def test_dask_tasks_are_submitted_a_window_at_a_time():
    """240k videos must not be 240k futures at once: the executor pulls items lazily and
    keeps at most its window of tasks on the scheduler, whatever the number of items."""
    import operator

    pulled = []

    def items():
        for number in range(100):
            pulled.append(number)
            yield number

    executor = DaskExecutor(workers=2)
    try:
        window, most_held, first_pulled = executor.window(), 0, None
        results = {}
        for item, result in executor.map_unordered(operator.neg, items()):
            first_pulled = len(pulled) if first_pulled is None else first_pulled
            most_held = max(most_held, len(executor.client.futures))
            results[item] = result
    finally:
        executor.close()
    assert results == {number: -number for number in range(100)}
    assert first_pulled <= window + 1 and most_held <= window + 1, (first_pulled, most_held, window)


def test_the_summary_names_a_few_failures_and_counts_the_rest():
    """A Kinetics-size run may fail thousands of videos: the summary stays a screen long."""
    from rich.console import Console

    from comode.extract.pipeline import ExtractionSummary
    from comode.extract.run_report import SHOWN_FAILURES, print_summary

    summary = ExtractionSummary(store="s.zarr", executor="test", total=240_000)
    summary.failures.extend((f"video{n:03d}", "not a readable video") for n in range(SHOWN_FAILURES + 5))
    console = Console(record=True, width=200)
    print_summary(console, summary)
    text = console.export_text()
    assert f"video{SHOWN_FAILURES - 1:03d}" in text and f"video{SHOWN_FAILURES:03d}" not in text
    assert "... and 5 more" in text


def test_a_crashed_tasks_failure_is_written_with_the_runs_storage_options(tmp_path, monkeypatch):
    """The client records a task that died (worker killed) itself: through the same fsspec
    options as the run's tasks (endpoint, credentials), not the defaults."""
    import comode.store.writer as writer
    from comode.extract.datasets import DatasetIndex, VideoItem

    class CrashingExecutor:
        description = "every task crashes"

        def map_unordered(self, fn, items, *args):
            for item in items:
                yield item, RuntimeError("worker died")

    item = VideoItem("v.mkv", tmp_path / "v.mkv", 0, "a", source="v.mkv")
    dataset = DatasetIndex("folder", tmp_path, ("a",), (), (item,))
    url, options = f"file://{tmp_path / 's.zarr'}", {"auto_mkdir": True}
    used, real_write_group = [], writer._write_group

    def spy(store, *args, **kwargs):
        used.append(store)
        return real_write_group(store, *args, **kwargs)

    monkeypatch.setattr(writer, "_write_group", spy)
    summary = run_extraction(dataset, url, ExtractSettings(), CrashingExecutor(), storage_options=options)
    assert summary.failures == [("v.mkv", "task crashed: RuntimeError: worker died")]
    assert used == [writer.WritableStore(url, options)]
    assert open_store(url, storage_options=options).video_attrs()["v.mkv"]["status"] == "failed"
