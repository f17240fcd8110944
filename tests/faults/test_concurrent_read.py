"""Readers on a store that an extraction is appending to see only complete videos, whole.

An extraction process appends tiny videos one after another while this process polls the
store the way training does (``open_store`` + ``video_ids()``, and ``PretrainDataset``):
every video it lists must read back completely and equal its final content.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from comode.store import open_store
from comode.store.reader import StoreError

EXTRACT = textwrap.dedent("""
    import sys
    from comode.extract.datasets import load_dataset
    from comode.extract.executors import make_executor
    from comode.extract.pipeline import run_extraction
    from comode.extract.settings import ExtractSettings
    root, url, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    executor = make_executor(workers=workers)
    try:
        summary = run_extraction(load_dataset("folder", root), url, ExtractSettings(), executor)
    finally:
        executor.close()
    sys.exit(0 if summary.ok else 1)
""")


def _read_whole(store, video_id: str) -> dict[str, np.ndarray]:
    video = store.video(video_id)
    group = video.group
    arrays = {name: group[name][...] for name in sorted(group.array_keys())}
    t = video.num_frames
    assert arrays["mvs"].shape[0] == t and arrays["rgb_stream_offsets"].shape == (t + 1,)
    assert arrays["rgb_stream_offsets"][-1] == arrays["rgb_stream"].size
    assert video.decode_frames([t - 1]).shape[0] == 1
    return arrays


@pytest.mark.filterwarnings("ignore:Object at .*partial is not recognized")  # a writer's temporary file
def test_readers_see_only_complete_videos_while_extraction_appends(tmp_path, tiny_folder_factory):
    from comode.data.dataset import PretrainDataset

    folder = tiny_folder_factory(tmp_path / "videos", 14, frames=40)
    url = str(tmp_path / "growing.zarr")
    writer = subprocess.Popen(
        [sys.executable, "-c", EXTRACT, str(folder), url, "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seen: dict[str, dict[str, np.ndarray]] = {}
    polls, listings_while_writing, dataset_reads = 0, set(), 0
    try:
        deadline = time.monotonic() + 180
        while writer.poll() is None and time.monotonic() < deadline:
            try:
                store = open_store(url)
            except StoreError:  # not created yet
                time.sleep(0.01)
                continue
            polls += 1
            ids = store.video_ids()
            statuses = {a.get("status") for a in store.video_attrs().values()}
            if "writing" in statuses:
                listings_while_writing.add(len(ids))
            for video_id in ids:
                if video_id not in seen:
                    seen[video_id] = _read_whole(store, video_id)
            if ids and polls % 5 == 0:  # what a training loader does with the same store
                dataset = PretrainDataset(url)
                assert set(dataset.video_ids) <= set(store.video_ids())
                sample = dataset[len(dataset) - 1]
                assert sample["clip"].shape[1] == 16 and dataset.skipped == 0
                dataset_reads += 1
        _, stderr = writer.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, stderr.decode()[-2000:]
    print(
        f"{polls} polls, {len(seen)} videos read while appending, listings taken while a group was "
        f"being written at sizes {sorted(listings_while_writing)}, {dataset_reads} dataset reads"
    )
    assert polls >= 5 and len(seen) >= 3, "the reader never overlapped the writer"
    assert listings_while_writing, "no listing happened while a group was half written"
    final = open_store(url)
    assert len(final.video_ids()) == 14
    for video_id, arrays in seen.items():
        for name, array in arrays.items():
            np.testing.assert_array_equal(array, final.video(video_id).group[name][...], err_msg=f"{video_id}/{name}")
