"""The pretraining dataset on real stores: known motion in pixels, determinism, one store
handle per process, loader workers, and corrupt videos skipped and counted.

Shape alphabet: B batch, T time, H height, W width, K negative windows, gh / gw MV grid.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import default_collate

from comode.data.dataset import MAX_ATTEMPTS, PretrainDataset, is_load_error
from comode.data.frames import sample_indices
from comode.data.loader import RunLoader, collate
from comode.data.motion_windows import compensate_camera, read_mv_windows
from comode.data.transforms import AugmentSpec, augment_batch
from comode.extract.datasets import load_dataset
from comode.extract.executors import make_executor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import open_store
from tests.videos import translating_frames, write_video

# Synthetic videos at the MV-frame size (340x256), so source pixels are MV-frame pixels.
VIDEOS = {  # class/name: (frames, dx, dy)
    "right/a.avi": (90, 2, 0),
    "right/b.avi": (80, 2, 0),
    "down/c.avi": (75, 0, 2),
    "down/short.avi": (10, 0, 1),
}


def _extract(folder, store_url):
    summary = run_extraction(load_dataset("folder", folder), store_url, ExtractSettings(), make_executor(workers=0))
    assert summary.ok, summary.failures
    return store_url


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("videos")
    for relative, (frames, dx, dy) in VIDEOS.items():
        (root / relative).parent.mkdir(exist_ok=True)
        write_video(
            root / relative, translating_frames(frames=frames, width=340, height=256, dx=dx, dy=dy, seed=len(relative))
        )
    return _extract(root, str(tmp_path_factory.mktemp("store") / "synthetic.zarr"))


def _index(dataset, suffix):
    return next(i for i, video_id in enumerate(dataset.video_ids) if video_id.endswith(suffix))


def dataset_label(store_url, video_id):
    return open_store(store_url).video(video_id).label


def _moving_frames(window):
    """(2, 8, gh, gw) -> the frames whose maps are not all zero (I-frames carry no motion)."""
    return [t for t in range(window.shape[1]) if window[:, t].abs().sum() > 0]


def test_sample_layout_and_known_motion_in_pixels(store_url):
    dataset = PretrainDataset(store_url)
    assert len(dataset) == 4 and dataset.mv_geometry == (8.0, 8.0, 0.5, 0.5)
    a = _index(dataset, "a.avi")
    sample = dataset[a]
    assert sample["clip"].shape == (3, 16, 128, 170) and sample["clip"].dtype == torch.uint8
    assert sample["iframe"].shape == (3, 128, 170) and sample["iframe"].dtype == torch.uint8
    assert sample["mv_future"].shape == (2, 8, 16, 22) and sample["mv_future"].dtype == torch.float32
    assert sample["mv_negatives"].shape == (3, 2, 8, 16, 22)
    assert sample["video_index"] == a and sample["label"] == dataset_label(store_url, dataset.video_ids[a])
    # The texture moves right 2 px per frame of the 340x256 frame: x = +2 px/frame, y = 0.
    future = sample["mv_future"]
    moving = _moving_frames(future)
    assert len(moving) >= 7
    inner = future[:, moving, 2:-2, 2:-3]  # away from the borders
    assert inner[0].median() == pytest.approx(2.0, abs=0.01)
    assert inner[1].abs().median() == pytest.approx(0.0, abs=0.01)
    for window in sample["mv_negatives"]:
        assert window[0, _moving_frames(window), 2:-2, 2:-3].median() == pytest.approx(2.0, abs=0.01)


def test_a_flip_turns_the_motion_left(store_url):
    dataset = PretrainDataset(store_url)
    batch = default_collate([dataset[_index(dataset, "a.avi")]])
    # Whole-frame crop (scale 1: only the frame itself fits), always flipped, no colour.
    spec = AugmentSpec(scale=(1.0, 1.0), flip_p=1.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
    out = augment_batch(batch, generator=torch.Generator().manual_seed(0), train=True, spec=spec)
    future = out["mv_future"][0]  # (2, 8, 56, 56), clip-output pixels per frame
    moving = _moving_frames(future)
    # 2 MV-frame px = 1 RGB px = 112 / 170 output px, to the LEFT after the flip.
    expected = -2 * 0.5 * 112 / 170
    assert future[0, moving, 8:-8, 8:-8].median() == pytest.approx(expected, abs=0.02)
    assert future[1, moving, 8:-8, 8:-8].abs().median() == pytest.approx(0.0, abs=0.02)


def test_frames_are_the_sampled_ones_and_the_iframe_is_the_stored_one(store_url):
    dataset = PretrainDataset(store_url, seed=3)
    dataset.set_epoch(2)
    a = _index(dataset, "a.avi")
    sample = dataset[a]
    video = open_store(store_url).video(dataset.video_ids[a])
    indices = sample_indices(video.num_frames, video.iframe_index, rng=np.random.default_rng([3, 2, a, 0]))
    expected_clip = video.decode_frames(indices.clip)
    np.testing.assert_array_equal(sample["clip"].permute(1, 2, 3, 0).numpy(), expected_clip)
    # Decoded from the clip's stream span, and bit-identical to the stored I-frame.
    np.testing.assert_array_equal(sample["iframe"].permute(1, 2, 0).numpy(), video.iframes[indices.iframe])
    expected_mv = video.mvs[...][indices.future].astype(np.float32).transpose(1, 0, 2, 3) / 4
    np.testing.assert_array_equal(sample["mv_future"].numpy(), expected_mv)


def test_iframe_maps_interpolated_from_their_neighbours(store_url):
    dataset = PretrainDataset(store_url, iframe_mv="interpolate")
    a = _index(dataset, "a.avi")
    video = open_store(store_url).video(dataset.video_ids[a])
    stored = np.asarray(video.mvs[...]).astype(np.float32)
    frames = np.array([[10, 11, 12, 13], [0, 1, 2, 3], [86, 87, 88, 89]])  # 12 and 0 (and 84) are I-frames
    assert {0, 12} <= set(video.iframe_index.tolist()) and not stored[12].any()
    filled = read_mv_windows(video.mvs, frames, iframe_index=video.iframe_index, fill_iframes=True)
    np.testing.assert_array_equal(filled[0, 2], (stored[11] + stored[13]) / 2)
    np.testing.assert_array_equal(filled[1, 0], stored[1])  # the video's first frame: only a next neighbour
    np.testing.assert_array_equal(filled[0, [0, 1, 3]], stored[[10, 11, 13]])  # P-frames as stored
    np.testing.assert_array_equal(read_mv_windows(video.mvs, frames), stored[frames].astype(np.int16))
    # In a sample: every frame of a window now carries the texture's motion, 2 px/frame right.
    sample = dataset[a]
    assert len(_moving_frames(sample["mv_future"])) == 8
    assert sample["mv_future"][0, :, 2:-2, 2:-3].median() == pytest.approx(2.0, abs=0.01)
    with pytest.raises(ValueError, match="iframe_mv"):
        PretrainDataset(store_url, iframe_mv="mean")


def test_camera_compensation_removes_a_pan_and_keeps_an_object():
    maps = np.zeros((1, 2, 2, 4, 5), np.float32)  # (N, T, 2, gh, gw)
    maps[..., 0, :, :] = 3.0  # every block moves right: a pan
    maps[0, 1, :, 1, 2] = (3.0 + 4.0, -2.0)  # one block moves differently: an object
    out = compensate_camera(maps)
    assert np.abs(out[0, 0]).max() == 0.0  # the pan alone: nothing left
    assert out[0, 1, :, 1, 2].tolist() == [4.0, -2.0]  # the object, relative to the background
    assert np.abs(np.delete(out[0, 1].reshape(2, -1), 7, axis=1)).max() == 0.0
    static = np.zeros((1, 1, 2, 4, 5), np.float32)
    static[0, 0, :, 0, 0] = (5.0, 1.0)  # a static camera (median 0) is left as it is
    np.testing.assert_array_equal(compensate_camera(static), static)


def test_short_video_still_gives_a_sample(store_url):
    dataset = PretrainDataset(store_url)
    sample = dataset[_index(dataset, "short.avi")]  # 10 frames: clamped clip, overlapping negatives
    assert sample["clip"].shape == (3, 16, 128, 170)
    assert sample["mv_negatives"].shape == (3, 2, 8, 16, 22)


def _assert_samples_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        else:
            assert a[key] == b[key]


def test_deterministic_per_seed_epoch_and_index(store_url):
    first, second = PretrainDataset(store_url, seed=1), PretrainDataset(store_url, seed=1)
    for index in range(len(first)):
        _assert_samples_equal(first[index], second[index])
    a = _index(first, "a.avi")
    reference = first[a]["clip"]
    first.set_epoch(1)
    assert first.epoch == 1 and not torch.equal(first[a]["clip"], reference)
    assert not torch.equal(PretrainDataset(store_url, seed=2)[a]["clip"], reference)


def test_the_store_is_opened_per_process(store_url):
    import pickle

    dataset = PretrainDataset(store_url)
    handle = dataset._handle
    assert handle._store is None and not dataset._cache  # __init__ keeps the URL only
    dataset[0]
    opened = handle._store
    assert opened is not None and handle._pid == os.getpid()
    dataset[1]
    assert handle._store is opened
    cached = dict(dataset._cache)
    assert set(cached) == {0, 1}
    handle._pid = -1  # what a forked child sees: another pid than the opener's
    dataset[0]
    assert handle._store is not opened and handle._pid == os.getpid()
    # The video cache was emptied with the new store: video 1 is gone, video 0 opened again
    # (a cached Video would keep reading through the parent's arrays and group).
    assert list(dataset._cache) == [0] and dataset._cache[0] is not cached[0]
    shipped = pickle.loads(pickle.dumps(dataset))  # what a spawned worker receives
    assert shipped._handle._store is None and shipped._handle.url == handle.url and not shipped._cache


def test_collate_stacks_channels_last_with_the_same_values(store_url):
    dataset = PretrainDataset(store_url)
    samples = [dataset[0], dataset[1]]
    ours, reference = collate(samples), default_collate(samples)
    assert ours["clip"].shape == (2, 3, 16, 128, 170) and ours["clip"].movedim(1, -1).is_contiguous()
    _assert_samples_equal(ours, reference)


@pytest.mark.slow
def test_loader_workers_match_in_process_loading_over_epochs(store_url):
    dataset = PretrainDataset(store_url, seed=4)
    loader = RunLoader(dataset, global_batch=2, workers=2, seed=4)
    seen = {}
    for epoch in range(2):
        batches = list(loader.epoch(epoch))
        order = [i for batch in loader.sampler for i in batch]
        assert len(batches) == 2 and sorted(order) == [0, 1, 2, 3]
        seen[epoch] = (order, batches)
    assert dataset._handle._store is None  # only the workers opened the store
    assert seen[0][0] != seen[1][0]  # the order changes with the epoch
    reference = PretrainDataset(store_url, seed=4)
    for epoch, (order, batches) in seen.items():
        reference.set_epoch(epoch)  # persistent workers saw set_epoch too
        for position, batch in enumerate(batches):
            expected = default_collate([reference[i] for i in order[2 * position : 2 * position + 2]])
            _assert_samples_equal(batch, expected)


@pytest.fixture
def corrupt_store(store_url, tmp_path):
    """A copy of the store whose a.avi has a garbage RGB stream (written with plain zarr)."""
    url = str(tmp_path / "corrupt.zarr")
    shutil.copytree(store_url, url)
    group = zarr.open_group(url, mode="r+")
    video_id = next(name for name in group["videos"].group_keys() if name.endswith("a.avi"))
    stream = group[f"videos/{video_id}/rgb_stream"]
    stream[:] = np.random.default_rng(0).integers(0, 256, stream.shape, dtype=np.uint8)
    return url


def test_a_corrupt_video_is_skipped_and_counted(corrupt_store):
    dataset = PretrainDataset(corrupt_store)
    bad = _index(dataset, "a.avi")
    sample = dataset[bad]
    assert sample["video_index"] != bad
    assert dataset.skipped == 1 and list(dataset.failures) == [dataset.video_ids[bad]]
    _assert_samples_equal(dataset[bad], sample)  # the replacement is deterministic
    assert dataset.skipped == 2
    for index in range(len(dataset)):
        if index != bad:
            assert dataset[index]["video_index"] == index
    assert dataset.skipped == 2


def test_a_damaged_chunk_is_a_skip_but_a_bug_stops_the_run(store_url, monkeypatch):
    assert is_load_error(RuntimeError("error during blosc decompression: -1"))
    assert not is_load_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    dataset = PretrainDataset(store_url)

    def blosc_fails(video_index, *, rng):
        raise RuntimeError("error during blosc decompression: -1")

    monkeypatch.setattr(dataset, "load", blosc_fails)
    with pytest.raises(RuntimeError, match="videos in a row failed to load"):
        dataset[0]
    assert dataset.skipped == MAX_ATTEMPTS  # every attempt was a skip

    def bug(video_index, *, rng):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(dataset, "load", bug)
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        dataset[0]
    assert dataset.skipped == MAX_ATTEMPTS  # not counted: raised at once


@pytest.mark.slow
def test_worker_skips_reach_the_main_process(corrupt_store):
    dataset = PretrainDataset(corrupt_store)
    loader = RunLoader(dataset, global_batch=2, workers=2, seed=0)
    video_indices = torch.cat([batch["video_index"] for batch in loader.epoch(0)])
    assert len(video_indices) == 4 and _index(dataset, "a.avi") not in video_indices.tolist()
    assert dataset.skipped == 1  # counted in a worker, read here


def test_empty_selection_is_refused(store_url):
    with pytest.raises(ValueError, match="no complete videos in split 'nope'"):
        PretrainDataset(store_url, split="nope")


def test_a_real_clip(real_dir, tmp_path):
    folder = tmp_path / "videos" / "people"
    folder.mkdir(parents=True)
    (folder / "makeup.avi").symlink_to(real_dir / "mmaction2_apply_eye_makeup.avi")
    url = _extract(tmp_path / "videos", str(tmp_path / "real.zarr"))
    dataset = PretrainDataset(url)
    batch = default_collate([dataset[0], dataset[0]])
    out = augment_batch(batch, generator=torch.Generator().manual_seed(0), train=True)
    assert out["clip"].shape == (2, 3, 16, 112, 112) and torch.isfinite(out["clip"]).all()
    assert batch["clip"].float().std() > 10  # real content, not a blank decode
    assert torch.isfinite(out["mv_negatives"]).all() and batch["mv_future"].abs().max() < 64
