"""History: records one row per epoch into the model's history frame."""
from __future__ import annotations

from typing import Any

from .base import Callback


class History(Callback):
    """Append ``{"epoch": n, **logs}`` to ``model.history`` each epoch.

    ``fit`` always adds it first, so rows accumulate over repeated ``fit`` calls, and ``n``
    continues from the last row: a second ``fit(epochs=3)`` after three epochs adds 4, 5, 6
    (``fit(epochs=6, initial_epoch=3)``, Keras's way to continue, numbers them the same).

    Example:
        >>> h = History()
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row = {"epoch": self.session.epoch_base + epoch + 1}  # inline: History runs every epoch of every fit
        row.update(order_logs(logs or {}))
        self.session.record.history_rows.append(row)


def order_logs(logs: dict[str, Any]) -> dict[str, Any]:
    """Training values first, then val_*, then lr: the column order users read."""
    train = {k: v for k, v in logs.items() if not k.startswith("val_") and k != "lr"}
    val = {k: v for k, v in logs.items() if k.startswith("val_")}
    tail = {"lr": logs["lr"]} if "lr" in logs else {}
    return {**train, **val, **tail}
