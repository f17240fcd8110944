"""comode.store.zarr_files: the Zarr v3 files it encodes are the ones zarr-python writes for
the same array, chunking and codecs, byte for byte, and zarr-python and tensorstore (the
read path, comode.store.arrays) read them back alike."""

import json

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from comode.store.arrays import open_array
from comode.store.zarr_files import BloscSettings, array_files, group_metadata


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _through_zarr(
    data: np.ndarray, chunk_rows: int, blosc: BloscSettings, folder, dimension_names=None
) -> dict[str, bytes]:
    """The files zarr-python writes for ``data`` with comode's layout (one chunk, or one shard)."""
    shape = data.shape
    chunk = tuple(max(1, min(c, s)) if s else 1 for c, s in zip((chunk_rows, *shape[1:]), shape))
    shard = tuple(-(-max(s, 1) // c) * c for s, c in zip(shape, chunk))
    codec = BloscCodec(cname=blosc.cname, clevel=blosc.clevel, shuffle=blosc.shuffle)
    array = zarr.create_array(
        str(folder),
        shape=shape,
        dtype=data.dtype,
        chunks=shard if shard == chunk else chunk,
        shards=None if shard == chunk else shard,
        compressors=(codec, Crc32cCodec()),
        fill_value=0,
        dimension_names=dimension_names,
    )
    if data.size:
        array[...] = data
    return _files(folder)


def _cases():
    rng = np.random.default_rng(0)
    mvs = rng.integers(-64, 64, size=(75, 2, 16, 22), dtype=np.int16)
    mvs[32:64] = 0  # a whole inner chunk of "no motion": not stored, index entry empty
    frames = rng.integers(0, 255, size=(7, 12, 10, 3), dtype=np.uint8)
    stream = rng.integers(0, 255, size=200_000, dtype=np.uint8)
    return {
        "int16, 3 inner chunks, last partial, middle all zero": (mvs, 32, BloscSettings("zstd", 1, "shuffle")),
        "uint8 4-d, 2 inner chunks": (frames, 4, BloscSettings("zstd", 1, "noshuffle")),
        "uint8 stream, lz4": (stream, 65536, BloscSettings("lz4", 1, "noshuffle")),
        "one chunk int64": (np.arange(27, dtype=np.int64) * 1000, 27, BloscSettings("zstd", 1, "shuffle")),
        "one chunk int32 of zeros (no chunk file)": (np.zeros(3, np.int32), 3, BloscSettings("zstd", 1, "shuffle")),
        "a shard of zeros (no shard file)": (
            np.zeros((40, 2, 3, 3), np.int16),
            32,
            BloscSettings("zstd", 1, "shuffle"),
        ),
        "empty array": (np.zeros((0, 2, 4, 4), np.int16), 32, BloscSettings("zstd", 1, "shuffle")),
        "zstd level 5, bitshuffle": (mvs[:40], 8, BloscSettings("zstd", 5, "bitshuffle")),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_array_files_are_what_zarr_writes(case, tmp_path):
    data, chunk_rows, blosc = _cases()[case]
    ours = array_files(data, chunk_rows=chunk_rows, blosc=blosc)
    theirs = _through_zarr(data, chunk_rows, blosc, tmp_path / "zarr")
    assert json.loads(ours["zarr.json"]) == json.loads(theirs["zarr.json"])
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs
    np.testing.assert_array_equal(zarr.open_array(str(_on_disk(tmp_path / "ours", ours)), mode="r")[...], data)


@pytest.mark.parametrize("case", ["int16, 3 inner chunks, last partial, middle all zero", "one chunk int64"])
def test_dimension_names_are_written_as_zarr_writes_them(case, tmp_path):
    data, chunk_rows, blosc = _cases()[case]
    names = tuple(f"axis{i}" for i in range(data.ndim))
    ours = array_files(data, chunk_rows=chunk_rows, blosc=blosc, dimension_names=names)
    assert ours == _through_zarr(data, chunk_rows, blosc, tmp_path / "zarr", dimension_names=names)
    assert zarr.open_array(str(_on_disk(tmp_path / "ours", ours)), mode="r").metadata.dimension_names == names
    with pytest.raises(ValueError, match="dimension names"):
        array_files(data, chunk_rows=chunk_rows, blosc=blosc, dimension_names=names[:-1])


def test_only_integer_arrays_are_encoded():
    with pytest.raises(TypeError, match="integer"):
        array_files(np.zeros(4, np.float32), chunk_rows=4, blosc=BloscSettings("zstd", 1, "shuffle"))


def test_a_damaged_chunk_fails_its_checksum(tmp_path):
    data = np.arange(100, dtype=np.int16).reshape(50, 2)
    files = array_files(data, chunk_rows=16, blosc=BloscSettings("zstd", 1, "shuffle"))
    key = next(k for k in files if k.startswith("c/"))
    damaged = bytearray(files[key])
    damaged[10] ^= 0xFF
    with pytest.raises(ValueError, match="checksum"):
        zarr.open_array(str(_on_disk(tmp_path / "a", {**files, key: bytes(damaged)})), mode="r")[...]


def test_group_metadata_is_what_zarr_writes(tmp_path):
    attributes = {"source": "a b/ü.mp4", "label": 3, "fps": None, "splits": {"1": "train"}, "status": "complete"}
    zarr.open_group(str(tmp_path / "g"), mode="w", zarr_format=3, attributes=attributes)
    assert group_metadata(attributes) == (tmp_path / "g" / "zarr.json").read_bytes()


def _on_disk(folder, files):
    for key, body in files.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(body)
    return folder


@pytest.mark.parametrize("case", list(_cases()))
def test_tensorstore_reads_what_zarr_reads(case, tmp_path):
    """The read path (tensorstore, comode.store.arrays) against zarr-python on the same files:
    whole, slices across chunk boundaries, single rows, a row plus more indices, scattered rows."""
    data, chunk_rows, blosc = _cases()[case]
    folder = _on_disk(tmp_path / "a", array_files(data, chunk_rows=chunk_rows, blosc=blosc))
    ours, theirs = open_array(str(folder)), zarr.open_array(str(folder), mode="r")
    assert ours.shape == data.shape and ours.dtype == data.dtype
    n = data.shape[0]
    np.testing.assert_array_equal(ours[...], theirs[...])
    rng = np.random.default_rng(1)
    for start, stop in [(0, n), (0, 1), (n // 2, n), (-3, None), (5, 2), *rng.integers(0, n + 1, (6, 2)).tolist()]:
        np.testing.assert_array_equal(ours[start:stop], theirs[start:stop])
    if n:
        for index in (0, n - 1, -1, n // 2):
            np.testing.assert_array_equal(ours[index], theirs[index])
        if data.ndim > 1:
            np.testing.assert_array_equal(ours[1:n, 0], theirs[1:n, 0])
        scattered = rng.integers(0, n, 9)
        np.testing.assert_array_equal(ours.oindex[scattered], data[scattered])
        np.testing.assert_array_equal(ours[list(scattered)], data[scattered])
        np.testing.assert_array_equal(ours[1::3], theirs[1::3])
        with pytest.raises(IndexError):
            ours[n]


def test_tensorstore_fails_on_damage_and_reads_zeros_where_nothing_is_stored(tmp_path):
    """A flipped byte, a truncated shard, an index pointing outside its file, an empty shard
    file: ValueError, never garbage; a missing shard reads as the fill value, as in zarr."""
    import google_crc32c

    data = np.arange(2 * 100, dtype=np.int16).reshape(100, 2)
    folder = _on_disk(tmp_path / "a", array_files(data, chunk_rows=32, blosc=BloscSettings("zstd", 1, "shuffle")))
    shard = folder / "c" / "0" / "0"
    original = shard.read_bytes()
    shard.write_bytes(original[:10] + bytes([original[10] ^ 1]) + original[11:])  # inside the first chunk
    array = open_array(str(folder))
    with pytest.raises(ValueError, match=r"Error reading shard entry \{0, 0\}"):
        array[0:10]
    np.testing.assert_array_equal(open_array(str(folder))[40:50], data[40:50])  # other chunks still read
    shard.write_bytes(original[:-7])  # truncated: the index is read from the wrong place
    array = open_array(str(folder))
    with pytest.raises(ValueError, match="(?i)error reading shard index.*digest mismatch"):
        array[0:10]
    n_index = 4 * 16 + 4
    index = np.frombuffer(original[-n_index:-4], "<u8").copy().reshape(4, 2)
    index[1] = (len(original), 100)  # beyond the file, with a valid index checksum
    table = index.tobytes()
    shard.write_bytes(original[:-n_index] + table + np.uint32(google_crc32c.value(table)).astype("<u4").tobytes())
    array = open_array(str(folder))
    with pytest.raises(ValueError, match=r"shard entry \{1, 0\}.*byte range \[\d+, \d+\) is not valid"):
        array[32:40]
    np.testing.assert_array_equal(open_array(str(folder))[0:16], data[0:16])
    shard.write_bytes(b"")
    array = open_array(str(folder))
    with pytest.raises(ValueError, match="shard index.*not valid for value of size 0"):
        array[0:1]
    shard.unlink()  # no shard file: every row is the fill value, as zarr reads it
    np.testing.assert_array_equal(open_array(str(folder))[...], zarr.open_array(str(folder), mode="r")[...])
    assert not open_array(str(folder))[...].any()


def test_read_results_are_writeable_and_odd_keys_are_refused(tmp_path):
    data = np.arange(3 * 70, dtype=np.int16).reshape(70, 3)
    rows = open_array(
        str(_on_disk(tmp_path / "a", array_files(data, chunk_rows=32, blosc=BloscSettings("zstd", 1, "shuffle"))))
    )
    assert rows[0:5].flags.writeable and rows[3].flags.writeable and rows.oindex[[1, 2]].flags.writeable
    np.testing.assert_array_equal(rows[[-1, 0, -70]], data[[-1, 0, -70]])
    for bad in (1.0, True, [0.5]):
        with pytest.raises(IndexError):
            rows[bad]
    with pytest.raises(ValueError, match="NOT_FOUND"):
        open_array(str(tmp_path / "nothing"))
