"""HistoryFigure: a matplotlib Figure that Jupyter shows as one PNG image.

This module imports matplotlib: :mod:`kerastorch.callbacks.display.plots` loads it
only when a plot is made, so ``import kerastorch`` stays cheap.

A figure built with ``matplotlib.figure.Figure`` (not pyplot) never opens a
window and is not shown a second time by the inline backend at the end of a
cell, but IPython has no image formatter for it unless pyplot's inline backend
registered one: the last expression of a cell would print ``<Figure size ...>``.
:class:`HistoryFigure` adds ``_repr_png_``, so it renders as one ``image/png``
output either way (a registered formatter takes precedence over ``_repr_png_``).
"""
from __future__ import annotations

import io

from matplotlib.figure import Figure

#: Resolution of the PNG images (notebook output and ``LivePlot(path=...)`` files).
PNG_DPI = 100


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
