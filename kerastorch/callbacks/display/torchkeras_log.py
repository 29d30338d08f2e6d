"""The torchkeras 1.x/2.x training output: step dicts every ``log_step_freq`` steps, a table per epoch.

``fit(epochs, dl_train, dl_val, log_step_freq)`` (the torchkeras form) prints
this instead of the progress bar, with torchkeras's banner lines.
"""
from __future__ import annotations

from ...compat.torchkeras import print_bar
from ..base import Callback
from .epoch_table import render_table


class TorchkerasLogger(Callback):
    """The torchkeras 1.x/2.x output: step dicts every ``log_step_freq`` steps, a table per epoch.

    Example:
        >>> logger = TorchkerasLogger(log_step_freq=30)
    """

    def __init__(self, log_step_freq: int | None = None) -> None:
        super().__init__()
        self.log_step_freq = log_step_freq

    def on_train_begin(self, logs=None):
        print("Start Training ...\n")  # noqa: T201

    def on_epoch_begin(self, epoch, logs=None):
        print_bar()

    def on_train_batch_end(self, batch, logs=None):
        if self.log_step_freq and (batch + 1) % self.log_step_freq == 0:
            running = self.session.running_logs()
            print({"step": batch + 1, **{k: round(v, 3) for k, v in running.items()}})  # noqa: T201

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: v for k, v in (logs or {}).items() if k != "lr"}}
        print("\n", render_table(row, decimals=3))  # noqa: T201

    def on_train_end(self, logs=None):
        print_bar()
        print("Finished Training...")  # noqa: T201


#: The name this logger had before; kept so existing imports keep working.
SeedLogger = TorchkerasLogger
