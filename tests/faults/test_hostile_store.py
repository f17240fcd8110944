"""A store from elsewhere (copied, shared, downloaded) must not hurt its user (issue 25).

Real stores made by the package's own extraction, then edited the way a hostile or careless
source would: real symbolic links, real FIFOs, a stray ``.DS_Store``, journal lines naming
ids that are no ids.  Nothing is written or deleted outside the store, nothing hangs, and
``store validate`` names every such entry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from comode.extract.datasets import load_dataset
from comode.extract.executors import SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import open_store
from comode.store.containment import UnsafeStoreEntry
from comode.store.index import reindex
from comode.store.validate import validate_store
from tests.commands import comode_command

VIDEO = "left__video01.mkv"  # one of the two videos of the store below


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _extract(folder: Path, store: Path):
    return run_extraction(load_dataset("folder", folder), str(store), ExtractSettings(), SequentialExecutor())


def _cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """``comode ARGS`` as a real process; a hang fails the test instead of stopping the suite."""
    return subprocess.run(comode_command(*args), capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ writing never leaves the store


def test_a_group_linked_to_a_folder_outside_is_never_written_or_deleted_through(two_video_store, store, tmp_path):
    """The issue's reproduction: ``videos/<id>`` -> a folder of the user's holding a zarr.json,
    ``store reindex``, then extraction into the store."""
    outside = tmp_path / "users_folder"
    outside.mkdir()
    (outside / "zarr.json").write_text('{"precious": true}')
    (outside / "notes.txt").write_text("mine")
    before = _files(outside)
    shutil.rmtree(store / "videos" / VIDEO)
    os.symlink(outside, store / "videos" / VIDEO)

    report = validate_store(str(store))
    assert not report.ok
    assert any(p.startswith(f"videos/{VIDEO}: refused: a symbolic link leading outside") for p in report.problems)
    reindex(str(store), scan=open_store(str(store)).scan_groups)
    summary = _extract(two_video_store[0], store)

    assert summary.ok and summary.completed == 1  # the video is redone as a real group
    assert _files(outside) == before  # not one byte written, replaced or removed there
    assert (store / "videos" / VIDEO).is_dir() and not (store / "videos" / VIDEO).is_symlink()
    assert validate_store(str(store)).ok


def test_a_linked_videos_or_index_folder_is_refused_and_its_target_untouched(two_video_store, store, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "snapshot.json").write_text("precious")
    shutil.rmtree(store / "index")
    os.symlink(outside, store / "index")
    result = _cli("store", "reindex", store)
    assert result.returncode == 2, result.stderr
    assert "index is a symbolic link, not a folder; comode never writes through one" in result.stderr
    assert "Traceback" not in result.stderr
    assert _files(outside) == {"snapshot.json": b"precious"}

    # videos/ itself a link: the writer refuses before touching anything there.
    os.unlink(store / "index")
    shutil.copytree(two_video_store[1] / "index", store / "index")
    moved = tmp_path / "moved_videos"
    (store / "videos").rename(moved)
    os.symlink(moved, store / "videos")
    shutil.rmtree(moved / VIDEO)
    before = _files(moved)
    with pytest.raises(UnsafeStoreEntry, match="videos is a symbolic link, not a folder"):
        _extract(two_video_store[0], store)
    assert _files(moved) == before


# ------------------------------------------------------------------ reading: no hang, nothing outside


def test_a_fifo_as_a_groups_metadata_hangs_no_reader(store):
    """A FIFO named zarr.json: ``store info``, ``validate`` and the training listing return."""
    (store / "videos" / VIDEO / "zarr.json").unlink()
    os.mkfifo(store / "videos" / VIDEO / "zarr.json")
    validate = _cli("store", "validate", store)
    assert validate.returncode == 1
    assert f"videos/{VIDEO}: refused: zarr.json is a FIFO, not a regular file" in validate.stdout + validate.stderr
    info = _cli("store", "info", store)
    assert info.returncode == 0, info.stderr
    reindex(str(store), scan=open_store(str(store)).scan_groups)  # now the index records it unreadable
    with pytest.warns(UserWarning, match=rf"unreadable metadata left out \({VIDEO}\)"):
        assert open_store(str(store)).video_ids() == ["right__video00.mkv"]


def test_links_to_a_device_or_outside_and_fifos_inside_a_group_are_refused_and_reported(store, tmp_path):
    chunk = store / "videos" / VIDEO / "mvs" / "c" / "0" / "0" / "0" / "0"
    chunk.unlink()
    os.symlink("/dev/zero", chunk)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not yours")
    os.symlink(secret, store / "videos" / "right__video00.mkv" / "iframes" / "stolen")
    os.mkfifo(store / "videos" / "right__video00.mkv" / "pipe")

    problems = validate_store(str(store), read_data=True).problems
    assert f"videos/{VIDEO}/mvs/c/0/0/0/0: a symbolic link leading outside the store (to '/dev/zero')" in problems
    assert any(
        p.startswith("videos/right__video00.mkv/iframes/stolen: a symbolic link leading outside") for p in problems
    )
    assert "videos/right__video00.mkv/pipe: a FIFO, not a regular file" in problems
    opened = open_store(str(store))
    for video in (VIDEO, "right__video00.mkv"):  # training's reader skips and counts such a video
        with pytest.raises(UnsafeStoreEntry, match=f"video '{video}' refused"):
            opened.video(video)


def test_a_stray_file_in_videos_is_no_video(two_video_store, store):
    """macOS's ``.DS_Store`` (and any plain file) beside the groups: info, listing, extraction go on."""
    (store / "videos" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (store / "videos" / "notes").write_text("a file with a safe id's name")
    assert open_store(str(store)).video_ids() == [VIDEO, "right__video00.mkv"]
    info = _cli("store", "info", store)
    assert info.returncode == 0 and "Traceback" not in info.stderr, info.stderr
    summary = _extract(two_video_store[0], store)
    assert summary.ok and summary.skipped_complete == 2
    assert validate_store(str(store)).ok


# ------------------------------------------------------------------ ids from the index


def _append_journal_lines(store: Path, *entries: dict) -> None:
    (journal,) = sorted((store / "index").glob("journal-*.jsonl"))[:1]
    with journal.open("a") as handle:
        for entry in entries:
            handle.write(json.dumps(entry) + "\n")


def test_journal_lines_with_ids_that_are_no_ids_are_left_out_and_reported(store, tmp_path):
    """``"video": 123`` used to stop info, validate, train, extract and reindex with a
    traceback; ``"../../x"`` made ``store info`` read a group outside the store; a NUL gave
    "embedded null byte" while validate said valid."""
    outside = tmp_path / "x"  # what "../../x" reaches from videos/
    shutil.copytree(store / "videos" / VIDEO, outside)
    (outside / "zarr.json").write_text("{ not json")  # read from there, it would be reported unreadable
    hostile = [123, "../../x", "a\x00b", None]
    _append_journal_lines(
        store, *({"op": "start", "video": video, "write": "w1", "replaces": None} for video in hostile)
    )
    info = _cli("store", "info", store)
    assert info.returncode == 0 and "Traceback" not in info.stderr, info.stderr
    assert "4 index entr(y/ies) left out, e.g. journal of" in info.stderr
    opened = open_store(str(store))
    assert opened.video_ids() == [VIDEO, "right__video00.mkv"]
    assert not opened.scan_videos()[1]  # nothing read from ../../x

    problems = validate_store(str(store)).problems
    for video in hostile:
        assert any(p.endswith(f"video id {video!r} cannot name a group") for p in problems), problems
    result = _cli("store", "reindex", store)
    assert result.returncode == 0, result.stderr
    assert validate_store(str(store)).ok  # the new snapshot holds the journals past those lines


@pytest.mark.parametrize("video_id", ["../../x", "a/b", "x\x00y", 7])
def test_the_reader_refuses_an_unsafe_id_before_any_path_is_made(store, video_id):
    with pytest.raises(ValueError, match="unsafe video id"):
        open_store(str(store)).video(video_id)


# ------------------------------------------------------------------ claims from other clocks


def test_a_claim_from_a_host_whose_clock_runs_ahead_does_not_stall_extraction(two_video_store, store):
    """The claim's ``since`` an hour in the future: it used to look fresh for ever (two 600 s
    waits, then a ClaimTimeout traceback, and the claim stayed for every rerun)."""
    shutil.rmtree(store / "videos" / VIDEO)  # to be redone: the write needs the video's claim
    claims = store / "index" / "claims"
    claims.mkdir(exist_ok=True)
    future = {"writer": "clock-ahead-host_4242", "since": time.time() + 3600, "claim": "0" * 32}
    (claims / f"{VIDEO}.json").write_text(json.dumps(future))
    result = _cli(
        "extract", "--dataset", "folder", "--root", two_video_store[0], "--out", store, "--workers", "0", timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (store / "videos" / VIDEO / "zarr.json").is_file()
    assert not (claims / f"{VIDEO}.json").exists()
    assert validate_store(str(store)).ok


# ------------------------------------------------------------------ attributes of the wrong type


def _set_attrs(store: Path, video: str, **changes) -> None:
    path = store / "videos" / video / "zarr.json"
    document = json.loads(path.read_text())
    document["attributes"].update(changes)
    path.write_text(json.dumps(document))


def test_videos_whose_attributes_have_the_wrong_type_are_left_out_not_a_crash(store):
    """``splits="1"`` and ``label=1e30`` gave tracebacks in training and evaluation."""
    _set_attrs(store, VIDEO, splits="1")
    _set_attrs(store, "right__video00.mkv", label=1e30)
    reindex(str(store), scan=open_store(str(store)).scan_groups)  # the index now carries them
    opened = open_store(str(store))
    with pytest.warns(UserWarning, match=r"2 video group\(s\) with unreadable metadata left out"):
        assert opened.video_ids(split="1") == []
    unreadable = opened.scan_videos()[1]
    assert unreadable[VIDEO].startswith("attributes of the wrong type: splits is '1', not a mapping")
    assert unreadable["right__video00.mkv"] == "attributes of the wrong type: label is 1e+30, not an integer"
    info = _cli("store", "info", store)
    assert info.returncode == 0 and "2 unreadable" in info.stdout, info.stdout + info.stderr
    assert not validate_store(str(store)).ok  # the schema check names both


# ------------------------------------------------------------------ a stream that is not what the store says


def test_a_stream_of_frames_larger_than_the_stores_rgb_size_is_refused_at_its_first_frame(store, larger_frames):
    """A valid MPEG-2 stream of larger frames placed in a 170x128 store used to decode in full."""
    larger_frames(store / "videos" / VIDEO, VIDEO)
    video = open_store(str(store)).video(VIDEO)
    with pytest.raises(ValueError, match=r"decodes to 640x480 frames, larger than the store's RGB size 170x128"):
        video.decode_frames([0, 1])


def test_the_rgb_codec_attribute_cannot_pick_another_decoder(store):
    _set_attrs(store, VIDEO, rgb_codec="h264")
    with pytest.raises(ValueError, match=r"rgb_codec 'h264' is not the stored stream's codec 'mpeg2video'"):
        open_store(str(store)).video(VIDEO).decode_frames([0])
