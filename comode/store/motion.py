"""Motion read from a store, as compressed-video models use it: vectors in pixels, vectors
accumulated back to the GOP's I-frame, and residuals computed on read.

Pure numpy on arrays as stored (:class:`comode.store.video.Video` reads them and calls
these), so the same functions serve :func:`comode.extract.read_video`'s arrays.

Why compute residuals on read and not store them: the store already holds what defines
them, the decoded frames (``rgb_stream``) and the vectors (``mvs``); a stored residual would
be a second copy of every P-frame, several times the size of the vectors.

Definitions (CoViAR, Wu et al., CVPR 2018, "Compressed Video Action Recognition"):

- the **residual** of P-frame t is frame t minus frame t-1 moved by frame t's vectors:
  ``R_t(p) = F_t(p) - F_{t-1}(p - v_t(p))``, v in the direction of motion (dst - src, the
  store's sign), sampled bilinearly (MPEG-2 predicts at half-pel positions the same way),
  clamped at the frame's edges.  An I-frame has no residual (all zero): nothing in it is
  predicted from another frame.
- the **accumulated vectors** of frame t trace each cell back to the GOP's I-frame k:
  ``D_k = 0``, ``D_t(c) = v_t(c) + D_{t-1}(cell at centre(c) - v_t(c))``; the **accumulated
  residual** is ``F_t(p) - F_k(p - D_t(p))``.  CoViAR accumulates per pixel; here per cell
  of the stored grid (the vectors' own resolution), the cell found by the nearest centre.

Cells without a vector (``mv_valid`` 0: intra blocks) are moved by (0, 0), as CoViAR does;
the accumulated mask says which cells had a vector at every step back to the I-frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MotionWindow:
    """Vectors of frames ``start .. start + n - 1`` on the block grid.

    pixels: (n, 2, gh, gw) float32 displacement in pixels of the MV frame (``width`` x
        ``height`` of the extraction), channel 0 = x (right), 1 = y (down), direction of motion.
    valid: (n, gh, gw) bool, True where the cell has a vector (accumulated: a vector at every
        step back to the I-frame); None for a store written before ``mv_valid`` (schema_minor 4).
    """

    start: int
    pixels: np.ndarray
    valid: np.ndarray | None


def accumulate(
    pixels: np.ndarray, is_iframe: np.ndarray, *, cell: int, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Accumulate vectors back to the last I-frame, cell by cell (see the module docstring).

    Args:
        pixels: (n, 2, gh, gw) vectors in pixels of the MV frame, consecutive frames; the
            first must be an I-frame (accumulation starts there).
        is_iframe: (n,) bool.
        cell: the grid's cell size in pixels of the MV frame.
        valid: (n, gh, gw) mask of cells with a vector, or None.

    Returns:
        (n, 2, gh, gw) float32 accumulated pixels and the (n, gh, gw) bool accumulated mask
        (None without ``valid``).
    """
    n, _, gh, gw = pixels.shape
    if n and not is_iframe[0]:
        raise ValueError("accumulation starts at an I-frame")
    out = np.zeros(pixels.shape, dtype=np.float32)
    out_valid = None if valid is None else np.ones((n, gh, gw), dtype=bool)
    centre_y = (np.arange(gh)[:, None] + 0.5) * cell  # (gh, 1)
    centre_x = (np.arange(gw)[None, :] + 0.5) * cell  # (1, gw)
    for t in range(n):
        if is_iframe[t]:
            continue  # D = 0; the mask stays True: nothing to trace
        v = pixels[t]
        src_row = np.clip(np.floor((centre_y - v[1]) / cell), 0, gh - 1).astype(np.int64)  # (gh, gw)
        src_col = np.clip(np.floor((centre_x - v[0]) / cell), 0, gw - 1).astype(np.int64)
        out[t] = v + out[t - 1][:, src_row, src_col]
        if out_valid is not None:
            out_valid[t] = valid[t].astype(bool) & out_valid[t - 1][src_row, src_col]
    return out, out_valid


def pixel_flow(pixels: np.ndarray, *, cell: int, mv_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A cell grid of vectors spread over the pixels of a frame of another size.

    Args:
        pixels: (2, gh, gw) vectors in pixels of the MV frame.
        cell: the grid's cell size in pixels of the MV frame.
        mv_size: (width, height) of the MV frame.
        size: (width, height) of the frame the flow is for (e.g. the RGB stream's).

    Returns:
        (2, h, w) float32 vectors in pixels of ``size``: each pixel takes its cell's vector
        (the cell holding the pixel's centre), scaled by size / mv_size.
    """
    (mw, mh), (w, h) = mv_size, size
    sx, sy = w / mw, h / mh
    _, gh, gw = pixels.shape
    rows = np.clip(((np.arange(h) + 0.5) / sy // cell).astype(np.int64), 0, gh - 1)
    cols = np.clip(((np.arange(w) + 0.5) / sx // cell).astype(np.int64), 0, gw - 1)
    flow = pixels[:, rows[:, None], cols[None, :]].astype(np.float32)
    flow[0] *= sx
    flow[1] *= sy
    return flow


def warp(reference: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``reference`` moved by ``flow``: out(p) = reference(p - flow(p)), bilinear, clamped.

    Args:
        reference: (h, w, c) frame.
        flow: (2, h, w) pixels, direction of motion (x, y).

    Returns:
        (h, w, c) float32.
    """
    h, w = reference.shape[:2]
    y = np.clip(np.arange(h, dtype=np.float32)[:, None] - flow[1], 0, h - 1)
    x = np.clip(np.arange(w, dtype=np.float32)[None, :] - flow[0], 0, w - 1)
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    image = reference.astype(np.float32)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def residual(frame: np.ndarray, reference: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """(h, w, c) int16 ``frame`` minus ``reference`` moved by ``flow`` (:func:`warp`), the
    prediction rounded to whole levels as a decoder's is."""
    return frame.astype(np.int16) - np.rint(warp(reference, flow)).astype(np.int16)
