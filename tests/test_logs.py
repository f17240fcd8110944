"""Logs a batch job can read: plain progress lines while a run goes on, a log file in the run
folder and beside an extraction, --log-level, and Dask workers' warnings in the same log."""

from __future__ import annotations

import logging
import os
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from comode import logs
from comode.progress import Progress
from tests.commands import comode_command, extract_folder_args, pretrain_tiny_args

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    from tests.videos import translating_frames, write_video

    root = tmp_path_factory.mktemp("videos")
    for number, (name, (dx, dy)) in enumerate(
        {"right/a.avi": (2, 0), "right/b.avi": (3, 0), "down/c.avi": (0, 2), "down/d.avi": (0, 3)}.items()
    ):
        (root / name).parent.mkdir(exist_ok=True)
        write_video(root / name, translating_frames(frames=80, width=170, height=128, dx=dx, dy=dy, seed=number))
    return root


def _batch(*args, log: Path, **env) -> subprocess.Popen:
    """``comode ARGS > log 2>&1``: no terminal anywhere."""
    with open(log, "w") as out:
        return subprocess.Popen(
            comode_command(*args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, **env},
        )


@pytest.mark.slow
def test_a_batch_run_prints_progress_lines_while_it_runs_and_leaves_its_log(videos, tmp_path):
    store = tmp_path / "s.zarr"
    extract = _batch(*extract_folder_args(videos, store, "--workers", "1"), log=tmp_path / "extract.txt")
    assert extract.wait(timeout=300) == 0, (tmp_path / "extract.txt").read_text()
    extraction_log = Path(f"{store}.log").read_text()  # beside the store
    assert "extract: 0/4 videos" in extraction_log and "extract: 4/4 videos (100.0%)" in extraction_log
    assert "distributed." not in extraction_log  # other libraries: warnings and errors only
    assert "extract: 4/4 videos" in (tmp_path / "extract.txt").read_text()

    run, log = tmp_path / "run", tmp_path / "log.txt"
    training = _batch(*pretrain_tiny_args(store, run, "optim.epochs=3"), log=log, COMODE_PROGRESS_SECONDS="0")
    seen_while_running = False
    deadline = time.monotonic() + 300
    while training.poll() is None and time.monotonic() < deadline:
        if "pretrain: 1/6 steps" in log.read_text():
            seen_while_running = training.poll() is None
            break
        time.sleep(0.05)
    assert training.wait(timeout=300) == 0, log.read_text()
    assert seen_while_running  # the first step's line was in the file before the run ended
    text = log.read_text()
    lines = [line for line in text.splitlines() if "comode.progress: pretrain: " in line]
    assert [line.split("pretrain: ")[1].split("/")[0] for line in lines] == ["0", "1", "2", "3", "4", "5", "6"]
    assert (
        "loss " in lines[2] and "clips/s" in lines[2] and "ETA " in lines[2] and "\x1b[" not in text
    )  # no colour codes
    run_log = (run / "train.log").read_text()  # the run folder keeps the same lines
    assert "pretrain: 6/6 steps (100.0%)" in run_log and "-- done" in run_log


def test_log_level_filters_comode_records_and_a_bad_level_is_refused(videos, tmp_path):
    one_video = extract_folder_args(videos, tmp_path / "s.zarr", "--workers", "0", "--limit", "1")
    quiet = _batch("--log-level", "WARNING", *one_video, log=tmp_path / "quiet.txt")
    assert quiet.wait(timeout=300) == 0
    assert "comode.progress" not in (tmp_path / "quiet.txt").read_text()
    assert "extract: 1/1 videos" not in (tmp_path / "s.zarr.log").read_text()
    bad = _batch(*extract_folder_args(videos, tmp_path / "t.zarr", "--log-level", "LOUD"), log=tmp_path / "bad.txt")
    assert bad.wait(timeout=60) == 2 and "LOUD" in (tmp_path / "bad.txt").read_text()


@pytest.mark.slow
def test_dask_workers_warnings_reach_the_clients_log(tmp_path):
    """Real Dask workers on loopback: a comode record and a Python warning raised in a task
    end up in the client's log file."""
    from comode.extract.executors import DaskExecutor

    logs.setup("INFO")
    executor = DaskExecutor(workers=1)
    try:
        with logs.to_file(tmp_path / "run.log"):
            results = dict(
                executor.map_unordered(logging.getLogger("comode.worker-test").warning, ["a record from a worker"])
            )
            results.update(executor.map_unordered(warnings.warn, ["a warning from a worker"]))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "a warning from a worker" not in (tmp_path / "run.log").read_text():
                time.sleep(0.1)  # forwarded records arrive asynchronously
    finally:
        executor.close()
    assert all(result is None for result in results.values())
    text = (tmp_path / "run.log").read_text()
    assert "comode.worker-test: a record from a worker" in text
    assert "py.warnings" in text and "UserWarning: a warning from a worker" in text


def test_progress_lines_say_count_note_and_eta(tmp_path, monkeypatch):
    monkeypatch.setenv("COMODE_PROGRESS_SECONDS", "3600")  # only the first and the last line
    logs.setup("INFO")
    with logs.to_file(tmp_path / "p.log"):
        with Progress("work", total=4, unit="items", enabled=False) as bar:
            bar.advance(1, note="loss 1.0")
            assert bar.line().startswith("work: 1/4 items (25.0%), loss 1.0, elapsed 0:00:00, ETA 0:00:0")
            bar.set(4)
    lines = [line.split("comode.progress: ")[1] for line in (tmp_path / "p.log").read_text().splitlines()]
    assert lines == [
        "work: 0/4 items (0.0%), elapsed 0:00:00",
        "work: 4/4 items (100.0%), loss 1.0, elapsed 0:00:00 -- done",
    ]
