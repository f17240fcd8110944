"""Containment: nothing from annotation files or file names writes outside the output store,
and the validator refuses attributes that break the schema with a precise message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import zarr

from comode.extract.datasets import load_dataset
from comode.extract.executors import SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import SchemaError, create_or_open_root, open_store, write_failure
from comode.store.validate import validate_store
from comode.store.writer import open_root_for_writing
from tests.videos import translating_frames, write_video

# Entries a hostile annotation file may hold (each must be refused, never followed).
HOSTILE_ENTRIES = [
    "../outside.avi",
    "../../outside.avi",
    "/etc/passwd",
    "a/../../outside.avi",
    "..\\outside.avi",
    "C:\\outside.avi",
    "ApplyEyeMakeup/../../outside.avi",
]


def _snapshot(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def _make_ucf101(tmp_path: Path) -> Path:
    """A UCF101 layout whose lists also point outside the root, with a real video waiting there."""
    root = tmp_path / "ucf"
    (root / "ApplyEyeMakeup").mkdir(parents=True)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    frames = translating_frames(frames=13, width=64, height=48, dx=1, dy=0)
    write_video(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi", frames)
    write_video(tmp_path / "outside.avi", frames)  # what a traversal would reach
    # Class names that look like paths: they are labels (attributes), never paths.
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 ../../../../tmp/evil_class\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n"
        + "".join(f"{e} 1\n" for e in HOSTILE_ENTRIES)
        + "evil\x00name.avi 1\n"
    )
    (lists / "testlist01.txt").write_text("../../outside.avi\n")
    return root


def test_hostile_annotation_entries_are_refused_and_nothing_is_written_outside_the_store(tmp_path):
    root = _make_ucf101(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    before = _snapshot(tmp_path)
    index = load_dataset("ucf101", root)
    refused = {entry for entry, reason in index.missing if reason == "outside dataset root"}
    assert set(HOSTILE_ENTRIES) <= refused and "evil\x00name.avi" in refused
    assert [v.source for v in index.videos] == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"]
    url = str(out / "store.zarr")
    summary = run_extraction(index, url, ExtractSettings(), SequentialExecutor())
    assert summary.ok and summary.completed == 1
    created = _snapshot(tmp_path) - before
    assert created and all(path.startswith("out/store.zarr") for path in created), sorted(created)
    assert not Path("/tmp/evil_class").exists()
    store = open_store(url)
    assert store.classes == ["ApplyEyeMakeup", "../../../../tmp/evil_class"]  # kept as a label, verbatim
    assert validate_store(url).ok


def test_hmdb51_and_kinetics_entries_cannot_escape_either(tmp_path):
    root = tmp_path / "data"
    (root / "brush_hair").mkdir(parents=True)
    write_video(root / "brush_hair" / "clip.avi", translating_frames(frames=5, width=64, height=48, dx=1, dy=0))
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text("clip.avi 1\n../../etc/passwd 1\n/abs.avi 2\nsub/x.avi 1\n")
    hmdb = load_dataset("hmdb51", root)
    assert {e for e, r in hmdb.missing if r == "outside dataset root"} == {"../../etc/passwd", "/abs.avi", "sub/x.avi"}
    (root / "k.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "brush,../../escape,0,10,train\nbrush,/abs,0,10,train\nbrush,clip,0,10,train\n"
    )
    kinetics = load_dataset("kinetics400", root)
    assert {e for e, r in kinetics.missing if r == "outside dataset root"} == {"../../escape", "/abs"}
    assert [v.source for v in kinetics.videos] == ["brush_hair/clip.avi"]


@pytest.mark.parametrize(
    "video_id",
    [
        "../escape",
        "../../escape",
        "/tmp/escape",
        "..",
        ".",
        "",
        ".hidden",
        "videos/../../escape",
        "a/b",
        "a\\..\\b",
        "C:escape",
        "x\x00y",
        "nul\x00",
        "ünïcode",
        "new\nline",
        "x" * 201,
    ],
)
def test_the_writer_refuses_unsafe_video_ids(tmp_path, video_id):
    url = tmp_path / "s.zarr"
    create_or_open_root(str(url), root_attrs={"schema": "comode.store/1", "dataset": {}, "extraction": {}})
    root = open_root_for_writing(str(url))
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="unsafe video id"):
        write_failure(root, video_id, {"source": "x", "label": -1, "splits": {}}, "reason")
    assert _snapshot(tmp_path) == before  # not one file or folder created


def test_a_file_name_full_of_traversal_tricks_becomes_a_safe_id(tmp_path):
    root = tmp_path / "videos"
    nasty = root / "c.. l s" / "a..\\..\\ ü %2e%2e\t.mkv"
    nasty.parent.mkdir(parents=True)
    write_video(nasty, translating_frames(frames=3, width=64, height=48, dx=0, dy=0))
    url = str(tmp_path / "out" / "s.zarr")
    summary = run_extraction(load_dataset("folder", root), url, ExtractSettings(), SequentialExecutor())
    assert summary.ok
    (video_id,) = open_store(url).video_ids()
    assert "/" not in video_id and not video_id.startswith(".") and (Path(url) / "videos" / video_id).is_dir()


# ------------------------------------------------------------------ the validator


@pytest.fixture
def small_store(tmp_path, tiny_folder_factory) -> str:
    folder = tiny_folder_factory(tmp_path / "videos", 2, frames=13)
    url = str(tmp_path / "store.zarr")
    assert run_extraction(load_dataset("folder", folder), url, ExtractSettings(), SequentialExecutor()).ok
    return url


def _edit_attrs(url: str, path: str, **changes) -> None:
    group = zarr.open_group(url, mode="r+", path=path)
    attrs = group.attrs.asdict()
    for key, value in changes.items():
        if value is _DELETE:
            attrs.pop(key)
        else:
            attrs[key] = value
    group.attrs.clear()
    group.attrs.update(attrs)


_DELETE = object()


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"status": "done"},
            r"videos/right__video00.mkv: attributes do not match video.schema.json:\n"
            r"  status: 'done' is not one of \['writing', 'complete', 'failed'\]",
        ),
        ({"frames": _DELETE}, r"videos/right__video00.mkv: .*\n  \(top level\): 'frames' is a required property"),
        ({"label": "1"}, r"  label: '1' is not of type 'integer'"),
        ({"label": -2}, r"  label: -2 is less than the minimum of -1"),
        ({"splits": {"1": "validation"}}, r"  splits/1: 'validation' is not one of \['train', 'test'\]"),
        ({"source": _DELETE}, r"  \(top level\): 'source' is a required property"),
        ({"status": "failed"}, r"  \(top level\): 'error' is a required property"),
    ],
)
def test_validator_rejects_video_attributes_that_break_the_schema(small_store, changes, message):
    _edit_attrs(small_store, "videos/right__video00.mkv", **changes)
    report = validate_store(small_store)
    assert not report.ok and len(report.problems) == 1
    assert __import__("re").search(message, report.problems[0]), report.problems[0]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"schema": "comode.store/2"}, r"store schema major version 2 is not supported"),
        ({"schema": "something/1"}, r"schema 'something/1' is not a comode store"),
        ({"schema": _DELETE}, r"not a comode store \(root attribute 'schema' is None"),
        ({"schema_minor": -1}, r"  schema_minor: -1 is less than the minimum of 0"),
        ({"extraction": {"codec": "h264"}}, r"  extraction/codec: 'h264' is not one of \['mpeg2video', 'mpeg4'\]"),
        ({"extraction": {"mv_units_per_pixel": 8}}, r"  extraction/mv_units_per_pixel: 4 was expected"),
        ({"dataset": {"classes": "left,right"}}, r"  dataset/classes: 'left,right' is not of type 'array'"),
    ],
)
def test_validator_rejects_root_attributes_that_break_the_schema(small_store, changes, message):
    attrs = zarr.open_group(small_store, mode="r").attrs.asdict()
    for key, value in changes.items():
        if isinstance(value, dict):
            changes[key] = {**attrs[key], **value}
    _edit_attrs(small_store, "", **changes)
    with pytest.raises(SchemaError, match=message):
        validate_store(small_store)


def test_validator_names_a_group_whose_metadata_is_not_json(small_store):
    (Path(small_store) / "videos" / "left__video01.mkv" / "zarr.json").write_text("{ not json")
    report = validate_store(small_store)  # a report naming the group, not a bare JSON error
    assert not report.ok and report.by_status.get("unreadable") == 1
    assert any(
        p.startswith("videos/left__video01.mkv: unreadable group metadata (zarr.json)") for p in report.problems
    ), report.problems


def test_readers_skip_a_group_whose_metadata_is_not_json_and_say_so(small_store):
    """Training and evaluation list the other videos instead of stopping on one damaged file.

    A group damaged after it completed is not seen by a reader that lists through the index
    (opening reads no group's metadata); `store validate` finds it and `store reindex`, the
    documented remedy, records it as unreadable, so readers then leave it out and say so."""
    from comode.store import open_store
    from comode.store.index import reindex

    before = open_store(small_store).video_ids()
    assert "left__video01.mkv" in before
    (Path(small_store) / "videos" / "left__video01.mkv" / "zarr.json").write_text("{ not json")
    assert not validate_store(small_store).ok
    reindex(small_store, scan=open_store(small_store).scan_groups)  # what `comode store reindex` does
    store = open_store(small_store)
    with pytest.warns(UserWarning, match=r"1 video group\(s\) with unreadable metadata left out \(left__video01.mkv\)"):
        after = store.video_ids()
    assert after == [v for v in before if v != "left__video01.mkv"]
    assert list(store.scan_videos()[1]) == ["left__video01.mkv"]


def test_extraction_redoes_a_group_whose_metadata_is_not_json(small_store, tmp_path):
    from comode.store import open_store
    from comode.store.index import reindex

    (Path(small_store) / "videos" / "left__video01.mkv" / "zarr.json").write_text("{ not json")
    reindex(small_store, scan=open_store(small_store).scan_groups)  # as `comode store reindex` does
    folder = tmp_path / "videos"  # small_store's source folder
    summary = run_extraction(load_dataset("folder", folder), small_store, ExtractSettings(), SequentialExecutor())
    assert summary.ok and summary.completed == 1 and summary.skipped_complete == 1
    assert validate_store(small_store).ok
    assert "left__video01.mkv" in open_store(small_store).video_ids()


def test_an_existing_folder_that_is_not_a_store_is_never_written_into(tmp_path, tiny_folder_factory):
    folder = tiny_folder_factory(tmp_path / "videos", 1, frames=3)
    out = tmp_path / "my_documents"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="exists and is not a Zarr store"):
        run_extraction(load_dataset("folder", folder), str(out), ExtractSettings(), SequentialExecutor())
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert not [p for p in tmp_path.iterdir() if ".creating-" in p.name]  # the staging folder is gone
