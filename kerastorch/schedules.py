"""Learning-rate schedule presets that know the run's total number of optimizer updates.

Pass one (or its name, e.g. "warmup_cosine") to ``compile(lr_scheduler=...)``: ``fit`` counts
the optimizer updates of the whole run and binds it, so it ends at its end value on the last update.

The definitions, for ``total`` updates numbered ``u = 0 .. total - 1`` and a warmup of
``W`` updates (an int, or a float fraction of ``total`` rounded half up to an int):

- warmup: update ``u < W`` uses ``peak * (u + 1) / (W + 1)``, so the first update already
  learns (no update is wasted at lr 0) and update ``W`` is exactly at the peak;
- decay: from the peak at update ``W`` to the end value at update ``total - 1``, with
  progress ``p = (u - W) / (total - 1 - W)``;
- update ``total - 1`` and any later position return the end value, so after the run the
  optimizer shows the end value. With ``min_lr=0`` (or ``end_lr=0``) the last update
  therefore uses lr 0: set a small positive end value if that batch matters;
- a warmup of ``total - 1`` updates or more is clipped to ``total - 1``: the lr rises until the
  second-to-last update and the last update uses the end value (``total=1``: the only update).

Each parameter group scales its own base lr (the ``initial_lr`` torch records on the
first scheduler, so binding again starts from the original lrs, not the decayed ones).

Example:
    >>> sched = WarmupCosine(warmup=2)
    >>> [round(sched.lr_at(u, 6, base_lr=1.0), 4) for u in range(6)]
    [0.3333, 0.6667, 1.0, 0.75, 0.25, 0.0]
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch

__all__ = ["ConstantWithWarmup", "OneCycle", "Schedule", "ScheduleLR", "WarmupCosine", "WarmupLinear",
           "resolve_schedule"]


def _cosine(start: float, end: float, progress: float) -> float:
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _linear(start: float, end: float, progress: float) -> float:
    return start + (end - start) * progress


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_warmup(warmup: Any) -> int | float:
    """``warmup`` as given (an int count or a float fraction), or a ValueError/TypeError naming the fix."""
    if _is_int(warmup) and warmup < 0:
        raise ValueError(f"`warmup` must be >= 0 optimizer updates. Received: warmup={warmup!r}. "
                         "E.g. warmup=500, or a fraction of the total such as warmup=0.05.")
    if isinstance(warmup, float) and not 0.0 <= warmup < 1.0:
        raise ValueError("`warmup` as a float is a fraction of the total updates and must be in [0, 1). "
                         f"Received: warmup={warmup!r}. E.g. warmup=0.05, or an int such as warmup=500.")
    if not _is_int(warmup) and not isinstance(warmup, float):
        raise TypeError("`warmup` must be an int number of optimizer updates or a float fraction of the total. "
                        f"Received: warmup={warmup!r} ({type(warmup).__name__}). E.g. warmup=500 or warmup=0.05.")
    return int(warmup) if _is_int(warmup) else float(warmup)


def _check_number(name: str, value: Any, example: str, zero_ok: bool) -> float:
    if not _is_number(value) or value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"`{name}` must be a number {bound}. Received: {name}={value!r}. E.g. {name}={example}.")
    return float(value)


def _check_total(total: Any) -> int:
    if not _is_int(total) or total < 1:
        raise ValueError("`total` must be an int >= 1: the number of optimizer updates of the run. "
                         f"Received: total={total!r}.")
    return int(total)


def _warmup_updates(warmup: int | float, total: int) -> int:
    """The warmup's length in updates for a run of ``total`` updates, clipped to ``total - 1``."""
    count = warmup if isinstance(warmup, int) else math.floor(warmup * total + 0.5)
    return min(count, total - 1)


class Schedule:
    """Base class of the presets: a learning rate for each optimizer update of a run of known length.

    Subclasses define ``_end(base_lr)`` (the value of the last update) and
    ``_before_end(update, total, base_lr)`` (any earlier update).
    """

    def lr_at(self, update: int, total: int, base_lr: float) -> float:
        """The lr of 0-based optimizer update ``update`` of ``total``; the end value from ``total - 1`` on.

        Example:
            >>> ConstantWithWarmup(warmup=3).lr_at(0, total=10, base_lr=0.1)
            0.025
        """
        total = _check_total(total)
        if not _is_int(update) or update < 0:
            raise ValueError(f"`update` must be an int >= 0 (a 0-based optimizer update). Received: update={update!r}.")
        if update >= total - 1:
            return self._end(base_lr)
        return self._before_end(int(update), total, base_lr)

    def bind(self, optimizer: torch.optim.Optimizer, total: int) -> ScheduleLR:
        """A torch scheduler on ``optimizer`` that follows this schedule over ``total`` updates.

        It sets the lr of update 0 at once; call its ``step()`` after every optimizer update.

        Example:
            >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
            >>> scheduler = WarmupLinear(warmup=1).bind(opt, total=3)
            >>> lrs = []
            >>> for _ in range(3):
            ...     lrs.append(opt.param_groups[0]["lr"])
            ...     opt.step()
            ...     scheduler.step()
            >>> lrs, opt.param_groups[0]["lr"]
            ([0.5, 1.0, 0.0], 0.0)
        """
        return ScheduleLR(optimizer, self, total)

    def check_base_lr(self, base_lr: float, group: int) -> None:
        """Raise if this schedule makes no sense for a param group's base lr (called by ``bind``)."""

    def _end(self, base_lr: float) -> float:
        raise NotImplementedError

    def _before_end(self, update: int, total: int, base_lr: float) -> float:
        raise NotImplementedError


class _WarmupThenDecay(Schedule):
    """Linear warmup from ``base_lr / (W + 1)`` to ``base_lr`` on update W, then ``_decay`` to ``_end``."""

    warmup: int | float
    _end_name = "the end lr"

    def check_base_lr(self, base_lr: float, group: int) -> None:
        if self._end(base_lr) > base_lr:
            name = self._end_name
            raise ValueError(f"`{name}` must not exceed the optimizer's learning rate, or the decay would rise. "
                             f"Received: {name}={self._end(base_lr)!r} with param group {group}'s lr={base_lr!r}. "
                             f"E.g. {name}=0.0, or raise the optimizer's lr.")

    def _before_end(self, update: int, total: int, base_lr: float) -> float:
        warmup = _warmup_updates(self.warmup, total)
        if update < warmup:
            return base_lr * (update + 1) / (warmup + 1)
        # update < total - 1 here, and warmup <= update, so the denominator is >= 1.
        return self._decay(base_lr, (update - warmup) / (total - 1 - warmup))

    def _decay(self, base_lr: float, progress: float) -> float:
        raise NotImplementedError


class WarmupCosine(_WarmupThenDecay):
    """Linear warmup to the optimizer's lr, then a half cosine down to ``min_lr`` on the last update.

    Args:
        warmup: warmup updates (int >= 0) or a fraction of the total (float in [0, 1)).
        min_lr: the lr of the last update, the same for every param group (<= each group's lr).

    Example:
        >>> sched = WarmupCosine(warmup=0.25, min_lr=0.1)
        >>> sched
        WarmupCosine(warmup=0.25, min_lr=0.1)
        >>> [round(sched.lr_at(u, 4, base_lr=1.0), 3) for u in range(4)]
        [0.5, 1.0, 0.55, 0.1]
    """

    _end_name = "min_lr"

    def __init__(self, warmup: int | float = 0.0, min_lr: float = 0.0) -> None:
        self.warmup = _check_warmup(warmup)
        self.min_lr = _check_number("min_lr", min_lr, "1e-6", zero_ok=True)

    def __repr__(self) -> str:
        return f"WarmupCosine(warmup={self.warmup!r}, min_lr={self.min_lr!r})"

    def _end(self, base_lr: float) -> float:
        return self.min_lr

    def _decay(self, base_lr: float, progress: float) -> float:
        return _cosine(base_lr, self.min_lr, progress)


class WarmupLinear(_WarmupThenDecay):
    """Linear warmup to the optimizer's lr, then a straight line down to ``end_lr`` on the last update.

    Args:
        warmup: warmup updates (int >= 0) or a fraction of the total (float in [0, 1)).
        end_lr: the lr of the last update, the same for every param group (<= each group's lr).

    Example:
        >>> [WarmupLinear(warmup=1).lr_at(u, 4, base_lr=1.0) for u in range(4)]
        [0.5, 1.0, 0.5, 0.0]
    """

    _end_name = "end_lr"

    def __init__(self, warmup: int | float = 0.0, end_lr: float = 0.0) -> None:
        self.warmup = _check_warmup(warmup)
        self.end_lr = _check_number("end_lr", end_lr, "0.0", zero_ok=True)

    def __repr__(self) -> str:
        return f"WarmupLinear(warmup={self.warmup!r}, end_lr={self.end_lr!r})"

    def _end(self, base_lr: float) -> float:
        return self.end_lr

    def _decay(self, base_lr: float, progress: float) -> float:
        return _linear(base_lr, self.end_lr, progress)


class ConstantWithWarmup(_WarmupThenDecay):
    """Linear warmup to the optimizer's lr, then constant at it (the end value is the lr itself).

    Args:
        warmup: warmup updates (int >= 0) or a fraction of the total (float in [0, 1));
            the default, 0.1, is what ``"constant_with_warmup"`` gives.

    Example:
        >>> [ConstantWithWarmup(warmup=3).lr_at(u, 6, base_lr=1.0) for u in range(6)]
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    """

    def __init__(self, warmup: int | float = 0.1) -> None:
        self.warmup = _check_warmup(warmup)

    def __repr__(self) -> str:
        return f"ConstantWithWarmup(warmup={self.warmup!r})"

    def _end(self, base_lr: float) -> float:
        return base_lr

    def _decay(self, base_lr: float, progress: float) -> float:
        return base_lr


class OneCycle(Schedule):
    """The 1cycle policy: from ``peak / div_factor`` up to the peak, then down to ``start / final_div_factor``.

    The peak is ``max_lr`` for every param group (as torch's ``OneCycleLR``), or with
    ``max_lr=None`` each group's own lr. It lands exactly on update
    ``P = round(pct_start * total) - 1`` (at least 0); the last update is at the end value.
    This equals ``torch.optim.lr_scheduler.OneCycleLR(three_phase=False,
    cycle_momentum=False)`` whenever ``pct_start * total`` is an integer; otherwise torch
    puts its peak between two updates and never uses ``max_lr`` itself, while this preset
    rounds the peak to an update. Momentum is not cycled: combine with a fixed momentum.

    Args:
        max_lr: the peak lr (> 0), or None for each param group's own lr.
        pct_start: the fraction of the updates spent rising, in [0, 1).
        div_factor: the first update's lr is ``peak / div_factor``.
        final_div_factor: the last update's lr is ``peak / div_factor / final_div_factor``.
        anneal: "cos" or "linear", for both the rise and the fall.

    Example:
        >>> sched = OneCycle(max_lr=1.0, pct_start=0.5, div_factor=10.0, final_div_factor=100.0)
        >>> [round(sched.lr_at(u, 4, base_lr=0.01), 4) for u in range(4)]
        [0.1, 1.0, 0.5005, 0.001]
    """

    def __init__(self, max_lr: float | None = None, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, anneal: str = "cos") -> None:
        if max_lr is not None and (not _is_number(max_lr) or max_lr <= 0):
            raise ValueError("`max_lr` must be None (each param group's lr is the peak) or a number > 0. "
                             f"Received: max_lr={max_lr!r}. E.g. max_lr=0.01.")
        if not _is_number(pct_start) or not 0 <= pct_start < 1:
            raise ValueError("`pct_start` must be in [0, 1): the fraction of the updates spent rising to the peak. "
                             f"Received: pct_start={pct_start!r}. E.g. pct_start=0.3.")
        if anneal not in ("cos", "linear"):
            raise ValueError(f"`anneal` must be 'cos' or 'linear'. Received: anneal={anneal!r}.")
        self.max_lr = None if max_lr is None else float(max_lr)
        self.pct_start = float(pct_start)
        self.div_factor = _check_number("div_factor", div_factor, "25.0", zero_ok=False)
        self.final_div_factor = _check_number("final_div_factor", final_div_factor, "1e4", zero_ok=False)
        self.anneal = anneal

    def __repr__(self) -> str:
        return (f"OneCycle(max_lr={self.max_lr!r}, pct_start={self.pct_start!r}, div_factor={self.div_factor!r}, "
                f"final_div_factor={self.final_div_factor!r}, anneal={self.anneal!r})")

    def _peak(self, base_lr: float) -> float:
        return base_lr if self.max_lr is None else self.max_lr

    def _end(self, base_lr: float) -> float:
        return self._peak(base_lr) / self.div_factor / self.final_div_factor

    def _before_end(self, update: int, total: int, base_lr: float) -> float:
        curve = _cosine if self.anneal == "cos" else _linear
        peak = self._peak(base_lr)
        peak_update = min(max(math.floor(self.pct_start * total + 0.5) - 1, 0), total - 1)
        if update < peak_update:
            return curve(peak / self.div_factor, peak, update / peak_update)
        return curve(peak, self._end(base_lr), (update - peak_update) / (total - 1 - peak_update))


class ScheduleLR(torch.optim.lr_scheduler.LRScheduler):
    """A torch scheduler that sets each param group's lr to ``schedule.lr_at(update, total, base_lr)``.

    Built by ``Schedule.bind``. ``last_epoch`` counts the optimizer updates done; ``step()``
    goes after each one. ``state_dict()`` holds plain numbers and strings only (it loads with
    ``torch.load(weights_only=True)``); loading it restores the position, the total and the
    base lrs, and sets the optimizer's lrs to those of that position.

    Example:
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> ConstantWithWarmup(warmup=1).bind(opt, total=5).state_dict()["total"], opt.param_groups[0]["lr"]
        (5, 0.05)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule, total: int) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"`optimizer` must be a torch.optim.Optimizer. Received: {type(optimizer).__name__}.")
        if not isinstance(schedule, Schedule):
            raise TypeError("`schedule` must be a kerastorch.schedules preset, e.g. WarmupCosine(warmup=0.1). "
                            f"Received: {type(schedule).__name__}.")
        self.schedule, self.total = schedule, _check_total(total)
        # The lrs torch will record as initial_lr (kept from an earlier scheduler), as floats once
        # here so that no step reads a tensor lr back from the device.
        self._base_floats = [float(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups]
        for index, base_lr in enumerate(self._base_floats):
            schedule.check_base_lr(base_lr, index)
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        return [self.schedule.lr_at(self.last_epoch, self.total, base) for base in self._base_floats]

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": repr(self.schedule), "total": self.total, "last_epoch": self.last_epoch,
                "base_lrs": list(self._base_floats), "step_count": self._step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = sorted({"schedule", "total", "last_epoch", "base_lrs"} - set(state_dict))
        if missing:
            raise ValueError(f"This is not a ScheduleLR state dict: it lacks {missing}.")
        if state_dict["schedule"] != repr(self.schedule):
            raise ValueError(f"The saved schedule is {state_dict['schedule']}, this one is {self.schedule!r}: "
                             "bind the saved schedule to resume it, or start a fresh run.")
        if len(state_dict["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"The saved schedule has {len(state_dict['base_lrs'])} param group(s), the optimizer "
                             f"{len(self.optimizer.param_groups)}: bind it to an optimizer built the same way.")
        self.total = _check_total(state_dict["total"])
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("step_count", self.last_epoch + 1))
        self._base_floats = [float(lr) for lr in state_dict["base_lrs"]]
        self.base_lrs = list(self._base_floats)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = self.get_lr()


_PRESETS: dict[str, type[Schedule]] = {
    "one_cycle": OneCycle,
    "warmup_cosine": WarmupCosine,
    "warmup_linear": WarmupLinear,
    "constant_with_warmup": ConstantWithWarmup,
}


def resolve_schedule(spec: Any) -> Schedule | None:
    """The preset that ``compile(lr_scheduler=spec)`` names, or None when ``spec`` is not one.

    Args:
        spec: a preset's name ("one_cycle", "warmup_cosine", "warmup_linear",
            "constant_with_warmup"; any case) for that preset with its defaults, or a
            ``Schedule`` (returned as is). Anything else (a torch scheduler, a callable,
            None) gives None: the engine handles it as before.

    Raises:
        ValueError: for a string that names no preset.

    Example:
        >>> resolve_schedule("One_Cycle")
        OneCycle(max_lr=None, pct_start=0.3, div_factor=25.0, final_div_factor=10000.0, anneal='cos')
        >>> resolve_schedule(None) is None
        True
    """
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, str):
        return None
    preset = _PRESETS.get(spec.lower())
    if preset is None:
        valid = ", ".join(repr(name) for name in _PRESETS)
        raise ValueError(f"Unknown `lr_scheduler` name: {spec!r}. Valid names: {valid}; or pass a "
                         "kt.schedules preset, a torch.optim.lr_scheduler object or a callable optimizer -> scheduler.")
    return preset()
