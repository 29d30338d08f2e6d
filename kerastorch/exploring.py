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

        Runs ``train_step`` at learning rates from ``start_lr`` (1e-7) to ``end_lr`` (10) over
        ``num_steps`` (100) steps, stops when the loss diverges and suggests the learning rate
        at the lowest smoothed loss divided by 10. Weights, optimizer, scheduler, history and
        RNG states are restored bit for bit. See :func:`kerastorch.engine.lr_find.lr_find` for
        the arguments, the smoothing formula and the suggestion rule.

        Returns:
            A :class:`~kerastorch.engine.lr_find.LRFinderResult`: ``lrs``, ``losses``,
            ``smoothed``, ``suggestion``, ``diverged_at``, ``note``; ``plot()`` draws the curve.

        Example:
            >>> import torch; from torch import nn; from kerastorch import Model
            >>> _ = torch.manual_seed(0); x = torch.randn(256, 2)
            >>> net = Model.wrap(nn.Linear(2, 1)); net.compile("sgd", "mse", device="cpu")
            >>> result = net.lr_find(x, x.sum(1, keepdim=True), batch_size=64, num_steps=50)
            >>> result.diverged_at is not None, 1e-3 < result.suggestion < 1
            (True, True)
            >>> net.optimizer.param_groups[0]["lr"]  # the compiled learning rate, as before the sweep
            0.01
        """
        from .engine.lr_find import lr_find
        return lr_find(self, x, y, **kwargs)

    def plot_history(self, **kwargs: Any) -> Any:
        """Plot ``self.history``: see :func:`kerastorch.callbacks.display.plots.plot_history`."""
        from .callbacks.display.plots import plot_history
        return plot_history(self, **kwargs)
