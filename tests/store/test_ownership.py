"""Leftovers of dead processes are removed only when their maker is known dead: this host, pid gone."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from comode.extract.video import WORKDIR_PREFIX, sweep_stale_workdirs
from comode.store.ownership import made_by_dead_local_process, process_tag


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # its pid now belongs to no process
    return process.pid


def test_only_a_dead_process_of_this_host_counts_as_dead():
    dead = _dead_pid()
    assert made_by_dead_local_process(process_tag(dead))
    assert not made_by_dead_local_process(process_tag())  # this process
    assert not made_by_dead_local_process(process_tag(1))  # alive (init), not ours to signal
    assert not made_by_dead_local_process(f"other-host.example_{dead}")  # a pid there says nothing here
    assert not made_by_dead_local_process(str(dead))  # an older version's bare pid: kept
    assert not made_by_dead_local_process("not-a-tag")


def test_the_workdir_sweep_removes_dead_local_folders_only():
    dead = _dead_pid()
    base = Path(tempfile.gettempdir())
    mine = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{process_tag(dead)}-", dir=base))
    remote = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}other-host.example_{dead}-", dir=base))
    live = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{process_tag(os.getpid())}-", dir=base))
    try:
        sweep_stale_workdirs.cache_clear()  # it runs once per process
        assert sweep_stale_workdirs() >= 1
        assert not mine.exists() and remote.exists() and live.exists()
    finally:
        for folder in (mine, remote, live):
            if folder.exists():
                folder.rmdir()
