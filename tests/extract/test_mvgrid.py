"""MV records -> grid: sign, units, cell coverage and averaging on hand-made records."""

import numpy as np
import pytest

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
        (-1, 16, 16, 0, 0, 8, 8, -3, 0, 4),  # qpel scale: 3/4 px right -> +3
        (1, 16, 16, 0, 0, 24, 8, -3, 0, 4),  # future reference: src - dst direction -> -3
    )
    grid = records_to_grid(records, np.array([0, 0]), num_frames=1, grid_shape=(1, 2), cell=16)
    assert grid[0, 0, 0].tolist() == [3, -3]


def test_small_blocks_are_averaged_and_large_blocks_fill_cells():
    records = _records(
        # four 8x8 blocks inside cell (0, 0) with x motion 2, 4, 6, 8 px (half-pel, past ref)
        (-1, 8, 8, 0, 0, 4, 4, -4, 0, 2),
        (-1, 8, 8, 0, 0, 12, 4, -8, 0, 2),
        (-1, 8, 8, 0, 0, 4, 12, -12, 0, 2),
        (-1, 8, 8, 0, 0, 12, 12, -16, 0, 2),
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


# MPEG-2 blocks are 16x16: on a 16-px grid one block per cell (the shortcut), on an 8-px grid
# one block covers 4 cells, on a 32-px grid up to 4 blocks are averaged in a cell.
@pytest.mark.parametrize("cell", [16, 8, 32])
def test_a_real_stream_gives_what_a_plain_loop_over_the_records_gives(tmp_path, real_dir, cell):
    """The vectorised scatter against the documented rule written as a loop: every block adds
    its motion to the cells it covers; means, rounded."""
    from comode.extract.decode import read_streams
    from comode.extract.encode import reencode
    from comode.extract.mvgrid import motion_in_quarter_pixels
    from comode.extract.settings import ExtractSettings

    settings = ExtractSettings(mv_cell=cell)
    reencode(real_dir / "mmaction2_arm_wrestling.mp4", tmp_path / "x.nut", settings)
    streams = read_streams(tmp_path / "x.nut", codec=settings.codec, rgb_size=(170, 128))
    keep = streams.frame_of_record < 40
    records, owner = streams.records[keep], streams.frame_of_record[keep]
    gh, gw = settings.grid_shape
    sums, counts = np.zeros((40, 2, gh, gw)), np.zeros((40, gh, gw))
    for record, frame, x, y in zip(records, owner, *motion_in_quarter_pixels(records)):
        w, h, dst_x, dst_y = (int(record[name]) for name in ("w", "h", "dst_x", "dst_y"))
        columns = (
            range((dst_x - w // 2) // cell, (dst_x - w // 2) // cell + w // cell) if w >= cell else [dst_x // cell]
        )
        rows = range((dst_y - h // 2) // cell, (dst_y - h // 2) // cell + h // cell) if h >= cell else [dst_y // cell]
        for row in rows:
            for column in columns:
                r, c = min(max(row, 0), gh - 1), min(max(column, 0), gw - 1)
                sums[frame, :, r, c] += (x, y)
                counts[frame, r, c] += 1
    expected = np.rint(np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0))
    grid = records_to_grid(records, owner, num_frames=40, grid_shape=(gh, gw), cell=cell)
    assert np.count_nonzero(grid) > 1000 and (records["w"] == 16).all()
    np.testing.assert_array_equal(grid, expected.astype(np.int16))
