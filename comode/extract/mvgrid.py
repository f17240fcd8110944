"""Turn FFmpeg motion-vector records into a dense block grid with documented sign and units.

FFmpeg exports, per block, ``source`` (<0: reference in the past, >0: in the future), block
size ``w`` x ``h``, its centre in the current frame ``dst_x, dst_y``, and
``src = dst + motion / motion_scale`` (the position it was predicted from in the reference).

We store the displacement in the direction of motion, in quarter pixels:

    past reference:   mv = (dst - src) * 4 = -motion * 4 / motion_scale
    future reference: mv = (src - dst) * 4 = +motion * 4 / motion_scale

so a texture moving right by 2 px/frame gives mv_x = +8 and moving down 1 px/frame gives
mv_y = +4, like forward optical flow.  Each block fills the grid cells it covers; several
blocks falling into one cell (e.g. MPEG-4 8x8 blocks on a 16-px grid) are averaged and
rounded half to even.  Cells without a vector (I-frames, intra-coded blocks: FFmpeg exports
no record for them) stay 0, and the mask ``valid`` says which cells those are: without it a
0 cannot be told from true zero motion (a skipped block, a still background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comode.store.layout import MV_UNITS_PER_PIXEL

# Field names of FFmpeg's AVMotionVector as exported by PyAV (structured array) and, in this
# column order, by mv-extractor ((n, 10) int32).
RECORD_FIELDS = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale")


def records_from_columns(table: np.ndarray) -> np.ndarray:
    """mv-extractor's (n, 10) int32 table -> structured array with RECORD_FIELDS names."""
    table = np.asarray(table, dtype=np.int32).reshape(-1, len(RECORD_FIELDS))
    return np.rec.fromarrays(table.T, names=list(RECORD_FIELDS))


def motion_in_quarter_pixels(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) x and y displacement in the direction of motion, quarter pixels, as float64."""
    direction = np.where(records["source"] > 0, 1.0, -1.0)
    scale = np.maximum(records["motion_scale"].astype(np.float64), 1.0)
    factor = direction * MV_UNITS_PER_PIXEL / scale
    return records["motion_x"] * factor, records["motion_y"] * factor


@dataclass(frozen=True)
class MotionGrid:
    """A video's motion on the block grid."""

    mvs: np.ndarray  # (T, 2, gh, gw) int16 motion in quarter pixels, 0 where no vector
    valid: np.ndarray  # (T, gh, gw) uint8: 1 where at least one block gave the cell a vector


def motion_grid(
    records: np.ndarray, frame_of_record: np.ndarray, *, num_frames: int, grid_shape: tuple[int, int], cell: int
) -> MotionGrid:
    """Scatter the records of a whole video onto the grid in one vectorised pass.

    Args:
        records: (n,) structured array with RECORD_FIELDS.
        frame_of_record: (n,) frame number of each record.
        num_frames: T.
        grid_shape: (gh, gw).
        cell: grid cell size in pixels.

    Returns:
        the (T, 2, gh, gw) int16 motion in quarter pixels and the (T, gh, gw) mask of cells
        that have a vector.
    """
    gh, gw = grid_shape
    grid = np.zeros((num_frames, 2, gh, gw), dtype=np.int16)
    if len(records) == 0:
        return MotionGrid(grid, np.zeros((num_frames, gh, gw), dtype=np.uint8))
    mx, my = motion_in_quarter_pixels(records)
    flat, owner = _covered_cells(records, frame_of_record, grid_shape=grid_shape, cell=cell)
    size = num_frames * gh * gw
    count = np.bincount(flat, minlength=size)
    has = count > 0
    limit = np.iinfo(np.int16).max
    one_each = count.max() == 1  # MPEG-2 on a 16-px grid: one 16x16 block per cell, nothing to average
    for channel, motion in ((0, mx), (1, my)):
        plane = np.zeros(size)
        if one_each:
            plane[flat] = motion[owner]
        else:
            plane[has] = np.bincount(flat, weights=motion[owner], minlength=size)[has] / count[has]
        grid[:, channel] = np.clip(np.rint(plane), -limit, limit).astype(np.int16).reshape(num_frames, gh, gw)
    return MotionGrid(grid, has.astype(np.uint8).reshape(num_frames, gh, gw))


def records_to_grid(
    records: np.ndarray, frame_of_record: np.ndarray, *, num_frames: int, grid_shape: tuple[int, int], cell: int
) -> np.ndarray:
    """(T, 2, gh, gw) int16 motion in quarter pixels: :func:`motion_grid` without its mask."""
    return motion_grid(records, frame_of_record, num_frames=num_frames, grid_shape=grid_shape, cell=cell).mvs


def _covered_cells(
    records: np.ndarray, frame_of_record: np.ndarray, *, grid_shape: tuple[int, int], cell: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every (record, grid cell) pair a block covers: (m,) flat cell index over (T, gh, gw)
    and (m,) index of the record.

    A block at least one cell wide covers w // cell cells starting at its left edge; a
    smaller block counts in the cell holding its centre.
    """
    gh, gw = grid_shape
    w = records["w"].astype(np.int64)
    h = records["h"].astype(np.int64)
    x0 = np.where(w >= cell, (records["dst_x"] - w // 2) // cell, records["dst_x"] // cell)
    y0 = np.where(h >= cell, (records["dst_y"] - h // 2) // cell, records["dst_y"] // cell)
    nx = np.maximum(w // cell, 1)
    ny = np.maximum(h // cell, 1)
    if (nx == 1).all() and (ny == 1).all():  # one cell per block (MPEG-2 at cell 16): a shortcut, docs/performance.md
        owner = np.arange(len(records))
        cx, cy = np.clip(x0, 0, gw - 1), np.clip(y0, 0, gh - 1)
    else:
        per_record = nx * ny
        owner = np.repeat(np.arange(len(records)), per_record)
        local = np.arange(owner.size) - np.repeat(np.cumsum(per_record) - per_record, per_record)
        cx = np.clip(x0[owner] + local % nx[owner], 0, gw - 1)
        cy = np.clip(y0[owner] + local // nx[owner], 0, gh - 1)
    flat = (frame_of_record[owner].astype(np.int64) * gh + cy) * gw + cx
    return flat, owner
