"""The store index on real stores: kills at any moment, writers at once, stale and missing indexes.

Writers are real processes (the real group writer, or ``comode extract`` on real clips)
killed with SIGKILL; the truth they are checked against is what every group's own
``zarr.json`` says, read file by file.
"""

from __future__ import annotations

import logging
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from comode.store import open_store
from comode.store.index import consolidate, list_videos, read_index, reindex
from comode.store.index.files import index_files
from comode.store.index.state import EMPTY_WRITE
from comode.store.schema import load_schema
from comode.store.validate import validate_store
from tests.commands import comode_command, extract_folder_args

# Writes small synthetic groups for ever: six videos, each rewritten again and again (a redo
# of a complete group), every third write a failure record.  argv: store, seed.
_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from comode.store import VideoArrays, create_or_open_root, write_failure, write_video
    from comode.store.writer import open_root_for_writing

    url, seed = sys.argv[1], int(sys.argv[2])
    extraction = {"codec": "mpeg2video", "gop": 12, "width": 80, "height": 64, "rgb_codec": "mpeg2video",
                  "rgb_width": 20, "rgb_height": 16, "mv_cell": 16, "mv_units_per_pixel": 4,
                  "mv_sign": "dst_minus_src", "tools": {}}
    create_or_open_root(url, root_attrs={"schema": "comode.store/1", "schema_minor": 3, "extraction": extraction,
                                         "dataset": {"name": "folder", "classes": [], "split_names": []}})
    rng = np.random.default_rng(seed)
    t = 24
    stream = rng.integers(1, 255, 3000, dtype=np.uint8)
    arrays = VideoArrays(
        frame_types=np.frombuffer((b"I" + b"P" * 11) * 2, np.uint8).copy(),
        iframes=rng.integers(0, 255, (2, 16, 20, 3), dtype=np.uint8),
        iframe_index=np.array([0, 12], np.int32),
        mvs=rng.integers(-8, 8, (t, 2, 4, 5), dtype=np.int16),
        rgb_stream=stream, rgb_stream_offsets=np.linspace(0, stream.size, t + 1).astype(np.int64))
    store = open_root_for_writing(url)
    for n in range(10**9):
        video = f"v{rng.integers(6)}"
        attrs = {"source": f"{video}.mkv", "label": -1, "splits": {}, "frames": t, "width": 80, "height": 64,
                 "rgb_codec": "mpeg2video", "rgb_width": 20, "rgb_height": 16}
        if n % 3 == 2:
            write_failure(store, video, attrs, f"failure {n}")
        else:
            write_video(store, video, attrs, arrays)
        print(n, flush=True)
""")


def _groups(url: str) -> dict:
    """What each group's own zarr.json says now (the truth), by video id."""
    files = index_files(url)
    return {
        video: marker
        for video, marker in files.read_markers(sorted(files.video_names() or ())).items()
        if marker is not None
    }


def _assert_index_never_lies(url: str) -> None:
    """No video the index calls settled differs from its group, and no listed video is
    complete unless its group says so (same write)."""
    truth = _groups(url)
    read = read_index(index_files(url))
    assert read is not None
    for video, _writes in read.state.videos.items():
        settled, token, live = read.state.settled(video)
        if settled and live is not None:
            assert video in truth and truth[video].write == token, (video, token, truth.get(video))
            assert live.attrs == truth[video].attrs, video
    listing = list_videos(url, scan=lambda: pytest.fail("an index that parses needs no scan"))
    for video, attrs in listing.videos.items():
        if attrs["status"] == "complete":
            assert truth[video].attrs["status"] == "complete", video


def _start_writers(url: str, count: int) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, url, str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for seed in range(count)
    ]


def _kill(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.send_signal(signal.SIGKILL)
    for process in processes:
        process.wait()
        assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]


def _wait_for_writes(processes: list[subprocess.Popen], writes: int) -> None:
    for process in processes:
        for _ in range(writes):
            line = process.stdout.readline()
            assert line, f"writer stopped: {process.stderr.read()[-2000:]}"


@pytest.mark.parametrize("writers", [1, 2], ids=["one writer", "two writers at once"])
def test_a_kill_at_any_moment_leaves_an_index_that_never_claims_an_incomplete_video(tmp_path, writers):
    """Writers rewrite the same six videos (several at once: the same video from two
    processes) and are SIGKILLed at random moments, four times; after each kill the index
    (snapshot + journals, and the reader's listing) agrees with every group it vouches for.
    A consolidation after the kills then settles every video (the writers are dead) and
    equals a rebuild from the groups."""
    url = str(tmp_path / "s.zarr")
    rng = random.Random(16)
    for round_ in range(4):
        processes = _start_writers(url, writers)
        _wait_for_writes(processes, 2)  # the store exists and some groups are complete
        time.sleep(rng.uniform(0.0, 0.3))  # then a kill at a moment nobody chose
        _kill(processes)
        _assert_index_never_lies(url)
        if round_ % 2:
            consolidate(url, scan=lambda: pytest.fail("a store with an index is not scanned"))
            _assert_index_never_lies(url)
    merged = consolidate(url, scan=lambda: pytest.fail("a store with an index is not scanned"))
    assert merged.unsettled == 0  # every writer is dead: every video settled by its group
    truth = _groups(url)
    listed = list_videos(url, scan=lambda: pytest.fail("not scanned")).videos
    assert {video: attrs["status"] for video, attrs in listed.items()} == {
        video: marker.attrs["status"] for video, marker in truth.items() if marker.write != EMPTY_WRITE
    }
    rebuilt = reindex(url, scan=open_store(url).scan_groups)
    assert rebuilt.listing.videos == merged.listing.videos
    assert not index_files(url).claims()  # claims of the dead writers are gone


def test_two_extraction_runs_into_one_store_leave_a_correct_index(tmp_path, small_real_folder, stores_equal):
    """Two `comode extract` processes on the same clips and store at the same time: every
    video is written once, the other run counts it as complete, and the index matches the
    groups (and an uninterrupted run's store)."""
    url = str(tmp_path / "both.zarr")
    command = comode_command(*extract_folder_args(small_real_folder, url, "--workers", "0", "--no-progress"))
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, outputs):
        assert run.returncode == 0, err[-3000:]
    report = validate_store(url)
    assert report.ok, report.problems
    assert report.by_status == {"complete": 3} and report.index.startswith("matches the groups"), report.index
    listing = list_videos(url, scan=lambda: pytest.fail("not scanned"))
    assert sorted(listing.videos) == sorted(_groups(url)) and listing.source == "index"
    reference = str(tmp_path / "one.zarr")
    alone = subprocess.run(
        [*command[:-4], reference, "--workers", "0", "--no-progress"], capture_output=True, text=True, timeout=300
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    stores_equal(url, reference)


def _store_with_videos(tmp_path: Path, count: int = 3) -> str:
    url = str(tmp_path / "s.zarr")
    subprocess.run(
        [
            sys.executable,
            "-c",
            _WRITER.replace("range(10**9)", f"range({count})")
            .replace("rng.integers(6)", "n")
            .replace("n % 3 == 2", "False"),
            url,
            "0",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return url


def test_a_stale_index_is_detected_said_and_read_around(tmp_path, caplog):
    """A group copied in by hand and one removed by hand: readers warn and list what the
    groups say; `store validate` names both; `store reindex` makes the index current."""
    url = _store_with_videos(tmp_path)
    consolidate(url, scan=lambda: pytest.fail("not scanned"))
    videos = Path(url) / "videos"
    shutil.copytree(videos / "v0", videos / "copied")  # same write id, a video the index never saw
    shutil.rmtree(videos / "v1")
    with caplog.at_level(logging.WARNING, logger="comode.store.index"):
        ids = open_store(url).video_ids()
    assert ids == ["copied", "v0", "v2"]
    assert (
        "index is stale" in caplog.text
        and "1 group(s) not in it" in caplog.text
        and "1 indexed group(s) gone" in caplog.text
    )

    report = validate_store(url)
    assert not report.ok
    assert any("videos/copied: not in the index" in problem for problem in report.problems), report.problems
    assert any("videos/v1: in the index as 'complete', but there is no group" in p for p in report.problems)
    result = subprocess.run(comode_command("store", "reindex", url), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "3 videos indexed from 3 groups" in result.stdout
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="comode.store.index"):
        assert open_store(url).video_ids() == ["copied", "v0", "v2"]
    assert not caplog.text
    assert validate_store(url).ok


def test_a_store_without_an_index_or_with_a_damaged_one_is_scanned_with_a_warning(tmp_path, caplog):
    url = _store_with_videos(tmp_path)
    expected = open_store(url).video_ids()
    shutil.rmtree(Path(url) / "index")  # e.g. a store copied without it, or from before the index
    with caplog.at_level(logging.WARNING, logger="comode.store.index"):
        listing = open_store(url).read_listing()
        again = open_store(url).read_listing()  # a run opens its store many times: one warning
    assert listing.source == again.source == "scan" and sorted(listing.videos) == expected
    assert "it has no index" in caplog.text and "comode store reindex" in caplog.text
    assert caplog.text.count("it has no index") == 1
    reindex(url, scan=open_store(url).scan_groups)
    (Path(url) / "index" / "snapshot.json").write_text("{not json")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="comode.store.index"):
        assert open_store(url).read_listing().source == "scan"
    assert "its index is damaged" in caplog.text
    report = validate_store(url)
    assert not report.ok and any("index: damaged" in problem for problem in report.problems)


def test_opening_a_store_reads_no_group_when_the_index_is_current(tmp_path, monkeypatch):
    """O(1) reads: listing a consolidated store reads no group's zarr.json (the index's
    read_markers is what reads groups; a scan would read them all through zarr)."""
    import comode.store.index.files as files
    import comode.store.reader as reader

    url = _store_with_videos(tmp_path, count=5)
    consolidate(url, scan=lambda: pytest.fail("not scanned"))
    asked = []
    real_read_markers = files.LocalIndexFiles.read_markers

    def spying_read_markers(self, videos):
        videos = list(videos)
        asked.extend(videos)
        return real_read_markers(self, videos)

    monkeypatch.setattr(files.LocalIndexFiles, "read_markers", spying_read_markers)
    monkeypatch.setattr(reader, "scan_video_groups", lambda videos: pytest.fail("scanned"))
    store = open_store(url)
    assert store.video_ids() == [f"v{n}" for n in range(5)]
    assert asked == []
    assert store.read_listing().note == "index (snapshot + 0 journal(s) read)"


def _plain_listing(url: str) -> dict[str, str]:
    """The README's recipe with json alone (what another project would write): status by
    video id of the settled videos; unsettled ones would be read from their groups."""
    import json

    folder = Path(url) / "index"
    snapshot = json.loads((folder / "snapshot.json").read_text()) if (folder / "snapshot.json").exists() else {}
    writes = {video: {entry["write"]: {"attrs": entry["attrs"]}} for video, entry in snapshot.get("videos", {}).items()}
    for video, records in snapshot.get("writes", {}).items():
        writes.setdefault(video, {}).update(records)
    for journal in sorted(folder.glob("journal-*.jsonl")):
        data = journal.read_bytes()[snapshot.get("journals", {}).get(journal.name, 0) :]
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            entry = json.loads(line)
            record = writes.setdefault(entry["video"], {}).setdefault(entry["write"], {})
            if entry["op"] == "start":
                record.setdefault("writer", "?")
                if entry["replaces"] and entry["replaces"] != entry["write"]:
                    writes[entry["video"]].setdefault(entry["replaces"], {})["replaced"] = True
            else:
                record.pop("writer", None)
                record["attrs"] = entry["attrs"]
    listing = {}
    for video, records in writes.items():
        live = [r for r in records.values() if "attrs" in r and not r.get("replaced") and "writer" not in r]
        if not any("writer" in r and "attrs" not in r for r in records.values()) and len(live) == 1:
            listing[video] = live[0]["attrs"]["status"]
    return listing


def test_the_index_files_follow_their_schema_and_plain_json_reads_them(tmp_path):
    """index.schema.json describes every journal line and the snapshot; a reader
    with nothing but json (the README's recipe) lists what comode lists."""
    import json

    import jsonschema

    url = _store_with_videos(tmp_path, count=4)
    folder = Path(url) / "index"
    schema = load_schema("index")
    validator = jsonschema.Draft202012Validator(schema)
    lines = [
        json.loads(line) for journal in folder.glob("journal-*.jsonl") for line in journal.read_text().splitlines()
    ]
    assert {line["op"] for line in lines} == {"start", "done"}
    for line in lines:
        validator.validate(line)
    expected = {video: attrs["status"] for video, attrs in open_store(url).video_attrs().items()}
    assert _plain_listing(url) == expected == {f"v{n}": "complete" for n in range(4)}
    consolidate(url, scan=lambda: pytest.fail("not scanned"))
    validator.validate(json.loads((folder / "snapshot.json").read_text()))
    assert _plain_listing(url) == expected
