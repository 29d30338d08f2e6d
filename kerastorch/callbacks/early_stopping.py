"""EarlyStopping: stop training when a monitored value stops improving."""
from __future__ import annotations

from typing import Any

import torch

from ..checks import require_non_negative_int
from ..distributed import is_rank_zero
from .base import Callback
from .monitor import check_monitor, is_better, monitored_value, resolve_mode


class EarlyStopping(Callback):
    """Stop ``fit`` once ``monitor`` has not improved for ``patience`` epochs.

    An epoch *counts as progress* when its value beats the best so far by more
    than ``min_delta`` and, if ``baseline`` is given, also beats ``baseline`` by
    more than ``min_delta``. ``wait`` counts the epochs since the last progress;
    training stops at the end of the epoch where ``wait`` reaches ``patience``
    (``patience=0``: at the first epoch without progress).

    Args:
        monitor: the epoch-log key to watch ("val_loss", "val_acc", "loss", ...).
            A name ``fit`` will never log is a ValueError before the first epoch.
        min_delta: improvements of at most this much do not count.
        patience: epochs without progress before stopping.
        verbose: > 0 prints one line at the end of training when it stopped
            or restored weights.
        mode: "min", "max" or "auto" ("max" when the name contains acc, auc,
            precision, recall or f1).
        baseline: a value the monitor must beat; epochs that do not beat it are
            epochs without progress even if they improve on the best.
        restore_best_weights: keep a copy (``clone()``, on the model's device)
            of the weights of the best epoch and load it when training ends,
            whether training was stopped by this callback or not (as Keras 3 does).
            Costs one extra copy of the weights in device memory.
        start_from_epoch: epochs (0-based indices) before this one are ignored.

    A ``val_*`` monitor is read only on the epochs that validate (``fit(validation_freq=N)``):
    the others are skipped, so ``patience`` counts validated epochs.

    Attributes:
        best: the best monitored value (None until one is seen).
        best_epoch: 0-based index of the best epoch (0 until one is seen, as in Keras).
        stopped_epoch: 0-based index of the epoch after which this callback
            stopped training, 0 when it did not stop it (as in Keras; ``stopped``
            tells the two apart when it stopped after the first epoch).
        stopped: True when this callback stopped the last fit.
        wait: epochs since the last progress.

    ``state_dict()`` holds all of the above (and the best weights), so a resumed
    ``fit`` continues counting where the checkpoint left off.

    Example:
        >>> cb = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__()
        require_non_negative_int("patience", patience)
        require_non_negative_int("start_from_epoch", start_from_epoch)
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.patience = patience
        self.verbose = verbose
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.stopped = False
        self.best_weights: dict[str, torch.Tensor] | None = None

    def check_params(self) -> None:
        check_monitor(self.monitor, self)  # before any callback's on_train_begin opens a file

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()  # a resumed fit then loads the saved counters (after on_train_begin)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch < self.start_from_epoch:
            return
        current = monitored_value(self.monitor, logs or {}, self)
        if current is None:  # an epoch without validation: nothing to compare
            return
        if is_better(current, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.baseline is None or is_better(current, self.baseline, self.mode, self.min_delta):
                self.wait = 0
                return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch, self.stopped = epoch, True
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        restored = self.restore_best_weights and self.best_weights is not None
        if restored:
            self.model.load_state_dict(self.best_weights)
        if self.verbose > 0 and is_rank_zero() and (restored or self.stopped):
            parts = []
            if self.stopped:
                parts.append(f"stopped after epoch {self.epoch_number(self.stopped_epoch)}")
            parts.append(f"best {self.monitor}={self.best:.6g} at epoch {self.best_epoch + 1}"
                         if self.best is not None else f"no finite {self.monitor} seen")
            if restored:
                parts.append(f"restored the weights of epoch {self.best_epoch + 1}")
            print("EarlyStopping: " + "; ".join(parts))  # noqa: T201 (verbose > 0: output the user asked for)

    def state_dict(self) -> dict[str, Any]:
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "stopped": self.stopped, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Checkpoints written before the Keras attributes held None for "not yet".
        self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"] or 0
        self.stopped = state.get("stopped", state["stopped_epoch"] is not None)
        self.stopped_epoch, self.best_weights = state["stopped_epoch"] or 0, state["best_weights"]
