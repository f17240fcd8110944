"""Bad and hostile inputs: one corpus, one real extraction run per executor.

Every file is either extracted correctly (sane arrays) or recorded as failed with a reason
that names the problem; the run completes; the other videos' data are intact; nothing
partial counts as complete; the validator passes.  The corpus is built by
``build_corpus`` in this folder's conftest (truncations, zero bytes, noise, audio only,
one frame, 341x257, 8K, VFR, rotation, phone-like timing (time base 1/26777, jitter, audio
first), a portrait HEVC phone video, repeated timestamps, a frame size change mid-stream,
wrong extension, corrupt middle, a lying frame count, unicode/space paths, symlink loop,
dangling link, FIFO, /dev/zero, a file deleted during the run).
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from comode.extract.datasets import load_dataset
from comode.extract.executors import DaskExecutor, SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import open_store
from comode.store.validate import validate_store


def _assert_sane(store, video_id: str, frames: tuple[int, int]) -> None:
    """A complete group: consistent arrays of the documented shapes, decodable frames."""
    video = store.video(video_id)
    t = video.num_frames
    assert frames[0] <= t <= frames[1], (video_id, t, frames)
    group = video.group
    types = bytes(group["frame_types"][...])
    assert types[:1] == b"I" and set(types) <= set(b"IP"), (video_id, types)
    assert all(letter == (ord("I") if i % 12 == 0 else ord("P")) for i, letter in enumerate(types)), video_id
    iframe_index = group["iframe_index"][...]
    np.testing.assert_array_equal(iframe_index, np.arange(0, t, 12))
    assert group["iframes"].shape == (len(iframe_index), 128, 170, 3)
    assert group["iframes"][0].std() > 1, f"{video_id}: blank I-frame"
    assert group["mvs"].shape == (t, 2, 16, 22) and group["mvs"].dtype == np.int16
    assert not group["mvs"][0].any()  # frame 0 is an I-frame: no vectors
    offsets = group["rgb_stream_offsets"][...]
    assert offsets.shape == (t + 1,) and offsets[0] == 0 and np.all(np.diff(offsets) > 0)
    last = video.decode_frames([t - 1])
    assert last.shape == (1, 128, 170, 3)


def _run_corpus(tmp_path, corpus_factory, executor):
    root = tmp_path / "videos"
    cases = corpus_factory(root)
    index = load_dataset("folder", root)
    by_source = {item.source: item for item in index.videos}
    assert sorted(by_source) == sorted(cases), "every corpus file (links included) is indexed"
    vanishing = root / "zz" / "vanishes.mkv"

    def delete_during_the_run(result, summary):
        vanishing.unlink(missing_ok=True)

    url = str(tmp_path / "corpus.zarr")
    summary = run_extraction(index, url, ExtractSettings(timeout_s=60), executor, on_result=delete_during_the_run)
    return cases, index, by_source, url, summary


def _check_outcomes(cases, by_source, url, summary) -> None:
    store = open_store(url)
    attrs = store.video_attrs()
    report_lines = []
    for source, case in sorted(cases.items()):
        video_id = by_source[source].video_id
        got = attrs[video_id]
        assert got["source"] == source
        report_lines.append(f"{source!r:45} {got['status']:9} {got.get('frames', got.get('error'))}")
        if got["status"] == "complete":
            assert case.outcome in ("complete", "either"), f"{source}: expected failure, got complete"
            _assert_sane(store, video_id, case.frames)
        else:
            assert got["status"] == "failed", (source, got["status"])
            assert case.outcome in ("failed", "either"), f"{source}: failed with {got['error']!r}"
            assert re.search(case.reason, got["error"]), (source, got["error"], case.reason)
            assert not list(store.video(video_id).group.array_keys()), f"{source}: a failed group holds arrays"
    print("\n".join(report_lines))  # the outcome table, visible with -s / on failure

    statuses = [a["status"] for a in attrs.values()]
    assert summary.completed == statuses.count("complete")
    assert len(summary.failures) == statuses.count("failed")
    assert summary.completed + len(summary.failures) == len(cases)  # the run went through every file
    assert store.video_ids() == sorted(
        by_source[s].video_id
        for s, a in ((s, attrs[by_source[s].video_id]) for s in cases)
        if a["status"] == "complete"
    )
    report = validate_store(url)
    assert report.ok, report.problems
    assert report.by_status == {"complete": statuses.count("complete"), "failed": statuses.count("failed")}

    # The known-good videos hold exactly what an extraction of them alone gives.
    moving_right = store.video(by_source["good/plain.mkv"].video_id).group["mvs"][1:12, 0]
    assert np.median(moving_right[moving_right != 0]) > 0  # content moves right: +x vectors
    moving_down = store.video(by_source["good/plain_mpeg4.mp4"].video_id).group["mvs"][1:12, 1]
    assert np.median(moving_down[moving_down != 0]) > 0


def _extract_alone(tmp_path, root, sources) -> str:
    clean = tmp_path / "clean"
    for source in sources:
        (clean / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / source, clean / source)
    url = str(tmp_path / "clean.zarr")
    summary = run_extraction(load_dataset("folder", clean), url, ExtractSettings(), SequentialExecutor())
    assert summary.ok
    return url


def test_corpus_through_the_sequential_executor(tmp_path, corpus_factory):
    cases, index, by_source, url, summary = _run_corpus(tmp_path, corpus_factory, SequentialExecutor())
    _check_outcomes(cases, by_source, url, summary)
    assert not summary.ok  # exit code 1: some videos failed

    # Other videos intact: byte for byte what a clean run of just them stores.
    good = ["good/plain.mkv", "good/plain_mpeg4.mp4", "good/8k.mp4"]
    clean = open_store(_extract_alone(tmp_path, tmp_path / "videos", good))
    store = open_store(url)
    for source in good:
        video_id = by_source[source].video_id
        ours, theirs = store.video(video_id).group, clean.video(video_id).group
        for name in sorted(theirs.array_keys()):
            np.testing.assert_array_equal(ours[name][...], theirs[name][...], err_msg=f"{source}/{name}")

    # A re-run does nothing: complete videos stay, recorded failures stay recorded.
    again = run_extraction(index, url, ExtractSettings(), SequentialExecutor())
    assert (again.completed, again.failures) == (0, [])
    assert again.skipped_complete + again.skipped_failed == len(cases)


def test_corpus_through_a_dask_local_cluster(tmp_path, corpus_factory):
    executor = DaskExecutor(workers=2)
    try:
        cases, _, by_source, url, summary = _run_corpus(tmp_path, corpus_factory, executor)
    finally:
        executor.close()
    _check_outcomes(cases, by_source, url, summary)


@pytest.mark.parametrize("name", ["odd_341x257.mkv", "8k.mp4", "rotated.mp4", "portrait_rotated_270.mov"])
def test_source_geometry_is_recorded(tmp_path, corpus_factory, name):
    """Odd, huge and rotated sources: the group records what the source was (a rotated
    one upright, as ffmpeg turned it, with its display rotation)."""
    root = tmp_path / "videos"
    corpus_factory(root)
    folder = tmp_path / "one" / "good"
    folder.mkdir(parents=True)
    shutil.copy(root / "good" / name, folder / name)
    url = str(tmp_path / "one.zarr")
    assert run_extraction(load_dataset("folder", tmp_path / "one"), url, ExtractSettings(), SequentialExecutor()).ok
    store = open_store(url)
    attrs = store.video(store.video_ids()[0]).attrs  # all of the group's attributes (the listing has a few)
    expected = {
        "odd_341x257.mkv": (341, 257, 0.0),
        "8k.mp4": (7680, 4320, 0.0),
        "rotated.mp4": (48, 64, 90.0),
        "portrait_rotated_270.mov": (48, 64, -90.0),
    }[name]
    assert (attrs["source_width"], attrs["source_height"], attrs["source_rotation"]) == expected
    assert (attrs["width"], attrs["height"]) == (340, 256)
