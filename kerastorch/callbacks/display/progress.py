"""Progress output: a tqdm bar refreshed on a timer.

The bar reads running values a few times a second (``refresh_seconds``),
never every step: each read is a host-device sync.
"""
from __future__ import annotations

import time
from typing import Any

from ..base import Callback
from .epoch_table import format_value


class ProgressBar(Callback):
    """A per-epoch tqdm bar (a widget in notebooks) with the running loss and metrics.

    The bar disappears when the epoch ends (the epoch table row replaces it).

    Args:
        refresh_seconds: minimum time between two reads of the running values.

    Example:
        >>> bar = ProgressBar(refresh_seconds=0.5)
    """

    def __init__(self, refresh_seconds: float = 0.25) -> None:
        super().__init__()
        self.refresh_seconds = refresh_seconds
        self._bar: Any = None
        self._done = 0
        self._next_refresh = 0.0

    def _open(self, desc: str, total: int | None) -> None:
        from tqdm.auto import tqdm  # imported when a bar is shown, not with kerastorch

        self._bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, unit="step")
        self._done, self._next_refresh = 0, time.monotonic() + self.refresh_seconds

    def _advance(self, running: Any) -> None:
        self._done += 1
        now = time.monotonic()
        if now >= self._next_refresh:
            self._next_refresh = now + self.refresh_seconds
            self._bar.update(self._done - self._bar.n)
            values = running() if running is not None else {}
            if values:
                self._bar.set_postfix({k: format_value(k, v) for k, v in values.items()}, refresh=False)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self._open(f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}", self.params.get("steps"))

    def on_train_batch_end(self, batch, logs=None):
        self._advance(self.session.running_logs)

    def on_epoch_end(self, epoch, logs=None):
        self._close()

    def on_test_begin(self, logs=None):
        if self._bar is None:  # standalone evaluate(); within fit, validation is quick and silent
            self._open("Evaluate", self.params.get("steps"))
            self._standalone = True

    def on_test_batch_end(self, batch, logs=None):
        if getattr(self, "_standalone", False):
            self._advance(None)

    def on_test_end(self, logs=None):
        if getattr(self, "_standalone", False):
            self._close()
            self._standalone = False

    def on_predict_begin(self, logs=None):
        self._open("Predict", self.params.get("steps"))

    def on_predict_batch_end(self, batch, logs=None):
        self._advance(None)

    def on_predict_end(self, logs=None):
        self._close()

    def on_train_end(self, logs=None):
        self._close()
