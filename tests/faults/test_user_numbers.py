"""Numbers a user types that pass a type check but crash or mislead later (issue 25 #10, Low).

Each is refused with one line before anything is started or allocated.
"""

from __future__ import annotations

import subprocess

import pytest

from comode.cores import worker_limit
from comode.data.loader import RunLoader
from comode.train.config import ConfigError, load_config
from tests.commands import comode_command


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.momentum=.nan", r"optim.momentum must be a finite number, got nan"),
        ("loss.temperature=.inf", r"loss.temperature must be a finite number, got inf"),
        ("optim.momentum=1.5", r"optim.momentum must be in \[0, 1\)"),
        ("data.size=100000", r"data.size must be in \[1, 1024\] pixels"),
        ("data.mv_size=100000", r"data.mv_size must be in \[1, 1024\] or null"),
        ("data.clip_frames=20000", r"data.clip_frames must be in \[1, 256\]"),
        ("seed=99999999999999999999", r"seed must be in \[0, 2\*\*63\)"),
        ("seed=-1", r"seed must be in \[0, 2\*\*63\)"),
    ],
)
def test_a_config_value_that_would_crash_or_mislead_is_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_train_pretrain_reports_a_non_finite_value_in_one_line_with_exit_2(tmp_path):
    result = subprocess.run(
        comode_command(
            "train", "pretrain", "--store", tmp_path / "none.zarr", "--out", tmp_path / "run", "optim.momentum=.nan"
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("optim.momentum must be a finite number, got nan")
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_thousands_of_loader_workers_are_refused_before_one_starts():
    limit = worker_limit()
    with pytest.raises(
        ValueError,
        match=rf"data.workers=10000 is more worker processes than this machine can use .*: use at most {limit}$",
    ):
        RunLoader(list(range(8)), global_batch=2, workers=10000, seed=0)
    RunLoader(list(range(8)), global_batch=2, workers=limit, seed=0)  # the limit itself is fine (nothing starts yet)


def test_extract_refuses_thousands_of_workers_in_one_line(tmp_path):
    (tmp_path / "videos").mkdir()
    result = subprocess.run(
        comode_command("extract", "--root", tmp_path / "videos", "--out", tmp_path / "s.zarr", "--workers", "10000"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "--workers=10000 is more worker processes than this machine can use" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "s.zarr").exists()
