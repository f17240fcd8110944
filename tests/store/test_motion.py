"""The public reader's motion: vectors in pixels with the mask, residuals and accumulated
vectors computed on read, each checked against a computation written out pixel by pixel
(and cell by cell) from the stored arrays read with plain zarr and the stream decoded by
PyAV, and against the known motion of a generated clip."""

import io
import math

import av
import numpy as np
import pytest
import zarr

from comode.extract.settings import ExtractSettings
from comode.extract.video import extract_arrays
from comode.store import create_or_open_root, open_store
from comode.store import write_video as store_video
from comode.store.writer import open_root_for_writing
from tests.store.written import root_attrs, video_attrs
from tests.videos import translating_frames, write_video

DX = 2  # px per frame to the right in the 340x256 MV frame: 1 px in the 170x128 RGB frame


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    """A store holding one extracted clip: a texture moving right 2 px a frame, 26 frames."""
    work = tmp_path_factory.mktemp("motion")
    source = write_video(work / "moving.mkv", translating_frames(frames=26, width=340, height=256, dx=DX, dy=0))
    _, arrays = extract_arrays(source, ExtractSettings(), workdir=work)
    url = str(work / "s.zarr")
    create_or_open_root(url, root_attrs=root_attrs())
    store_video(open_root_for_writing(url), "v", video_attrs(arrays), arrays)
    return url


def _plain(url):
    """(the group read by plain zarr, every frame of its stored stream decoded by PyAV, the cell)."""
    root = zarr.open_group(url, mode="r")
    group = root["videos/v"]
    with av.open(io.BytesIO(group["rgb_stream"][:].tobytes()), format="mpegvideo") as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return group, frames, root.attrs["extraction"]["mv_cell"]


def _bilinear(image, x, y):
    """image (h, w, 3) at real position (x, y), clamped to the frame: one pixel, by hand."""
    h, w = image.shape[:2]
    x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
    x0, y0 = math.floor(x), math.floor(y)
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = x - x0, y - y0
    top = image[y0, x0] * (1 - ax) + image[y0, x1] * ax
    bottom = image[y1, x0] * (1 - ax) + image[y1, x1] * ax
    return top * (1 - ay) + bottom * ay


def _residual_by_hand(frame, reference, vectors_px, cell, mv_size):
    """frame(p) - reference(p - v(p)), v of the cell holding p's centre, scaled to the RGB size."""
    h, w = frame.shape[:2]
    sx, sy = w / mv_size[0], h / mv_size[1]
    gh, gw = vectors_px.shape[1:]
    out = np.zeros(frame.shape, dtype=np.int16)
    ref = reference.astype(np.float64)
    for y in range(h):
        i = min(int((y + 0.5) / sy // cell), gh - 1)
        for x in range(w):
            j = min(int((x + 0.5) / sx // cell), gw - 1)
            vx, vy = vectors_px[0, i, j] * sx, vectors_px[1, i, j] * sy
            predicted = np.rint(_bilinear(ref, x - vx, y - vy))
            out[y, x] = frame[y, x].astype(np.int16) - predicted.astype(np.int16)
    return out


def _accumulated_by_hand(vectors_px, valid, frame_types, cell):
    """Cell by cell: D = 0 at an I-frame, D_t(c) = v_t(c) + D_{t-1}(cell at centre(c) - v_t(c));
    a cell's mask: it had a vector, and so had the cell it was traced from, back to the I-frame."""
    t_max, _, gh, gw = vectors_px.shape
    out = np.zeros(vectors_px.shape)
    mask = np.ones((t_max, gh, gw), dtype=bool)
    for t in range(t_max):
        if frame_types[t] == "I":
            continue
        for i in range(gh):
            for j in range(gw):
                vx, vy = vectors_px[t, 0, i, j], vectors_px[t, 1, i, j]
                si = min(max(math.floor(((i + 0.5) * cell - vy) / cell), 0), gh - 1)
                sj = min(max(math.floor(((j + 0.5) * cell - vx) / cell), 0), gw - 1)
                out[t, :, i, j] = (vx, vy) + out[t - 1, :, si, sj]
                mask[t, i, j] = bool(valid[t, i, j]) and mask[t - 1, si, sj]
    return out, mask


def test_motion_is_in_pixels_with_the_mask(store_url):
    video = open_store(store_url).video("v")
    window = video.motion(10, 14)
    assert window.start == 10 and window.pixels.shape == (4, 2, 16, 22) and window.pixels.dtype == np.float32
    group, _, _ = _plain(store_url)
    np.testing.assert_array_equal(window.pixels, group["mvs"][10:14] / 4)
    np.testing.assert_array_equal(window.valid, group["mv_valid"][10:14] == 1)
    assert not window.valid[2].any()  # frame 12 is an I-frame
    assert np.median(window.pixels[3, 0, 2:-2, 3:-3]) == DX  # the texture moves right 2 px a frame


def test_residuals_agree_with_a_pixel_by_pixel_computation(store_url):
    video = open_store(store_url).video("v")
    group, frames, cell = _plain(store_url)
    types = bytes(group["frame_types"][:]).decode()
    ts = [5, 12, 13]  # P, I, the P after it
    residuals = video.residuals(ts)
    assert residuals.shape == (3, 128, 170, 3) and residuals.dtype == np.int16
    assert types[12] == "I" and not residuals[1].any()
    for k, t in [(0, 5), (2, 13)]:
        expected = _residual_by_hand(frames[t], frames[t - 1], group["mvs"][t] / 4, cell, (340, 256))
        np.testing.assert_array_equal(residuals[k], expected)
    # The vectors explain the motion: the residual is as small as with the true motion (1 px
    # right at the RGB size), well below the plain difference (the rest is the RGB stream's
    # own coding noise).
    plain = np.abs(frames[5].astype(np.int16) - frames[4]).mean()
    true_motion = np.abs(frames[5, :, 1:].astype(np.int16) - frames[4, :, :-1]).mean()
    assert np.abs(residuals[0]).mean() < min(1.1 * true_motion, 0.8 * plain)


def test_accumulated_vectors_and_residuals_agree_with_a_cell_by_cell_computation(store_url):
    video = open_store(store_url).video("v")
    group, frames, cell = _plain(store_url)
    types = bytes(group["frame_types"][:]).decode()
    expected, mask = _accumulated_by_hand(group["mvs"][:] / 4, group["mv_valid"][:], types, cell)
    window = video.accumulated_motion(3, 26)  # from inside the first GOP across two I-frames
    np.testing.assert_allclose(window.pixels, expected[3:], atol=1e-5)
    np.testing.assert_array_equal(window.valid, mask[3:])
    assert not mask.all()  # some cells had no vector on their way back (the clip's entering edge)
    # Known motion: 2 px a frame since the I-frame, in the cells away from the edges.
    for t in (5, 11, 17):
        gop_start = 12 * (t // 12)
        assert np.median(window.pixels[t - 3, 0, 2:-2, 4:-4]) == DX * (t - gop_start)
    assert not window.pixels[12 - 3].any() and window.valid[12 - 3].all()
    accumulated = video.residuals([11], accumulated=True)[0]
    by_hand = _residual_by_hand(frames[11], frames[0], expected[11], cell, (340, 256))
    np.testing.assert_array_equal(accumulated, by_hand)
    shift = DX // 2 * 11  # the true motion since the I-frame at the RGB size; left of it, new content
    true_motion = np.abs(frames[11, :, 2 * shift :].astype(np.int16) - frames[0, :, shift:-shift]).mean()
    plain = np.abs(frames[11, :, 2 * shift :].astype(np.int16) - frames[0, :, 2 * shift :]).mean()
    assert np.abs(accumulated[:, 2 * shift :]).mean() < min(1.1 * true_motion, 0.8 * plain)


def test_windows_out_of_the_video_are_refused(store_url):
    video = open_store(store_url).video("v")
    with pytest.raises(IndexError):
        video.motion(20, 27)
    with pytest.raises(IndexError):
        video.accumulated_motion(5, 5)
