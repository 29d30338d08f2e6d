"""ReduceLROnPlateau: multiply the learning rate by ``factor`` when a monitored value stalls."""
from __future__ import annotations

import warnings
from typing import Any

from ..checks import require_non_negative_int
from ..distributed import is_rank_zero
from .base import Callback
from .lr_scheduler import set_group_lr
from .monitor import check_monitor, is_better, monitored_value, resolve_mode


class ReduceLROnPlateau(Callback):
    """Reduce the learning rate after ``patience`` epochs without improvement.

    At each epoch end (after the epoch's ``lr`` was logged): a value beating the
    best by more than ``min_delta`` resets the wait; otherwise, outside a
    cooldown, the wait grows, and when it reaches ``patience`` every optimizer
    param group whose lr is above ``min_lr`` gets ``max(lr * factor, min_lr)``
    and the wait restarts. The cooldown counts as Keras counts it: a reduction
    sets the counter to ``cooldown``, and each later epoch first decrements it and
    counts towards the wait only once it is 0, so ``cooldown=c`` leaves ``c - 1``
    epochs out (``cooldown=1`` changes nothing; ``cooldown=2`` with ``patience=1``
    reduces every other epoch). The new lr applies from the next epoch, so the
    history's ``lr`` column shows it one row later. A ``val_*`` monitor is read
    only on the epochs that validate (``fit(validation_freq=N)``); the others are
    skipped entirely.

    Args:
        monitor: the epoch-log key to watch (a name fit will never log is a
            ValueError before the first epoch).
        factor: multiplier, 0 < factor < 1.
        patience: epochs without improvement before a reduction.
        verbose: > 0 prints one line per reduction.
        mode: "min", "max" or "auto" (see :func:`~kerastorch.callbacks.monitor.resolve_mode`).
        min_delta: improvements of at most this much do not count.
        cooldown: the cooldown counter set by a reduction (Keras's counting, above).
        min_lr: lower bound of the learning rate.

    ``state_dict()`` holds best, wait and the cooldown counter (the lr itself is
    in the optimizer's state), so a resumed ``fit`` continues where it stopped.

    Example:
        >>> cb = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5)
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0) -> None:
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"`factor` must be between 0 and 1 (exclusive). Received: factor={factor!r}")
        require_non_negative_int("patience", patience)
        require_non_negative_int("cooldown", cooldown)
        if min_lr < 0:
            raise ValueError(f"`min_lr` must be >= 0. Received: min_lr={min_lr!r}")
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.factor = float(factor)
        self.patience = patience
        self.verbose = verbose
        self.min_delta = abs(float(min_delta))
        self.cooldown = cooldown
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0

    def check_params(self) -> None:
        check_monitor(self.monitor, self)  # before any callback's on_train_begin opens a file

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.session is not None and self.session.config.lr_scheduler is not None:
            warnings.warn("ReduceLROnPlateau and the compiled `lr_scheduler` both change the learning "
                          "rate; their effects combine.", RuntimeWarning, stacklevel=2)
        self._reset()

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        current = monitored_value(self.monitor, logs or {}, self)
        if current is None:  # an epoch without validation: nothing counted, not even the cooldown
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if is_better(current, self.best, self.mode, self.min_delta):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():  # read after the decrement, as Keras does
            self.wait += 1
            if self.wait >= self.patience and self._reduce(epoch):
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def _reduce(self, epoch: int) -> bool:
        """Reduce every param group's lr above ``min_lr``; True if any changed."""
        changes = []
        for group in self.model.optimizer.param_groups:
            old = float(group["lr"])
            if old > self.min_lr:
                new = max(old * self.factor, self.min_lr)
                set_group_lr(group, new)
                changes.append(f"{old:.6g} to {new:.6g}")
        if changes and self.verbose > 0 and is_rank_zero():
            print(f"Epoch {self.epoch_number(epoch)}: ReduceLROnPlateau reducing learning rate "  # noqa: T201 (verbose > 0)
                  f"from {', '.join(changes)}.")
        return bool(changes)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait, self.cooldown_counter = state["best"], state["wait"], state["cooldown_counter"]
