"""The store: write/read round trip, the completion marker, resume rules, schema checks,
and decoding RGB frames from the stored stream alone."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from comode.store import SchemaError, StoreError, VideoArrays, create_or_open_root, open_store, write_failure
from comode.store import write_video as store_video
from comode.store.validate import validate_store
from comode.store.writer import open_root_for_writing
from tests.store.written import new_store, root_attrs, video_attrs


def test_round_trip_through_plain_zarr_and_the_reader(tmp_path, extracted):
    url = str(tmp_path / "s.zarr")
    root = new_store(url)
    store_video(root, "b__moving.mkv", video_attrs(extracted), extracted)

    # Plain zarr, no comode: names and dtypes are the contract.
    plain = zarr.open_group(url, mode="r")
    group = plain["videos/b__moving.mkv"]
    assert group.attrs["status"] == "complete"
    assert group["mvs"].dtype == np.int16 and group["mvs"].shape == (26, 2, 16, 22)
    assert bytes(group["frame_types"][:]).decode() == "I" + "P" * 11 + "I" + "P" * 11 + "IP"
    np.testing.assert_array_equal(group["iframe_index"][:], [0, 12, 24])
    np.testing.assert_array_equal(group["mvs"][:], extracted.mvs)

    store = open_store(url)
    assert store.video_ids() == ["b__moving.mkv"]
    assert store.video_ids(split="1", subset="train") == ["b__moving.mkv"]
    assert store.video_ids(split="1", subset="test") == []
    video = store.video("b__moving.mkv")
    assert video.label == 1 and video.num_frames == 26
    np.testing.assert_array_equal(video.iframes[1], extracted.iframes[1])
    assert validate_store(url).ok


def test_partial_group_is_not_listed_and_is_replaced_on_rewrite(tmp_path, extracted):
    url = str(tmp_path / "s.zarr")
    root = create_or_open_root(url, root_attrs=root_attrs())
    # Simulate a writer killed after creating the group and one array, before the marker.
    partial = root.create_group("videos/v", attributes={**video_attrs(extracted), "status": "writing"})
    partial.create_array("mvs", shape=(26, 2, 16, 22), dtype="int16", chunks=(8, 2, 16, 22))
    store = open_store(url)
    assert store.video_ids() == [] and store.video_ids(status="writing") == ["v"]
    with pytest.raises(ValueError, match="not complete"):
        _ = store.video("v").mvs
    store_video(open_root_for_writing(url), "v", video_attrs(extracted), extracted)
    video = open_store(url).video("v")
    assert video.is_complete
    np.testing.assert_array_equal(video.mvs[...], extracted.mvs)


def test_local_and_object_store_writes_are_the_same_files(tmp_path, extracted, monkeypatch):
    """A video group is encoded once (comode.store.zarr_files: the files zarr-python writes,
    tests/store/test_zarr_files.py) and written by a sink: plain fsynced files for a local
    store, fsspec for any other URL.  Both write the same 17 files, and the group says
    "writing" until its last file (its own zarr.json) is in place."""
    import comode.store.sinks as sinks
    import comode.store.writer as writer

    local_url, fsspec_url = str(tmp_path / "local.zarr"), f"file://{tmp_path / 'fsspec.zarr'}"
    options = {local_url: None, fsspec_url: {"auto_mkdir": True}}
    for url, storage_options in options.items():
        create_or_open_root(url, root_attrs=root_attrs(), storage_options=storage_options)
        root = writer.open_root_for_writing(url, storage_options)
        assert isinstance(root.sink(), sinks.LocalSink) == (url == local_url)
        store_video(root, "v", video_attrs(extracted), extracted)

    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    local, through_fsspec = files(tmp_path / "local.zarr/videos/v"), files(tmp_path / "fsspec.zarr/videos/v")
    assert sorted(local) == sorted(through_fsspec) and len(local) == 17  # group zarr.json, 8 x (zarr.json + data file)
    write_ids = [json.loads(group["zarr.json"])["attributes"]["write_id"] for group in (local, through_fsspec)]
    assert write_ids[0] != write_ids[1]  # every write has its own (the index tells writes apart by it)
    for group, write_id in zip((local, through_fsspec), write_ids):
        group["zarr.json"] = group["zarr.json"].replace(write_id.encode(), b"")
    assert local == through_fsspec

    seen = []
    for sink in (sinks.LocalSink, sinks.ObjectSink):
        real_marker = sink.put_marker

        def look_then_mark(self, path, body, real_marker=real_marker):
            folder = tmp_path / ("local.zarr" if isinstance(self, sinks.LocalSink) else "fsspec.zarr") / path
            seen.append(json.loads((folder / "zarr.json").read_text())["attributes"]["status"])
            real_marker(self, path, body)

        monkeypatch.setattr(sink, "put_marker", look_then_mark)
    for url, storage_options in options.items():
        store_video(writer.open_root_for_writing(url, storage_options), "v", video_attrs(extracted), extracted)
        assert open_store(url).video("v").is_complete
    assert seen == ["writing", "writing"]


def test_an_interrupted_local_write_leaves_a_group_that_says_writing(tmp_path, extracted, monkeypatch):
    """Every file of a local video group is written to a temporary name and renamed; the
    group's own zarr.json (status "complete") is renamed last.  A failure part way (here: the
    disk fills at the rename of the mvs shard) leaves a group that says "writing", no temporary files,
    and the next write completes it."""
    import errno
    import os

    url = str(tmp_path / "s.zarr")
    create_or_open_root(url, root_attrs=root_attrs())
    root = open_root_for_writing(url)
    renamed, real_replace = [], os.replace

    def replace(source, target, fail_on=None):
        renamed.append(str(target))
        if fail_on is not None and str(target).endswith(fail_on):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    store_video(root, "v", video_attrs(extracted), extracted)
    group_marker = str(tmp_path / "s.zarr" / "videos" / "v" / "zarr.json")
    assert renamed[-1] == group_marker and len(renamed) >= 13  # 12 array files before it
    assert open_store(url).video("v").is_complete

    renamed.clear()
    # The mvs shard (files are renamed in parallel: failing the n-th rename could hit the
    # group's "writing" zarr.json, leaving a folder without metadata, which is no video).
    monkeypatch.setattr(os, "replace", lambda source, target: replace(source, target, fail_on="mvs/c/0/0/0/0"))
    with pytest.raises(OSError, match="No space"):
        store_video(root, "v", video_attrs(extracted), extracted)  # a redo of a complete group
    monkeypatch.setattr(os, "replace", real_replace)
    assert open_store(url).video_ids(status="writing") == ["v"]
    assert not list((tmp_path / "s.zarr").rglob("*.partial"))
    store_video(root, "v", video_attrs(extracted), extracted)
    np.testing.assert_array_equal(open_store(url).video("v").mvs[...], extracted.mvs)


def test_the_group_by_group_scan_keeps_the_stores_storage_options(tmp_path, extracted, monkeypatch):
    """One damaged zarr.json makes the scan read group by group, through fsspec: with the
    options the store was opened with (an endpoint, credentials), not the defaults."""
    import comode.store.scan as scan

    url, options = f"file://{tmp_path / 's.zarr'}", {"auto_mkdir": True}
    create_or_open_root(url, root_attrs=root_attrs(), storage_options=options)
    store_video(open_root_for_writing(url, options), "v", video_attrs(extracted), extracted)
    (tmp_path / "s.zarr" / "videos" / "bad").mkdir()
    (tmp_path / "s.zarr" / "videos" / "bad" / "zarr.json").write_text("{not json")
    used, real_filesystem = [], scan.filesystem
    monkeypatch.setattr(scan, "filesystem", lambda *a: used.append(a[1:]) or real_filesystem(*a))
    found, unreadable = open_store(url, storage_options=options).scan_groups()
    assert list(found) == ["v"] and list(unreadable) == ["bad"]
    assert used == [(options,)]


def test_a_folder_without_metadata_is_no_video_and_no_warning(tmp_path, extracted, recwarn):
    """What a reader sees while zarr creates a group (folder first, zarr.json after) or after
    a killed redo (old zarr.json removed first): no video, no warning."""
    url = str(tmp_path / "s.zarr")
    root = new_store(url)
    store_video(root, "v", video_attrs(extracted), extracted)
    (tmp_path / "s.zarr" / "videos" / "being_made").mkdir()
    assert open_store(url).video_ids(status=None) == ["v"]
    assert not [w for w in recwarn if "not recognized" in str(w.message)]


def test_a_snapshot_lists_from_one_listing(tmp_path, extracted, monkeypatch):
    import comode.store.reader as reader

    url = str(tmp_path / "s.zarr")
    root = new_store(url)
    store_video(root, "v1", video_attrs(extracted), extracted)
    listings = []
    real_list = reader.list_videos
    monkeypatch.setattr(reader, "list_videos", lambda *a, **k: listings.append(1) or real_list(*a, **k))
    live = open_store(url)
    snapshot = live.snapshot()
    assert len(listings) == 1
    assert snapshot.video_ids() == snapshot.video_ids(split="1", subset="train") == ["v1"]
    assert list(snapshot.video_attrs()) == ["v1"] and len(listings) == 1  # listed 3 times, read once
    store_video(root, "v2", video_attrs(extracted), extracted)  # completes after the snapshot
    assert snapshot.video_ids() == ["v1"]
    assert live.video_ids() == ["v1", "v2"] and len(listings) == 2  # the live store reads the index every time
    np.testing.assert_array_equal(snapshot.video("v2").mvs[...], extracted.mvs)  # data is read as usual


def test_split_and_labels_read_one_listing(tmp_path, extracted, monkeypatch):
    """``split`` lists the store once for both sides (one LIST on an object store);
    ``labels`` gives each video's label in the primary labels or in a label set, -1 for none."""
    import comode.store.reader as reader

    url = str(tmp_path / "s.zarr")
    attrs = root_attrs()
    attrs["dataset"] = {**attrs["dataset"], "label_sets": {"motion": ["left", "right"]}}
    create_or_open_root(url, root_attrs={**attrs, "schema_minor": 3})
    root = open_root_for_writing(url)
    store_video(root, "v1", {**video_attrs(extracted, label=0), "labels": {"motion": 1}}, extracted)
    store_video(root, "v2", {**video_attrs(extracted, label=1), "splits": {"1": "test"}}, extracted)  # no motion label
    write_failure(root, "v3", {"source": "v3.mkv", "label": -1, "splits": {"1": "train"}}, "unreadable")
    listings = []
    real_list = reader.list_videos
    monkeypatch.setattr(reader, "list_videos", lambda *a, **k: listings.append(1) or real_list(*a, **k))
    store = open_store(url)
    assert store.split("1") == (["v1"], ["v2"]) and len(listings) == 1
    assert store.labels(["v2", "v1", "v3"]) == [1, 0, -1]
    assert store.labels(["v1", "v2", "v3"], "motion") == [1, -1, -1]
    assert store.labels([], "motion") == []
    with pytest.raises(ValueError, match=r"no label set 'scene'; its label sets: \['motion'\]"):
        store.labels(["v1"], "scene")
    with pytest.raises(KeyError, match="no video 'v4'"):
        store.labels(["v1", "v4"])


def test_video_writes_leave_the_root_folder_alone(tmp_path, extracted):
    """Tasks do not re-write the root's metadata for every node they create (zarr-python
    asserts each parent with a temporary-file write): a task killed there left
    ``zarr.<uuid>.partial`` files in the root that nothing removed.  Creating or removing a
    file in a folder changes the folder's mtime; writing a video must not."""
    import time

    url = str(tmp_path / "s.zarr")
    create_or_open_root(url, root_attrs=root_attrs())
    before = Path(url).stat().st_mtime_ns
    time.sleep(0.05)  # past the file system's timestamp granularity
    store_video(open_root_for_writing(url), "b__moving.mkv", video_attrs(extracted), extracted)
    assert Path(url).stat().st_mtime_ns == before
    assert open_store(url).video_ids() == ["b__moving.mkv"]


def test_opening_a_store_removes_leftovers_of_killed_metadata_writes(tmp_path):
    url = Path(tmp_path / "s.zarr")
    create_or_open_root(str(url), root_attrs=root_attrs())
    leftovers = [url / "zarr.0123abcd.partial", url / "videos" / "zarr.4567cdef.partial"]
    for leftover in leftovers:
        leftover.write_bytes(b'{"half": ')
    keep = url / "videos" / "notes.partial"  # not a zarr metadata temp name: not ours to remove
    keep.write_text("x")
    create_or_open_root(str(url), root_attrs=root_attrs())
    assert not any(p.exists() for p in leftovers) and keep.exists()


def test_failures_are_recorded_with_their_reason(tmp_path):
    url = str(tmp_path / "s.zarr")
    create_or_open_root(url, root_attrs=root_attrs())
    write_failure(
        open_root_for_writing(url), "bad", {"source": "bad.mp4", "label": -1, "splits": {}}, "empty file (0 bytes)"
    )
    store = open_store(url)
    assert store.video_ids() == [] and store.video_ids(status="failed") == ["bad"]
    assert store.video_attrs()["bad"]["error"] == "empty file (0 bytes)"
    assert validate_store(url).ok


def test_resume_refuses_other_extraction_settings(tmp_path):
    url = str(tmp_path / "s.zarr")
    create_or_open_root(url, root_attrs=root_attrs())
    create_or_open_root(url, root_attrs=root_attrs())  # same settings: fine
    with pytest.raises(ValueError, match="gop: store=12 now=16"):
        create_or_open_root(url, root_attrs=root_attrs(gop=16))


def test_unknown_major_version_and_bad_attributes_are_refused(tmp_path):
    url = str(tmp_path / "s.zarr")
    root = create_or_open_root(url, root_attrs=root_attrs())
    root.attrs["schema"] = "comode.store/2"
    with pytest.raises(SchemaError, match="major version 2 is not supported"):
        open_store(url)
    root.attrs["schema"] = "comode.store/1"
    root.attrs["extraction"] = {**root.attrs["extraction"], "mv_units_per_pixel": 8}
    with pytest.raises(SchemaError, match=r"extraction/mv_units_per_pixel: 4 was expected"):
        open_store(url)
    with pytest.raises(StoreError, match="no Zarr group"):
        open_store(str(tmp_path / "nothing.zarr"))


def test_validate_reports_inconsistent_arrays(tmp_path, extracted):
    url = str(tmp_path / "s.zarr")
    store_video(new_store(url), "v", video_attrs(extracted), extracted)
    zarr.open_group(url, mode="r+")["videos/v/iframe_index"][0] = 5  # corrupt: no longer the I positions
    report = validate_store(url)
    assert not report.ok and "iframe_index does not list" in report.problems[0]


def test_source_timestamps_are_stored_and_checked(tmp_path, extracted):
    """``timestamps`` (schema_minor 2): int64 ticks of the group's ``time_base``, one per frame."""
    url = str(tmp_path / "s.zarr")
    root = new_store(url)
    store_video(root, "v", video_attrs(extracted), extracted)
    group = zarr.open_group(url, mode="r")["videos/v"]
    assert group["timestamps"].dtype == np.int64
    np.testing.assert_array_equal(group["timestamps"][:], np.arange(26) * 40)  # 25 fps in milliseconds
    assert validate_store(url, read_data=True).ok
    zarr.open_group(url, mode="r+")["videos/v"].attrs.pop("time_base")
    assert validate_store(url).problems == ["videos/v: timestamps without a time_base attribute"]
    del zarr.open_group(url, mode="r+")["videos/v/timestamps"]
    zarr.open_group(url, mode="r+")["videos/v"].create_array("timestamps", data=np.arange(25, dtype=np.int64))
    zarr.open_group(url, mode="r+")["videos/v"].attrs["time_base"] = [1, 1000]
    assert validate_store(url).problems == ["videos/v: timestamps shape (25,), expected (26,)"]


def test_a_group_from_before_timestamps_still_reads_and_validates(tmp_path, extracted):
    """Stores written before schema_minor 2 have no ``timestamps``: nothing requires them."""
    old = dataclasses.replace(extracted, timestamps=None)
    url = str(tmp_path / "s.zarr")
    root = new_store(url)
    store_video(root, "v", video_attrs(old), old)
    assert "timestamps" not in zarr.open_group(url, mode="r")["videos/v"]
    assert validate_store(url, read_data=True).ok
    video = open_store(url).video("v")
    assert video.num_frames == 26 and video.decode_frames([25]).shape == (1, 128, 170, 3)


def test_video_arrays_reject_inconsistent_shapes(extracted):
    with pytest.raises(ValueError, match="rgb_stream_offsets"):
        VideoArrays(**{**extracted.__dict__, "rgb_stream_offsets": extracted.rgb_stream_offsets[:-1]})
    with pytest.raises(ValueError, match="timestamps must be int64"):
        VideoArrays(**{**extracted.__dict__, "timestamps": extracted.timestamps.astype(np.float64)})


def test_schemas_are_valid_json_schema_documents():
    """The schemas as comode loads them (package data, what validation uses)."""
    import jsonschema

    from comode.store.schema import load_schema

    for name in ("root", "video", "index"):
        jsonschema.Draft202012Validator.check_schema(load_schema(name))
