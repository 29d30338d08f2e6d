"""The exploration surface of Model: ``lr_find`` and ``plot_history`` (notebook tools).

A mixin so that :mod:`kerastorch.model` stays the training API; both methods
delegate: :func:`kerastorch.engine.lr_find.lr_find` and
:func:`kerastorch.callbacks.display.plots.plot_history`.
"""
from __future__ import annotations

from typing import Any


class ExploringSurface:
    """``model.lr_find(...)`` and ``model.plot_history(...)``."""

    def lr_find(self, x: Any, y: Any = None, **kwargs: Any) -> Any:
        """Sweep the learning rate exponentially and suggest one; the model is left exactly as it was.

        See :func:`kerastorch.engine.lr_find.lr_find` for the arguments and the suggestion rule.
        """
        from .engine.lr_find import lr_find
        return lr_find(self, x, y, **kwargs)

    def plot_history(self, **kwargs: Any) -> Any:
        """Plot ``self.history``: see :func:`kerastorch.callbacks.display.plots.plot_history`."""
        from .callbacks.display.plots import plot_history
        return plot_history(self, **kwargs)
