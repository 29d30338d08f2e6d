"""HistoryFigure: a matplotlib Figure that Jupyter shows as one PNG image, and the layout of its subplots.

This module imports matplotlib: :mod:`kerastorch.callbacks.display.plots` loads it
only when a plot is made, so ``import kerastorch`` stays cheap.

A figure built with ``matplotlib.figure.Figure`` (not pyplot) never opens a
window and is not shown a second time by the inline backend at the end of a
cell, but IPython has no image formatter for it unless pyplot's inline backend
registered one: the last expression of a cell would print ``<Figure size ...>``.
:class:`HistoryFigure` adds ``_repr_png_``, so it renders as one ``image/png``
output either way (a registered formatter takes precedence over ``_repr_png_``).

The layout fits a notebook's output column: at most two columns of subplots
(``CELL_INCHES`` each, wrapping into rows), so the PNG is at most 760 px wide at
``PNG_DPI`` and Jupyter shows it at its own size, its text not shrunk.
"""
from __future__ import annotations

import io
import math

from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: Resolution of the PNG images (notebook output and ``LivePlot(path=...)`` files).
PNG_DPI = 100
#: One subplot (inches): two columns are 7.6 in, 760 px at PNG_DPI, a Jupyter output column.
CELL_INCHES = (3.8, 2.8)
#: Subplots per row; more wrap into rows.
MAX_COLUMNS = 2
#: The width of a figure with one subplot (inches).
MIN_WIDTH = 5.0
#: Font sizes (points): the subplot titles, the axis labels, the tick labels and legends, the figure title.
TITLE_SIZE, LABEL_SIZE, SMALL_SIZE, SUPTITLE_SIZE = 10.0, 9.0, 8.0, 11.0
# Fixed margins (inches: left, right, bottom, top, between columns, between rows): a layout
# engine (constrained, tight) would measure every text first, doubling the cost of a PNG.
_MARGINS = (0.6, 0.15, 0.45, 0.3, 0.6, 0.65)
_TITLE_INCHES = 0.35


def png_bytes(figure: Figure, dpi: float = PNG_DPI) -> bytes:
    """Render ``figure`` as PNG bytes (any Figure; no pyplot, no window).

    Example:
        >>> png_bytes(HistoryFigure(figsize=(2, 1)))[1:4]
        b'PNG'
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class HistoryFigure(Figure):
    """The Figure ``plot_history`` returns: a plain matplotlib Figure that Jupyter renders as a PNG.

    Example:
        >>> figure = HistoryFigure(figsize=(2, 1))
        >>> figure._repr_png_()[1:4]
        b'PNG'
    """

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


def grid_size(count: int) -> tuple[float, float]:
    """The size (inches) of a HistoryFigure holding ``count`` subplots: at most 7.6 in wide.

    Example:
        >>> grid_size(1), grid_size(3)
        ((5.0, 2.8), (7.6, 5.6))
    """
    columns = min(count, MAX_COLUMNS)
    rows = math.ceil(count / columns)
    return max(MIN_WIDTH, round(CELL_INCHES[0] * columns, 2)), round(CELL_INCHES[1] * rows, 2)


def subplot_grid(figure: Figure | None, count: int, title: str | None = None) -> tuple[Figure, list[Axes]]:
    """``count`` subplots in rows of at most two, on ``figure`` cleared (a new HistoryFigure when None).

    A HistoryFigure is sized by :func:`grid_size`; another Figure keeps its size, and its
    layout engine if it has one (else the fixed margins).

    Example:
        >>> figure, axes = subplot_grid(None, 3)
        >>> len(axes), figure.get_size_inches().tolist()
        (3, [7.6, 5.6])
    """
    columns = min(count, MAX_COLUMNS)
    rows = math.ceil(count / columns)
    if figure is None:
        figure = HistoryFigure(figsize=grid_size(count))
    else:
        figure.clear()
        if isinstance(figure, HistoryFigure):
            figure.set_size_inches(*grid_size(count))
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for unused in grid[count:]:
        figure.delaxes(unused)
    if title is not None:
        figure.suptitle(title, fontsize=SUPTITLE_SIZE)
    if figure.get_layout_engine() is None:  # a user's figure with a layout engine keeps it
        _set_margins(figure, rows, columns, title is not None)
    return figure, list(grid[:count])


def _set_margins(figure: Figure, rows: int, columns: int, titled: bool) -> None:
    width, height = figure.get_size_inches()
    left, right, bottom, top, between_columns, between_rows = _MARGINS
    top += _TITLE_INCHES if titled else 0.0
    cell_width = (width - left - right - between_columns * (columns - 1)) / columns
    cell_height = (height - bottom - top - between_rows * (rows - 1)) / rows
    if cell_width <= 0 or cell_height <= 0:
        return  # a figure too small for the margins: matplotlib's default spacing
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                           wspace=between_columns / cell_width, hspace=between_rows / cell_height)
