"""The no-vector mask (``mv_valid``): it tells cells without a vector (I-frames, intra
blocks) from true zero motion, on a generated clip whose intra blocks are known."""

import numpy as np

from comode.extract.mvgrid import RECORD_FIELDS, motion_grid, records_to_grid
from comode.extract.settings import ExtractSettings
from comode.extract.video import extract_arrays
from tests.videos import smooth_texture, write_video

# A 64x64 square of 16x16 flat blocks, each a new colour every frame, on a still textured
# background, on the 16-px grid of the 340x256 MV frame: a flat block costs nothing coded
# intra (its variance is 0) and no block of the previous frame has its colour, so the
# encoder codes those blocks intra; the still background is true (0, 0) motion.
FLAT_Y, FLAT_X = slice(96, 160), slice(160, 224)
FLAT_CELLS = (slice(6, 10), slice(10, 14))


def _still_background_with_flat_blocks(frames: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    video = np.repeat(smooth_texture(256, 340, seed=3)[None], frames, axis=0)
    # Each channel steps by 80 a frame and blocks differ by multiples of 64: every block is at
    # least 16 levels from every colour of the frame before.
    colours = (rng.integers(0, 4, size=(1, 4, 4, 3)) * 64 + np.arange(frames)[:, None, None, None] * 80) % 256
    video[:, FLAT_Y, FLAT_X] = np.repeat(np.repeat(colours, 16, axis=1), 16, axis=2).astype(np.uint8)
    return video


def test_intra_and_iframe_cells_have_no_vector_and_still_cells_have_a_zero_one(tmp_path):
    source = write_video(tmp_path / "flat_blocks.mkv", _still_background_with_flat_blocks(26))
    _, arrays = extract_arrays(source, ExtractSettings(), workdir=tmp_path)
    valid, mvs = arrays.mv_valid, arrays.mvs
    assert valid.dtype == np.uint8 and valid.shape == (26, 16, 22)
    iframes = arrays.frame_types == ord("I")
    assert not valid[iframes].any()  # an I-frame has no vector anywhere
    p_valid = valid[~iframes]
    assert not p_valid[:, FLAT_CELLS[0], FLAT_CELLS[1]].any()  # the flat blocks: intra, no vector
    background = np.ones((16, 22), dtype=bool)
    background[5:11, 9:15] = False  # the square and one cell around it
    assert p_valid[:, background].all()  # the still background: a vector in every cell...
    assert not mvs[~iframes][:, :, background].any()  # ... and it is (0, 0)
    # Without the mask both read 0: the ambiguity the mask removes.
    assert not mvs[~iframes][:, :, FLAT_CELLS[0], FLAT_CELLS[1]].any()


def test_the_mask_counts_a_cell_with_any_block_and_only_those():
    """Two 8x8 blocks in one 16-px cell, none in the next: valid 1 and 0; an empty record
    list gives an all-zero mask of the grid's shape."""
    records = np.zeros(2, dtype=[(name, np.int32) for name in RECORD_FIELDS])
    records["w"] = records["h"] = 8
    records["dst_x"], records["dst_y"] = [4, 12], [4, 4]
    records["source"], records["motion_scale"] = -1, 1
    records["motion_x"] = [2, 0]  # one block moves, one does not: the cell's average is -4 quarter pixels
    grid = motion_grid(records, np.zeros(2, int), num_frames=1, grid_shape=(1, 2), cell=16)
    np.testing.assert_array_equal(grid.valid, [[[1, 0]]])
    np.testing.assert_array_equal(grid.mvs[0, 0], [[-4, 0]])
    np.testing.assert_array_equal(
        records_to_grid(records, np.zeros(2, int), num_frames=1, grid_shape=(1, 2), cell=16), grid.mvs
    )
    empty = motion_grid(records[:0], np.zeros(0, int), num_frames=3, grid_shape=(2, 2), cell=16)
    assert empty.valid.shape == (3, 2, 2) and not empty.valid.any()
