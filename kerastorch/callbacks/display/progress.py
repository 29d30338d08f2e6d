"""Progress output: a tqdm bar refreshed on a timer, in the form the output stream supports.

The bar reads running values a few times a second (``refresh_seconds``),
never every step: each read is a host-device sync. Where it draws
(:func:`~kerastorch.callbacks.display.environment.output_mode`):

* a notebook: tqdm's widget bar (a text bar without ipywidgets, and no warning);
* a terminal: a text bar on stdout redrawn with ``\\r``;
* anything else (a file, a pipe, CI): no bar at all, so logs hold no ``\\r`` fragments;
  the epoch line says what the epoch did.

A bar that ends normally shows its true count (a notebook bar closed below its total
turns red as "failed"); an interrupted one is closed before the traceback prints.
"""
from __future__ import annotations

import sys
import time
from typing import Any

from ..base import Callback
from .environment import has_widgets, output_mode, terminal_columns
from .epoch_table import format_value


def _bar_class(mode: str) -> Any:
    # Imported when a bar is shown, not with kerastorch. tqdm.auto is avoided: without
    # ipywidgets it warns (TqdmWarning) instead of falling back quietly.
    if mode == "notebook" and has_widgets():
        from tqdm.notebook import tqdm as notebook_tqdm
        return notebook_tqdm
    from tqdm.std import tqdm as text_tqdm
    return text_tqdm


class ProgressBar(Callback):
    """A per-epoch tqdm bar with the running loss and metrics (and bars for evaluate / predict).

    In a terminal each epoch's bar disappears when the epoch ends (its table row replaces it);
    in a notebook one widget per fit is reset each epoch and stays, finished, when fit ends.
    ``evaluate`` / ``predict`` bars stay, finished.

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
        self._standalone = False
        self._notebook = False

    def _open(self, desc: str, total: int | None, leave: bool) -> None:
        mode = output_mode()
        if mode == "plain":
            return
        # Two columns short of the terminal, so the "^C" a terminal echoes stays on the bar's line
        # (the bar is then cleared whole); the width is read again at each epoch.
        width = {"ncols": terminal_columns() - 2} if mode == "terminal" else {}
        self._bar = _bar_class(mode)(total=total, desc=desc, leave=leave, unit="step", file=sys.stdout, **width)
        self._done, self._next_refresh = 0, time.monotonic() + self.refresh_seconds

    def _advance(self, running: Any) -> None:
        self._done += 1
        now = time.monotonic()
        if self._bar is not None and now >= self._next_refresh:
            self._next_refresh = now + self.refresh_seconds
            self._bar.update(self._done - self._bar.n)
            values = running() if running is not None else {}
            if values:
                self._bar.set_postfix({k: format_value(k, v) for k, v in values.items()}, refresh=False)

    def _close(self, finished: bool = True) -> None:
        bar, self._bar = self._bar, None
        if bar is None:
            return
        if finished:  # the true count; an early stop (steps_per_epoch, stop_training) is a success too
            bar.update(self._done - bar.n)
            if bar.total is not None and self._done < bar.total:
                bar.total = self._done
        bar.close()

    def on_train_begin(self, logs=None):
        self._notebook = output_mode() == "notebook"

    def on_epoch_begin(self, epoch, logs=None):
        base = self.session.epoch_base
        desc, steps = f"Epoch {base + epoch + 1}/{base + self.params.get('epochs', 0)}", self.params.get("steps")
        if self._notebook and self._bar is not None:  # one widget per fit, reset each epoch
            self._bar.reset(total=steps)
            self._bar.set_description_str(desc, refresh=False)
            self._done = 0
        else:
            self._open(desc, steps, leave=self._notebook)

    def on_train_batch_end(self, batch, logs=None):
        self._advance(self.session.running_logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._notebook and self._bar is not None:  # the widget stays, at the epoch's full count
            self._bar.update(self._done - self._bar.n)
            train = {k: format_value(k, v) for k, v in (logs or {}).items() if not k.startswith("val_") and k != "lr"}
            self._bar.set_postfix(train, refresh=True)  # the epoch's own values: floats fit has read
        else:
            self._close()

    def on_test_begin(self, logs=None):
        if self.params.get("epochs") is None:  # standalone evaluate(); within fit, validation is quick and silent
            self._open("Evaluate", self.params.get("steps"), leave=True)
            self._standalone = True

    def on_test_batch_end(self, batch, logs=None):
        if self._standalone:
            self._advance(None)

    def on_test_end(self, logs=None):
        if self._standalone:
            self._close()
            self._standalone = False

    def on_predict_begin(self, logs=None):
        self._open("Predict", self.params.get("steps"), leave=True)

    def on_predict_batch_end(self, batch, logs=None):
        self._advance(None)

    def on_predict_end(self, logs=None):
        self._close()

    def on_train_end(self, logs=None):
        self._close()

    def on_exception(self, error: BaseException) -> None:
        self._close(finished=False)  # before the traceback prints, so it starts on its own line
        self._standalone = False
