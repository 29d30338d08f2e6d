"""LearningRateScheduler: set the learning rate from a function of the epoch at each epoch's start."""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..distributed import is_rank_zero
from .base import Callback


def set_group_lr(group: dict[str, Any], value: float) -> None:
    """Set an optimizer param group's lr in place (a tensor lr keeps its tensor)."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value


def _as_lr(value: Any, epoch: int) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError("The `schedule` of LearningRateScheduler must return a finite number >= 0. "
                         f"Received: {value!r} for epoch {epoch}")
    return float(value)


class LearningRateScheduler(Callback):
    """At the start of each epoch set the lr to ``schedule(epoch, lr)``.

    ``epoch`` is the 0-based epoch index (as in every hook) and ``lr`` the
    current learning rate. With several optimizer param groups the schedule is
    called once per group with that group's lr, so relative group rates can be
    kept (one group: exactly Keras's behaviour). The epoch's ``lr`` in the
    history is the value the schedule returned for it.

    Args:
        schedule: ``fn(epoch: int, lr: float) -> float``.
        verbose: > 0 prints one line per epoch with the new learning rate.

    Example:
        >>> cb = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch >= 10 else lr)
    """

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"`schedule` must be a function (epoch, lr) -> lr. Received: {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.session is not None and self.session.config.lr_scheduler is not None:
            warnings.warn("LearningRateScheduler and the compiled `lr_scheduler` both set the learning "
                          "rate; LearningRateScheduler overrides it at each epoch start.",
                          RuntimeWarning, stacklevel=2)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        new_lrs = []
        for group in self.model.optimizer.param_groups:
            lr = _as_lr(self.schedule(epoch, float(group["lr"])), epoch)
            set_group_lr(group, lr)
            new_lrs.append(lr)
        if self.verbose > 0 and is_rank_zero():
            shown = ", ".join(f"{lr:.6g}" for lr in new_lrs)
            number = self.epoch_number(epoch)
            print(f"Epoch {number}: LearningRateScheduler setting learning rate to {shown}.")  # noqa: T201 (verbose > 0)
