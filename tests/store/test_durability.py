"""The "complete" marker never reaches the disk before the data it vouches for.

A power cut cannot be simulated here without a block device we could cut off, so the test
checks the argument instead, on the real writer's system calls (traced by strace in a
real process): a file is on disk once it was fsynced, and a name once its directory was
fsynced after the rename.  So before the marker's rename, every data file must have been
fsynced (under its temporary name) and renamed, and every directory that got a new entry
fsynced after that; the marker itself is fsynced before its rename and its folder after.
docs/store.md, "Writing and durability", states the argument and what it costs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (Debian package strace)")

_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from comode.store import VideoArrays, create_or_open_root, write_video
    from comode.store.writer import open_root_for_writing

    url = sys.argv[1]
    create_or_open_root(url, root_attrs={"schema": "comode.store/1", "dataset": {}, "extraction": {}})
    rng = np.random.default_rng(0)
    t, k = 40, 4
    stream = rng.integers(1, 255, 5000, dtype=np.uint8)
    arrays = VideoArrays(
        frame_types=np.frombuffer((b"I" + b"P" * 11) * 3 + b"IPPP", np.uint8).copy(),
        iframes=rng.integers(0, 255, (k, 16, 20, 3), dtype=np.uint8),
        iframe_index=np.array([0, 12, 24, 36], np.int32),
        mvs=rng.integers(-8, 8, (t, 2, 4, 5), dtype=np.int16),
        rgb_stream=stream, rgb_stream_offsets=np.linspace(0, stream.size, t + 1).astype(np.int64))
    for _ in range(2):  # a first write, then a redo over a complete group
        write_video(open_root_for_writing(url), "v", {"source": "v.mkv", "label": -1, "splits": {}, "frames": t}, arrays)
""")

_CALL = re.compile(r"^\d+\s+(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>-?\d+)")


def _trace(tmp_path: Path) -> list[tuple[str, str, int]]:
    """(syscall, arguments, result) of the writer process, in order; ``-y`` shows each file
    descriptor with its path, e.g. ``fsync(3</x/zarr.json.1f.partial>)``."""
    log = tmp_path / "trace.txt"
    subprocess.run(
        [
            "strace",
            "-f",
            "-y",
            "-qq",
            "-e",
            "signal=none",
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat",
            "-o",
            str(log),
            sys.executable,
            "-c",
            _WRITER,
            str(tmp_path / "s.zarr"),
        ],
        check=True,
        timeout=300,
        env={**os.environ, "COMODE_FSYNC": "1"},
    )
    calls, unfinished = [], {}
    for line in log.read_text().splitlines():
        pid = line.split(" ", 1)[0]
        if line.endswith("<unfinished ...>"):  # a call another thread interrupted: joined below
            unfinished[pid] = line[: -len("<unfinished ...>")].rstrip()
            continue
        resumed = re.match(r"^\d+\s+<\.\.\. \w+ resumed>(.*)$", line)
        if resumed and pid in unfinished:
            line = unfinished.pop(pid) + resumed[1]
        match = _CALL.match(line)
        if match:
            calls.append((match["name"], match["args"], int(match["result"])))
    return calls


def _events(calls: list[tuple[str, str, int]], group: str) -> list[tuple[str, str]]:
    """The writer's durability events at or below ``group``'s parent: ("fsync", path) of a
    file or folder, ("rename", target) followed by ("renamed-from", source), ("unlink", path)."""
    events = []
    for name, args, result in calls:
        if result != 0:
            continue
        if name in ("fsync", "fdatasync"):
            events.append(("fsync", re.match(r"\d+<(.*)>", args)[1]))
        elif name.startswith("rename"):
            paths = re.findall(r'"([^"]*)"', args)
            events.append(("rename", paths[-1]))
            events.append(("renamed-from", paths[0]))
        elif name.startswith("unlink"):
            relative = re.findall(r'"([^"]*)"', args)[-1]
            folder = re.match(r"\d+<(.*?)>", args)
            events.append(
                ("unlink", relative if folder is None or relative.startswith("/") else f"{folder[1]}/{relative}")
            )
    parent = group.rsplit("/", 1)[0]
    return [(kind, path) for kind, path in events if path.startswith(parent)]


def test_every_data_file_and_folder_is_fsynced_before_the_complete_marker(tmp_path):
    group = str(tmp_path / "s.zarr" / "videos" / "v")
    events = _events(_trace(tmp_path), group)
    marker = f"{group}/zarr.json"
    marker_renames = [i for i, event in enumerate(events) if event == ("rename", marker)]
    # Each write renames the group's zarr.json twice: "writing" (with the data, in any order)
    # and "complete", last.
    assert len(marker_renames) == 4, events
    for write, complete_at in enumerate(marker_renames[1::2]):
        start = 0 if write == 0 else marker_renames[1] + 1
        before = events[start:complete_at]
        data_files = {path for kind, path in before if kind == "rename" and path != marker}
        assert len(data_files) == 12  # 6 arrays x (zarr.json + chunk or shard)
        sources = {path: before[i + 1][1] for i, (kind, path) in enumerate(before) if kind == "rename"}
        last_rename = max(i for i, (kind, _) in enumerate(before) if kind == "rename")
        synced_after_renames = {path for kind, path in before[last_rename:] if kind == "fsync"}
        for target in data_files:
            # its content under the temporary name before the rename
            assert ("fsync", sources[target]) in before, f"{target}: its content was never fsynced"
            assert before.index(("fsync", sources[target])) < before.index(("rename", target)), (
                f"{target} renamed into place before its content was fsynced"
            )
            # its name: every folder from the file's own up to the video group's parent
            folder = str(Path(target).parent)
            while len(folder) >= len(group):
                assert folder in synced_after_renames, f"{folder} not fsynced after {target} appeared"
                folder = str(Path(folder).parent)
        assert str(Path(group).parent) in synced_after_renames  # the group's own entry in videos/
        # the marker: its content before its rename, its folder after
        marker_source = events[complete_at + 1][1]
        assert ("fsync", marker_source) in events[start + last_rename : complete_at]
        assert ("fsync", group) in events[complete_at : complete_at + 4]
    # A redo removes the old marker first, and syncs that removal, before any data is removed.
    redo = events[marker_renames[1] + 1 : marker_renames[2]]
    unlinks = [i for i, event in enumerate(redo) if event[0] == "unlink"]
    assert redo[unlinks[0]] == ("unlink", marker) and len(unlinks) > 12
    assert ("fsync", group) in redo[unlinks[0] : unlinks[1]]


def test_fsync_can_be_turned_off_for_scratch_stores(tmp_path, monkeypatch):
    """COMODE_FSYNC=0 (a store on tmpfs, a benchmark): the same files, no fsync at all."""
    from comode.store.sinks import LocalSink

    monkeypatch.setenv("COMODE_FSYNC", "0")
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    sink = LocalSink(str(tmp_path))
    sink.put("videos/v", {"zarr.json": b"{}", "a/c/0": b"x"})
    sink.put_marker("videos/v", b"{}")
    assert calls == [] and (tmp_path / "videos/v/a/c/0").read_bytes() == b"x"
