"""TerminateOnNaN: stop training, or raise, when the epoch's loss is NaN or infinite."""
from __future__ import annotations

import math
import warnings
from typing import Any

from .base import Callback


class TerminateOnNaN(Callback):
    """Stop ``fit`` after an epoch whose logged ``loss`` is NaN or infinite (or raise, as Keras 3 can).

    It checks the epoch logs (floats) only, never the per-batch device tensors,
    so it adds no host-device sync: where Keras checks every batch, the decision
    here comes at the end of the epoch that went non-finite. ``fit`` itself already
    stops at an epoch whose built-in ``loss`` went non-finite and warns naming the
    batch; this callback is the Keras-compatible guard that also covers epoch means
    made non-finite elsewhere (another rank's values under ``torchrun``, or a custom
    ``train_step`` whose logs bypass that check).

    Args:
        raise_error: False (the default) stops training gracefully (``model.stop_training``;
            every callback's ``on_train_end`` runs). True raises a RuntimeError naming the
            first non-finite batch when fit knows it, so no ``on_train_end`` runs (a
            BackupAndRestore keeps its backup).

    Example:
        >>> cb = TerminateOnNaN()
        >>> strict = TerminateOnNaN(raise_error=True)
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        if not isinstance(raise_error, bool):
            raise TypeError(f"`raise_error` must be True or False. Received: raise_error={raise_error!r}")
        self.raise_error = raise_error

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        number = self.epoch_number(epoch)
        if self.raise_error:
            batch = self._first_nonfinite_batch()
            where = f"batch {batch} of epoch {number}" if batch is not None else f"epoch {number} (its mean loss)"
            raise RuntimeError(f"TerminateOnNaN: NaN or Inf loss encountered at {where} (batches count from 0, "
                               f"epochs from 1 as in the history). Loss value: {loss}. Training stopped "
                               "(raise_error=True).")
        self.model.stop_training = True
        if not getattr(self.session, "nonfinite", False):  # fit already warned, naming the batch
            warnings.warn(f"TerminateOnNaN: loss is {loss} at epoch {number}; training stopped.",
                          RuntimeWarning, stacklevel=2)

    def _first_nonfinite_batch(self) -> int | None:
        """The epoch's first batch whose loss was non-finite, from fit's epoch accumulator (one read), or None."""
        accumulator: Any = getattr(self.session, "accumulator", None)
        if accumulator is None:
            return None
        return accumulator.first_nonfinite()  # host-sync: once, on a non-finite epoch
