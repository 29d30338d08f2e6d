"""LearningRateScheduler: set the learning rate from a function of the epoch at each epoch's start."""
from __future__ import annotations

import inspect
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


def takes_lr(schedule: Callable[..., Any]) -> bool:
    """True when ``schedule`` accepts ``(epoch, lr)``; False when it accepts ``(epoch)`` only.

    Decided once from the signature (Keras instead calls ``schedule(epoch, lr)`` and falls
    back to ``schedule(epoch)`` on any TypeError, which also hides a TypeError raised inside
    the schedule). A signature Python cannot read is called with ``(epoch, lr)``.

    Example:
        >>> takes_lr(lambda epoch, lr: lr), takes_lr(lambda epoch: 0.1)
        (True, False)
    """
    try:
        signature = inspect.signature(schedule)
    except (TypeError, ValueError):
        return True
    for args in ((0, 0.1), (0,)):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return len(args) == 2
    raise TypeError("`schedule` must be a function (epoch, lr) -> lr or epoch -> lr. "
                    f"Received: schedule={schedule!r} with the signature {signature}")


def _as_lr(value: Any, epoch: int) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError("The `schedule` of LearningRateScheduler must return a finite number >= 0. "
                         f"Received: {value!r} for epoch {epoch}")
    return float(value)


class LearningRateScheduler(Callback):
    """At the start of each epoch set the lr to ``schedule(epoch, lr)`` (or ``schedule(epoch)``).

    ``epoch`` is the 0-based epoch index (as in every hook) and ``lr`` the
    current learning rate; a schedule taking one argument gets the epoch only,
    as Keras's older form. With several optimizer param groups the schedule is
    called once per group with that group's lr, so relative group rates can be
    kept (one group: exactly Keras's behaviour). The epoch's ``lr`` in the
    history is the value the schedule returned for it.

    Args:
        schedule: ``fn(epoch: int, lr: float) -> float`` or ``fn(epoch: int) -> float``.
        verbose: > 0 prints one line per epoch with the new learning rate.

    Example:
        >>> cb = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch >= 10 else lr)
        >>> LearningRateScheduler(lambda epoch: 1.0 / (2.0 + epoch)).takes_lr
        False
    """

    def __init__(self, schedule: Callable[[int, float], float] | Callable[[int], float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"`schedule` must be a function (epoch, lr) -> lr. Received: {schedule!r}")
        self.schedule: Callable[..., Any] = schedule
        self.takes_lr = takes_lr(schedule)
        self.verbose = verbose

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.session is not None and self.session.config.lr_scheduler is not None:
            warnings.warn("LearningRateScheduler and the compiled `lr_scheduler` both set the learning "
                          "rate; LearningRateScheduler overrides it at each epoch start.",
                          RuntimeWarning, stacklevel=2)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        new_lrs = []
        for group in self.model.optimizer.param_groups:
            value = self.schedule(epoch, float(group["lr"])) if self.takes_lr else self.schedule(epoch)
            lr = _as_lr(value, epoch)
            set_group_lr(group, lr)
            new_lrs.append(lr)
        if self.verbose > 0 and is_rank_zero():
            shown = ", ".join(f"{lr:.6g}" for lr in new_lrs)
            number = self.epoch_number(epoch)
            print(f"Epoch {number}: LearningRateScheduler setting learning rate to {shown}.")  # noqa: T201 (verbose > 0)
