"""MV records -> grid: sign, units, cell coverage and averaging on hand-made records."""

import numpy as np

from comode.extract.mvgrid import RECORD_FIELDS, records_from_columns, records_to_grid


def _records(*rows):
    return records_from_columns(np.array(rows, dtype=np.int32))


def test_past_reference_gives_dst_minus_src_in_quarter_pixels():
    # A 16x16 block centred at (24, 8) predicted from 2 px to its left (src_x = 22):
    # FFmpeg: src = dst + motion/scale -> motion_x = -4 at half-pel scale 2. Moving right by 2 px = +8.
    records = _records((-1, 16, 16, 22, 9, 24, 8, -4, 2, 2))
    grid = records_to_grid(records, np.array([1]), num_frames=2, grid_shape=(2, 3), cell=16)
    assert grid.dtype == np.int16 and grid.shape == (2, 2, 2, 3)
    assert grid[1, 0, 0, 1] == 8 and grid[1, 1, 0, 1] == -4
    assert np.count_nonzero(grid) == 2  # nothing else written, frame 0 untouched


def test_quarter_pel_scale_and_future_reference_flip_sign():
    records = _records(
        (-1, 16, 16, 0, 0, 8, 8, -3, 0, 4),   # qpel scale: 3/4 px right -> +3
        (1, 16, 16, 0, 0, 24, 8, -3, 0, 4),   # future reference: src - dst direction -> -3
    )
    grid = records_to_grid(records, np.array([0, 0]), num_frames=1, grid_shape=(1, 2), cell=16)
    assert grid[0, 0, 0].tolist() == [3, -3]


def test_small_blocks_are_averaged_and_large_blocks_fill_cells():
    records = _records(
        # four 8x8 blocks inside cell (0, 0) with x motion 2, 4, 6, 8 px (half-pel, past ref)
        (-1, 8, 8, 0, 0, 4, 4, -4, 0, 2), (-1, 8, 8, 0, 0, 12, 4, -8, 0, 2),
        (-1, 8, 8, 0, 0, 4, 12, -12, 0, 2), (-1, 8, 8, 0, 0, 12, 12, -16, 0, 2),
        # a 16x16 block on an 8-px grid covers 4 cells
        (-1, 16, 16, 0, 0, 24, 8, 0, -2, 2),
    )
    grid16 = records_to_grid(records[:4], np.zeros(4, int), num_frames=1, grid_shape=(1, 1), cell=16)
    assert grid16[0, 0, 0, 0] == round((8 + 16 + 24 + 32) / 4)
    grid8 = records_to_grid(records[4:], np.zeros(1, int), num_frames=1, grid_shape=(2, 4), cell=8)
    assert grid8[0, 1].tolist() == [[0, 0, 4, 4], [0, 0, 4, 4]]


def test_blocks_past_the_edge_are_clipped_into_the_grid():
    # 340 px wide frame: the last macroblock column is centred at x = 344 (padding to 352).
    records = _records((-1, 16, 16, 0, 0, 344, 248, -2, 0, 2))
    grid = records_to_grid(records, np.array([0]), num_frames=1, grid_shape=(16, 22), cell=16)
    assert grid[0, 0, 15, 21] == 4


def test_no_records_gives_zeros():
    empty = np.zeros(0, dtype=[(name, np.int32) for name in RECORD_FIELDS])
    grid = records_to_grid(empty, np.zeros(0, int), num_frames=3, grid_shape=(2, 2), cell=16)
    assert grid.shape == (3, 2, 2, 2) and not grid.any()
