"""``data.missing_mv``: P-frame cells without a vector (``mv_valid`` 0, intra blocks) filled
from the same cell of the nearest frames that have one, on a store of a real clip; the
default leaves every map as stored; a store written before ``mv_valid`` still trains.

Shape alphabet: N windows, W frames per window, T frames, gh / gw MV grid.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import zarr

from comode.data import motion_windows
from comode.data.dataset import PretrainDataset
from comode.data.frames import sample_indices
from comode.data.motion_windows import read_mv_windows
from comode.data.training_data import open_store_data
from comode.extract.datasets import load_dataset
from comode.extract.executors import make_executor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import open_store
from comode.train.config import ConfigError, load_config

CLIP = "mmaction2_apply_eye_makeup.avi"  # real footage with intra blocks in its P-frames


@pytest.fixture(scope="module")
def store_url(tmp_path_factory, real_dir) -> str:
    folder = tmp_path_factory.mktemp("videos") / "people"
    folder.mkdir()
    (folder / CLIP).symlink_to(real_dir / CLIP)
    url = str(tmp_path_factory.mktemp("store") / "real.zarr")
    summary = run_extraction(load_dataset("folder", folder.parent), url, ExtractSettings(), make_executor(workers=0))
    assert summary.ok, summary.failures
    return url


@pytest.fixture(scope="module")
def video(store_url):
    return open_store(store_url).video(open_store(store_url).video_ids()[0])


def _by_hand(mvs, valid, types, frames, *, iframes: bool, missing: bool) -> np.ndarray:
    """The fill rule, cell by cell: mvs (T, 2, gh, gw), valid (T, gh, gw), types 'IPP..',
    frames (N, W) -> (N, W, 2, gh, gw) float32."""
    out = mvs[frames].astype(np.float32)
    last = len(mvs) - 1
    # known[f, i, j]: the cell's value counts (a P-frame's; with the mask, only a vector).
    known = np.array([t != "I" for t in types])[:, None, None] & ((valid == 1) | (not missing))
    for n, window in enumerate(frames):
        low, high = max(min(window) - 1, 0), min(max(window) + 1, last)
        for p, t in enumerate(window):
            for i in range(mvs.shape[2]):
                for j in range(mvs.shape[3]):
                    if not known[t, i, j] and (iframes if types[t] == "I" else missing):
                        found = [f for f in range(t - 1, low - 1, -1) if known[f, i, j]][:1]
                        found += [f for f in range(t + 1, high + 1) if known[f, i, j]][:1]
                        out[n, p, :, i, j] = np.mean([mvs[f, :, i, j] for f in found], axis=0) if found else 0
    return out


def _windows_over_intra_blocks(valid, types, count=3, length=8) -> np.ndarray:
    """(count + 2, length): windows on the P-frames with the most cells without a vector,
    and the video's first and last windows."""
    p_frames = np.array([t == "P" for t in types])
    missing = ((valid == 0).sum(axis=(1, 2))) * p_frames
    starts = [min(max(int(t) - length // 2, 0), len(types) - length) for t in np.argsort(-missing)[:count]]
    return np.array([np.arange(s, s + length) for s in [0, *starts, len(types) - length]])


@pytest.mark.parametrize("cover_read_frames", [motion_windows.MV_COVER_READ_FRAMES, 4])  # covering / orthogonal read
@pytest.mark.parametrize("iframes", [False, True])
def test_cells_without_a_vector_are_the_mean_of_the_nearest_frames_with_one(
    video, monkeypatch, cover_read_frames, iframes
):
    monkeypatch.setattr(motion_windows, "MV_COVER_READ_FRAMES", cover_read_frames)
    mvs, valid, types = np.asarray(video.mvs[...]), np.asarray(video.mv_valid[...]), video.frame_types
    frames = _windows_over_intra_blocks(valid, types)
    filled = read_mv_windows(
        video.mvs, frames, iframe_index=video.iframe_index, fill_iframes=iframes, mv_valid=video.mv_valid
    )
    expected = _by_hand(mvs, valid, types, frames, iframes=iframes, missing=True)
    np.testing.assert_array_equal(filled, expected)
    # The windows hold intra blocks, which the store holds as 0, and some get motion.
    in_p_frames = (valid[frames] == 0) & (np.array([[types[t] == "P" for t in w] for w in frames])[..., None, None])
    assert in_p_frames.sum() > 50
    assert not mvs[frames].any(axis=2)[in_p_frames].any()
    assert (filled.any(axis=2) & in_p_frames).sum() >= 10
    at_iframes = np.array([[types[t] == "I" for t in w] for w in frames])
    assert filled[at_iframes].any() == iframes  # I-frames follow iframe_mv alone


def test_the_rule_on_known_numbers():
    """One cell with a vector at frames 1 and 3 only (x = 4, 8) and one that never has one;
    frame 0 is an I-frame."""
    mvs = np.zeros((6, 2, 1, 2), np.int16)
    valid = np.zeros((6, 1, 2), np.uint8)
    mvs[[1, 3], 0, 0, 0], mvs[[1, 3], 1, 0, 0] = [4, 8], [-2, -2]
    valid[[1, 3], 0, 0] = 1
    frames = np.array([[0, 1, 2, 3, 4, 5]])
    filled = read_mv_windows(zarr.array(mvs), frames, iframe_index=np.array([0]), mv_valid=zarr.array(valid))
    np.testing.assert_array_equal(filled[0, :, 0, 0, 0], [0, 4, 6, 8, 8, 8])  # I-frame, stored, mean, one side
    np.testing.assert_array_equal(filled[0, :, 1, 0, 0], [0, -2, -2, -2, -2, -2])
    assert not filled[..., 1].any()  # no vector anywhere: stays 0
    # The I-frame too: from its next frame with a vector only.
    both = read_mv_windows(
        zarr.array(mvs), frames, iframe_index=np.array([0]), fill_iframes=True, mv_valid=zarr.array(valid)
    )
    np.testing.assert_array_equal(both[0, :, 0, 0, 0], [4, 4, 6, 8, 8, 8])


def _assert_samples_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if hasattr(a[key], "numpy"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)
        else:
            assert a[key] == b[key], key


def test_a_sample_carries_the_filled_windows(store_url, video):
    dataset = PretrainDataset(store_url, iframe_mv="interpolate", missing_mv="interpolate", seed=2)
    sample = dataset[0]
    indices = sample_indices(video.num_frames, video.iframe_index, rng=np.random.default_rng([2, 0, 0, 0]))
    expected = _by_hand(
        np.asarray(video.mvs[...]),
        np.asarray(video.mv_valid[...]),
        video.frame_types,
        indices.mv_frames,
        iframes=True,
        missing=True,
    )
    expected = expected.transpose(0, 2, 1, 3, 4) / 4  # (1 + N, 2, W, gh, gw) pixels
    np.testing.assert_array_equal(sample["mv_future"].numpy(), expected[0])
    np.testing.assert_array_equal(sample["mv_negatives"].numpy(), expected[1:])


def test_zero_leaves_every_map_as_stored(store_url, video):
    default = PretrainDataset(store_url, seed=1)
    zero = PretrainDataset(store_url, seed=1, missing_mv="zero")
    sample = zero[0]
    _assert_samples_equal(sample, default[0])
    indices = sample_indices(video.num_frames, video.iframe_index, rng=np.random.default_rng([1, 0, 0, 0]))
    stored = np.asarray(video.mvs[...])[indices.mv_frames].transpose(0, 2, 1, 3, 4).astype(np.float32) / 4
    np.testing.assert_array_equal(sample["mv_future"].numpy(), stored[0])
    np.testing.assert_array_equal(sample["mv_negatives"].numpy(), stored[1:])
    # The read itself: int16 as stored.
    read = read_mv_windows(video.mvs, indices.mv_frames)
    assert read.dtype == np.int16
    np.testing.assert_array_equal(read, np.asarray(video.mvs[...])[indices.mv_frames])


def test_a_store_without_the_mask_trains_as_zero_and_says_so_once(store_url, tmp_path, caplog):
    old = tmp_path / "before_schema_minor_4.zarr"
    shutil.copytree(store_url, old)
    for group in (old / "videos").iterdir():
        if group.is_dir():
            shutil.rmtree(group / "mv_valid")
    assert open_store(str(old)).video(open_store(str(old)).video_ids()[0]).mv_valid is None
    with caplog.at_level(logging.WARNING, logger="comode.data.dataset"):
        interpolate = PretrainDataset(str(old), iframe_mv="interpolate", missing_mv="interpolate")
        samples = [interpolate[0], interpolate[0]]
    lines = [r.getMessage() for r in caplog.records if r.name == "comode.data.dataset"]
    assert len(lines) == 1 and "missing_mv=interpolate" in lines[0] and "no mv_valid" in lines[0]
    zero = PretrainDataset(str(old), iframe_mv="interpolate", missing_mv="zero")
    _assert_samples_equal(samples[0], zero[0])


def test_the_option_is_validated_and_reaches_the_dataset(store_url):
    with pytest.raises(ConfigError, match=r"^data.missing_mv must be one of \['zero', 'interpolate'\], got 'mask'$"):
        load_config(None, ["data.missing_mv=mask"])
    with pytest.raises(ValueError, match=r"^missing_mv must be one of \['zero', 'interpolate'\], got 'mask'$"):
        PretrainDataset(store_url, missing_mv="mask")
    assert load_config(None).data.missing_mv == "zero"
    config = load_config(None, ["data.missing_mv=interpolate", "data.split=null", "data.subset=null"])
    assert open_store_data(config.data, store_url, seed=config.seed).dataset.missing_mv == "interpolate"
