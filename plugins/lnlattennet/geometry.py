"""Where the local patches sit (spec 2.2, Eq. 5, Tables VI-VII). Pure Python: no TensorFlow.

The M = n x n patches of a side of S pixels follow Eq. (5), ``n P - (n - 1) gamma P = S``:

* ``overlap=None``: gamma = 1/3 (adjacent patches share about a third of a patch), so
  ``P = round(S / (n - (n - 1) / 3))``; S = 144, n = 4 gives P = 48 and a 16-pixel overlap;
* ``overlap=N`` pixels (Table VII): ``P = round((S + (n - 1) N) / n)``; S = 144, n = 4 gives
  P = 39, 42, 45, 48, 51, 54 for N = 4, 8, 12, 16, 20, 24.

The top-left offsets are ``round(linspace(0, S - P, n))`` (halves round up), so the first patch starts at 0 and
the last ends at S: together they cover the whole side. Patch k (0-based, row-major) is grid cell
``(r, c) = divmod(k, n)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _round(value: float) -> int:
    """Round half up (Python's round() rounds half to even, which would make offsets depend on parity)."""
    return int(math.floor(value + 0.5))


def grid_side(num_patches) -> int:
    """n for M = n^2 patches; a clear error for anything that is not a positive square."""
    if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 1:
        raise ValueError(f"lnlattennet: num_patches must be a positive square integer (4, 9, 16, 25, 36, ...), "
                         f"got {num_patches!r}")
    n = math.isqrt(num_patches)
    if n * n != num_patches:
        raise ValueError(f"lnlattennet: num_patches={num_patches} is not a square; the patches form an n x n grid "
                         f"(allowed: 1, 4, 9, 16, 25, 36, ...)")
    return n


def patch_size(side: int, n: int, overlap: int | None = None) -> int:
    """Eq. (5): the patch side P for ``n`` patches along ``side`` pixels (``overlap`` in pixels, or gamma = 1/3)."""
    if n == 1:
        return int(side)
    if overlap is None:
        return _round(side / (n - (n - 1) / 3.0))
    return _round((side + (n - 1) * overlap) / n)


def offsets(side: int, size: int, n: int) -> list[int]:
    """Top-left offsets of ``n`` patches of ``size`` pixels along ``side`` pixels: round(linspace(0, side - size, n))."""
    if n == 1:
        return [0]
    span = side - size
    return [_round(span * i / (n - 1)) for i in range(n)]


@dataclass(frozen=True)
class PatchGrid:
    """The patch layout of one image size: ``n x n`` patches of ``height x width`` pixels at the given offsets."""

    n: int
    height: int
    width: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def num_patches(self) -> int:
        return self.n * self.n

    def box(self, k: int) -> tuple[int, int, int, int]:
        """``(y0, x0, y1, x1)`` (end exclusive) of patch k, row-major."""
        r, c = divmod(int(k), self.n)
        return self.ys[r], self.xs[c], self.ys[r] + self.height, self.xs[c] + self.width

    def boxes(self) -> list[tuple[int, int, int, int]]:
        return [self.box(k) for k in range(self.num_patches)]

    def overlap(self) -> tuple[int, int]:
        """Pixels shared by vertically and by horizontally adjacent patches (0 for a 1 x 1 grid)."""
        if self.n == 1:
            return 0, 0
        return self.ys[0] + self.height - self.ys[1], self.xs[0] + self.width - self.xs[1]

    def cell_edges(self, axis: int) -> list[int]:
        """Edges of the drawing cells along ``axis`` (0: rows, 1: columns): halfway between neighbouring patch
        centres, so every pixel belongs to the cell of the nearest patch centre (used by the explainer)."""
        starts, size, side = (self.ys, self.height, self.side[0]) if axis == 0 else (self.xs, self.width, self.side[1])
        centres = [s + size / 2.0 for s in starts]
        inner = [_round((a + b) / 2.0) for a, b in zip(centres[:-1], centres[1:])]
        return [0, *inner, side]

    @property
    def side(self) -> tuple[int, int]:
        return self.ys[-1] + self.height, self.xs[-1] + self.width


def patch_grid(height: int, width: int, num_patches: int = 16, overlap: int | None = None) -> PatchGrid:
    """The patch layout for an input of ``height x width`` pixels (F9 has the input's resolution)."""
    n = grid_side(num_patches)
    if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0):
        raise ValueError(f"lnlattennet: overlap must be null (Eq. 5 with gamma = 1/3) or a number of pixels >= 0, "
                         f"got {overlap!r}")
    ph, pw = patch_size(height, n, overlap), patch_size(width, n, overlap)
    for side, p, name in ((height, ph, "height"), (width, pw, "width")):
        if not 1 <= p <= side:
            raise ValueError(f"lnlattennet: {num_patches} patches with overlap {overlap!r} need a patch of {p} px, "
                             f"which does not fit the input {name} of {side} px")
    grid = PatchGrid(n, ph, pw, tuple(offsets(height, ph, n)), tuple(offsets(width, pw, n)))
    for starts, p in ((grid.ys, ph), (grid.xs, pw)):
        if any(b - a > p for a, b in zip(starts[:-1], starts[1:])):
            raise ValueError(f"lnlattennet: patches of {p} px at offsets {list(starts)} leave gaps")
    return grid
