"""Epoch output: a growing prettytable (verbose=1) or one line per epoch (verbose=2)."""
from __future__ import annotations

import time
from typing import Any

from ..base import Callback


def format_value(key: str, value: Any, decimals: int = 4) -> str:
    """Format one logged value: integers as is, the lr in %g, other floats to ``decimals``."""
    if isinstance(value, int):
        return str(value)
    if key == "lr" or key.endswith("_lr"):
        return f"{value:.3g}"
    return f"{value:.{decimals}f}"


def render_table(row: dict[str, Any], decimals: int = 4, min_width: int = 0) -> str:
    """A one-row prettytable as a string (column width at least ``min_width``)."""
    from prettytable import PrettyTable  # imported when a table is printed, not with kerastorch

    table = PrettyTable(list(row))
    for name in row:
        table.min_width[name] = max(min_width, len(name))
    table.add_row([format_value(k, v, decimals) for k, v in row.items()])
    return table.get_string()


class EpochTable(Callback):
    """Print one table row per epoch; the header is printed once, and again if columns change.

    Example:
        >>> table = EpochTable()
    """

    def __init__(self, decimals: int = 4) -> None:
        super().__init__()
        self.decimals = decimals
        self._header: tuple[str, ...] | None = None
        self._width = 0

    def on_train_begin(self, logs=None):
        self._header = None

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **(logs or {})}
        lines = render_table(row, self.decimals, min_width=8).splitlines()
        if tuple(row) != self._header or len(lines[3]) != self._width:
            self._header, self._width = tuple(row), len(lines[3])
            print("\n".join(lines), flush=True)
        else:  # same columns and widths: the new row and the closing border only
            print("\n".join(lines[3:]), flush=True)


class EpochLine(Callback):
    """One line per epoch, for logs: ``Epoch 3/10 - 0.4s - loss: 0.1234 - val_loss: 0.2345``.

    Example:
        >>> line = EpochLine()
    """

    def __init__(self, decimals: int = 4) -> None:
        super().__init__()
        self.decimals = decimals
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        parts = [f"{k}: {format_value(k, v, self.decimals)}" for k, v in (logs or {}).items()]
        print(" - ".join([f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}", f"{seconds:.1f}s", *parts]),
              flush=True)
