"""The Makefile passes paths with spaces as one argument each (issue 24: `make extract
ROOT="a path/with space"` split ROOT in two)."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from tests.commands import REPO


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("target", "flag", "variable", "value"),
    [
        ("extract", "--root", "ROOT", "/data/UCF 101/videos"),
        ("extract", "--out", "STORE", "data/my store.zarr"),
        ("demo-store", "--root", "ROOT", "../shared data/real"),
        ("sample", "--out", "OUT", "data/sample set"),
        ("info", "info", "STORE", "data/my store.zarr"),
        ("validate", "validate", "STORE", "data/my store.zarr"),
    ],
)
def test_make_passes_paths_with_spaces_whole(tmp_path, target, flag, variable, value):
    # A dry run (-n) with a venv that does not exist: make prints the commands it would run.
    result = subprocess.run(
        ["make", "-n", "-C", str(REPO), target, f"VENV={tmp_path}/venv", f"{variable}={value}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if f"{tmp_path}/venv/bin/comode" in line]
    argv = shlex.split(line.replace("@if", "if"))  # the sample target is a shell `if`
    assert value in argv and argv[argv.index(value) - 1] == flag
