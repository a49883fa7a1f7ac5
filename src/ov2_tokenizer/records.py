"""Small helpers for token records in m×m-block order (shared by the frame-based modes)."""
from __future__ import annotations

import numpy as np

__all__ = ["block_order_cells"]


def block_order_cells(grid_h: int, grid_w: int, merge_size: int) -> np.ndarray:
    """int [grid_h*grid_w, 2] patch cells (row, col) of a grid in block-raster order: blocks in raster order,
    the m² patches of each block consecutive (raster inside the block).

    >>> block_order_cells(2, 4, 2).tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1], [0, 2], [0, 3], [1, 2], [1, 3]]
    """
    m = merge_size
    bh, bw = grid_h // m, grid_w // m
    bi, bj, di, dj = np.meshgrid(np.arange(bh), np.arange(bw), np.arange(m), np.arange(m), indexing="ij")
    rows = (bi * m + di).reshape(-1)
    cols = (bj * m + dj).reshape(-1)
    return np.stack([rows, cols], axis=1)
