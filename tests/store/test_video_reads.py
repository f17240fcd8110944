"""Reading a stored video: decoding RGB frames from the stored stream alone (also in a forked
child), arrays through tensorstore, damaged and missing chunks, and groups from before
dimension names and mv_valid."""

import dataclasses
import json
from pathlib import Path

import av
import numpy as np
import pytest
import zarr

from comode.store import open_store
from comode.store import write_video as store_video
from comode.store.validate import validate_store
from tests.store.written import new_store, video_attrs


def test_decode_frames_matches_a_full_decode_of_the_stored_stream(tmp_path, extracted):
    url = str(tmp_path / "s.zarr")
    root = new_store(url)
    store_video(root, "v", video_attrs(extracted), extracted)
    video = open_store(url).video("v")

    # Reference: write the stored bytes to a file and decode it from the start with a container.
    path = tmp_path / "stream.m2v"
    path.write_bytes(video.read_rgb_stream())
    with av.open(str(path)) as container:
        full = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert full.shape == (26, 128, 170, 3)
    wanted = [25, 3, 13, 13, 24, 0]  # any order, duplicates, spanning GOPs
    np.testing.assert_array_equal(video.decode_frames(wanted), full[wanted])
    # I-frames stored as an array are exactly the stream's I-frames.
    np.testing.assert_array_equal(video.iframes[...], full[[0, 12, 24]])
    # A resized decode has the asked size.
    assert video.decode_frames([5], size=(112, 84)).shape == (1, 84, 112, 3)
    with pytest.raises(IndexError):
        video.decode_frames([26])


def _decode_in_child(url: str) -> None:
    assert open_store(url).video("v").decode_frames([1, 2]).shape == (2, 128, 170, 3)


def test_decoding_still_works_in_a_forked_child_after_the_parent_decoded(tmp_path, extracted):
    # Loader workers are forked from a process that may already have decoded frames; the
    # per-process conversion context must not be shared with (or freed in) the child.
    import multiprocessing

    url = str(tmp_path / "s.zarr")
    root = new_store(url)
    store_video(root, "v", video_attrs(extracted), extracted)
    open_store(url).video("v").decode_frames([0, 1])
    child = multiprocessing.get_context("fork").Process(target=_decode_in_child, args=(url,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0


def test_arrays_are_read_through_tensorstore_and_agree_with_zarr(tmp_path, extracted):
    """Arrays are read through tensorstore (comode.store.arrays); zarr-python reading the same
    files gives the same arrays, rows in any order and decoded frames."""
    from comode.store.arrays import StoredArray

    url = str(tmp_path / "s.zarr")
    root = new_store(url)
    store_video(root, "v", video_attrs(extracted), extracted)
    video = open_store(url).video("v")
    plain = zarr.open_group(url, mode="r")["videos/v"]
    assert isinstance(video.mvs, StoredArray) and isinstance(video.iframes, StoredArray)
    np.testing.assert_array_equal(video.mvs[...], extracted.mvs)
    np.testing.assert_array_equal(video.mvs[3:20], plain["mvs"][3:20])
    np.testing.assert_array_equal(video.mvs[3:20:4, 1], plain["mvs"][3:20:4, 1])
    np.testing.assert_array_equal(video.mvs[-1], plain["mvs"][25])
    np.testing.assert_array_equal(video.mvs.oindex[[20, 3, -2, 3]], plain["mvs"].oindex[[20, 3, 24, 3]])
    np.testing.assert_array_equal(video.iframes[1], plain["iframes"][1])
    assert video.iframes[1].flags.writeable
    assert video.frame_types == bytes(plain["frame_types"][:]).decode()
    with pytest.raises(IndexError):
        video.mvs[26]
    with pytest.raises(IndexError):
        video.mvs.oindex[[0.5]]
    through_fsspec = open_store(f"file://{url}").video("v")
    np.testing.assert_array_equal(video.decode_frames([0, 5, 13]), through_fsspec.decode_frames([0, 5, 13]))
    # fsspec options reach zarr-python only: such a store is read through zarr-python.
    with_options = open_store(f"file://{url}", storage_options={"auto_mkdir": False}).video("v")
    assert isinstance(with_options.mvs, zarr.Array)
    np.testing.assert_array_equal(with_options.mvs[3:20], video.mvs[3:20])


def test_damaged_chunks_fail_their_checksum_and_missing_files_read_as_zeros(tmp_path, extracted):
    """A flipped byte in a chunk or a truncated shard index is a ValueError (what the training
    loader skips and counts, what ``store validate --data`` reports); a deleted shard reads
    as zeros, like zarr-python (only a complete group is read, and its marker reaches the
    disk after its data)."""
    url = str(tmp_path / "s.zarr")
    store_video(new_store(url), "v", video_attrs(extracted), extracted)
    shard = tmp_path / "s.zarr/videos/v/rgb_stream/c/0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01
    shard.write_bytes(bytes(data))
    video = open_store(url).video("v")
    with pytest.raises(ValueError, match="(?i)digest mismatch"):
        video.read_rgb_stream()
    mvs = tmp_path / "s.zarr/videos/v/mvs/c/0/0/0/0"
    mvs.write_bytes(mvs.read_bytes()[:-10])
    video = open_store(url).video("v")
    mvs_array = video.mvs
    with pytest.raises(ValueError, match=r'Error reading local file ".*/videos/v/mvs/c/0/0/0/0"'):
        mvs_array[0:5]
    mvs.unlink()
    assert not open_store(url).video("v").mvs[...].any()


def test_a_group_from_before_dimension_names_and_mv_valid_still_reads(tmp_path, extracted):
    """Stores written before schema_minor 4: no ``dimension_names``, no ``mv_valid``, a
    25 fps stream header.  Plain zarr-python and comode read them as before; the motion
    reader gives no mask."""
    url = str(tmp_path / "s.zarr")
    store_video(new_store(url), "v", video_attrs(extracted), dataclasses.replace(extracted, mv_valid=None))
    group_folder = Path(url) / "videos" / "v"
    for metadata in group_folder.glob("*/zarr.json"):
        document = json.loads(metadata.read_text())
        assert document.pop("dimension_names")  # written since schema_minor 4
        metadata.write_text(json.dumps(document, indent=2))
    group = zarr.open_group(url, mode="r")["videos/v"]
    assert all(group[name].metadata.dimension_names is None for name in group.array_keys())
    for name in group.array_keys():
        np.testing.assert_array_equal(group[name][...], getattr(extracted, name))
    assert "mv_valid" not in group
    video = open_store(url).video("v")
    assert video.mv_valid is None
    window = video.motion(0, 26)
    assert window.valid is None and window.pixels.shape == (26, 2, 16, 22)
    assert video.accumulated_motion(13, 20).valid is None
    assert video.residuals([13]).shape == (1, 128, 170, 3)
    assert validate_store(url, read_data=True).ok


def test_a_new_group_names_every_dimension(tmp_path, extracted):
    url = str(tmp_path / "s.zarr")
    store_video(new_store(url), "v", video_attrs(extracted), extracted)
    group = zarr.open_group(url, mode="r")["videos/v"]
    names = {name: group[name].metadata.dimension_names for name in group.array_keys()}
    assert names["mvs"] == ("frame", "component", "cell_y", "cell_x")
    assert names["mv_valid"] == ("frame", "cell_y", "cell_x")
    assert len(names) == 8 and all(len(dims) == group[name].ndim for name, dims in names.items())
    np.testing.assert_array_equal(group["mv_valid"][...], extracted.mv_valid)
