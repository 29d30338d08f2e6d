"""The exploration surface of Model: ``summary``, ``lr_find``, ``plot_history``, ``interpret`` and ``export``.

A mixin so that :mod:`kerastorch.model` stays the training API; each method delegates
(:mod:`kerastorch.summary`, :mod:`kerastorch.engine.lr_find`, :mod:`kerastorch.callbacks.display.plots`,
:mod:`kerastorch.interpret`, :mod:`kerastorch.export`), imported when called: torchinfo, matplotlib and
onnx load only when asked for.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .interpret import Interpretation
    from .summary import SummaryText


class ExploringSurface:
    """``model.summary()``, ``lr_find()``, ``plot_history()``, ``interpret()``, ``export()``, ``averaged_weights()``."""

    def summary(self, input_shape: Any = None, input_dtype: Any = None, input_data: Any = None,
                **kwargs: Any) -> SummaryText:
        """Print and return a Keras-style table of layers, output shapes and parameter counts (shown once).

        The input it was given is kept (a one-sample CPU tensor) as :meth:`export`'s default example.

        Example:
            >>> from torch import nn; from kerastorch import Model
            >>> text = Model.wrap(nn.Linear(2, 1)).summary(input_shape=(2,), print_fn=None)
            >>> "Total params: 3" in text
            True
        """
        from .summary import example_input, summary  # torchinfo is imported when a summary is asked for
        model: Any = self  # the Model this surface is mixed into
        text = summary(model, input_shape=input_shape, input_dtype=input_dtype, input_data=input_data, **kwargs)
        self.__dict__["_summary_input"] = example_input(model, input_shape, input_dtype, input_data)
        return text

    def interpret(self, x: Any, y: Any = None, **kwargs: Any) -> Interpretation:
        """Where a classifier goes wrong: :func:`kerastorch.interpret.interpret` on this model."""
        from .interpret import interpret
        model: Any = self
        return interpret(model, x, y, **kwargs)

    def export(self, path: str | os.PathLike, format: str = "onnx", input_sample: Any = None,
               dynamic_batch: bool = True) -> Path:
        """Write the model for inference ("onnx", "torch.export", "torchscript"), checked against the model.

        See :func:`kerastorch.export.export`: the example input is ``input_sample``, else the input of the
        last ``summary(input_shape=...)`` or ``fit``; a file whose outputs differ is never written.

        Example:
            >>> import os, tempfile, torch; from torch import nn; from kerastorch import Model
            >>> net = Model.wrap(nn.Linear(2, 1)); path = os.path.join(tempfile.mkdtemp(), "net.pt")
            >>> net.export(path, format="torchscript", input_sample=torch.zeros(4, 2)).name
            'net.pt'
        """
        from .export import export
        model: Any = self
        return export(model, path, format=format, input_sample=input_sample, dynamic_batch=dynamic_batch)

    def lr_find(self, x: Any, y: Any = None, **kwargs: Any) -> Any:
        """Sweep the learning rate exponentially and suggest one; the model is left exactly as it was.

        Runs ``train_step`` at learning rates from ``start_lr`` (1e-7) to ``end_lr`` (10) over
        ``num_steps`` (100) steps, stops when the loss diverges and suggests the learning rate
        at the lowest smoothed loss divided by 10, to three significant digits (shown as
        ``1.15e-02`` in the repr and the plot, and ``0.0115`` as the value). Weights, optimizer, scheduler, history and
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

    def averaged_weights(self) -> contextlib.AbstractContextManager[Any]:
        """Swap in the weights averaged by the last fit's EMA or SWA callback for a ``with`` block, then back.

        For evaluate / predict / export / save_weights on the average while the model keeps its trained
        weights (``final_weights="raw"``, or during fit from a callback). The swap writes the model's
        tensors in place and copies its own values back on exit, bit for bit, also when the block raises.

        Raises:
            RuntimeError: no fit of this model has averaged weights (pass ``callbacks=[kt.callbacks.EMA()]``
                or ``SWA(start_epoch=...)`` to fit), or the average holds nothing yet.

        Example:
            >>> import torch; from torch import nn; from kerastorch import Model, callbacks
            >>> net = Model.wrap(nn.Linear(2, 1)); net.compile("sgd", "mse", device="cpu")
            >>> _ = net.fit(torch.randn(32, 2), torch.randn(32, 1), batch_size=8, epochs=2, verbose=0,
            ...             callbacks=[callbacks.EMA(decay=0.9, final_weights="raw")])
            >>> trained = net.weight.detach().clone()
            >>> with net.averaged_weights():
            ...     torch.equal(net.weight, trained)
            False
            >>> torch.equal(net.weight, trained)  # back to the trained weights
            True
        """
        from .averaging import averaged_weights
        model: Any = self
        return averaged_weights(model)

    def plot_history(self, **kwargs: Any) -> Any:
        """Plot ``self.history``: see :func:`kerastorch.callbacks.display.plots.plot_history`."""
        from .callbacks.display.plots import plot_history
        return plot_history(self, **kwargs)
