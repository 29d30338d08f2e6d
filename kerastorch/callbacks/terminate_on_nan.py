"""TerminateOnNaN: stop training when the epoch's loss is NaN or infinite."""
from __future__ import annotations

import math
import warnings

from .base import Callback


class TerminateOnNaN(Callback):
    """Stop ``fit`` after an epoch whose logged ``loss`` is NaN or infinite.

    It checks the epoch logs (floats) only, never the per-batch device tensors,
    so it adds no host-device sync. ``fit`` itself already stops, without
    calling ``on_epoch_end``, at the first non-finite step of the built-in
    ``loss``; this callback is the Keras-compatible guard that also covers
    epoch means made non-finite elsewhere (for instance another rank's values
    under ``torchrun``, or a custom ``train_step`` whose logs bypass that check).

    Example:
        >>> cb = TerminateOnNaN()
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True
            number = self.epoch_number(epoch)
            warnings.warn(f"TerminateOnNaN: loss is {loss} at epoch {number}; training stopped.",
                          RuntimeWarning, stacklevel=2)
