"""Training control: when validation is due, how many validation batches, when a time limit stops the
run, and the debug runs (``fast_dev_run``, ``overfit_batches``). Integer arithmetic and one clock read
per step (only with ``max_time``); no device read.

:func:`training_controls` checks ``fit``'s arguments and returns one :class:`TrainingControls`, the
owner of these decisions for the call: the epoch loop asks it whether to validate after an epoch, and
the batch loop whether the time is up.

The peers' known traps this avoids: ``validation_freq`` is Keras's (an int: every N epochs, or a
collection of 1-based epochs), not Lightning's ``check_val_every_n_epoch`` / ``val_check_interval``
pair whose ``1`` and ``1.0`` mean different things; ``max_time`` stops *before* the batch that would
pass the limit (predicted from the mean step time so far), and under torchrun all ranks stop at the
same batch.
"""
from __future__ import annotations

import datetime
import itertools
import numbers
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import torch

from ..callbacks.base import as_callback_list
from ..checks import require_positive_int
from ..data import LoaderSource, TensorBatcher
from ..distributed import any_rank, broadcast_int, launched_distributed


@dataclass
class TrainingControls:
    """One fit's cadence and limits (see :func:`training_controls`).

    Attributes:
        validation_freq: validate after every N-th epoch (int), or after these 1-based epochs (a frozenset).
        validation_steps: at most this many validation batches per validation (None: all).
        validation_every_n_steps: also validate after every N-th training batch, counted over the whole run
            (global steps, across epochs and fits; any N, larger than an epoch too); 0: off.
        max_time: seconds of training after which no new batch starts (None: no limit).
        fast_dev_run: batches of a smoke run (0: off): one epoch of that many training and validation
            batches, nothing kept in the history, no callback that writes files.
        overfit_batches: train and validate on the same first N batches (0: off).
        clock: the clock ``max_time`` is measured with (None: ``time.monotonic``; a test may give a fake one).
    """

    validation_freq: int | frozenset[int] = 1
    validation_steps: int | None = None
    validation_every_n_steps: int = 0
    max_time: float | None = None
    fast_dev_run: int = 0
    overfit_batches: int = 0
    clock: Callable[[], float] | None = None
    started: float = field(default=0.0, init=False)
    steps_run: int = field(default=0, init=False)
    time_up: bool = field(default=False, init=False)
    _now: Callable[[], float] = field(default=time.monotonic, init=False, repr=False)

    def validates_after(self, epoch: int) -> bool:
        """Whether the 0-based ``epoch`` (Keras's index, ``initial_epoch`` included) ends with validation.

        Example:
            >>> every_2nd = TrainingControls(validation_freq=2)
            >>> listed = TrainingControls(validation_freq=frozenset({1, 5}))
            >>> [e + 1 for e in range(6) if every_2nd.validates_after(e)]
            [2, 4, 6]
            >>> [e + 1 for e in range(6) if listed.validates_after(e)]
            [1, 5]
        """
        if self.fast_dev_run or self.overfit_batches:
            return True
        number = epoch + 1
        if isinstance(self.validation_freq, int):
            return number % self.validation_freq == 0
        return number in self.validation_freq

    def start(self) -> None:
        """Training begins: the time limit counts from here."""
        self._now = self.clock or time.monotonic
        self.started, self.steps_run, self.time_up = self._now(), 0, False

    def no_time_for_another_step(self, device: torch.device) -> bool:
        """After a step (``max_time`` set): True when the next one would end past the limit.

        The next step is predicted to take the mean step time so far. Under torchrun the ranks agree
        (one all-reduce per step, paid only with ``max_time``), so all stop after the same batch.

        Example:
            >>> now = [0.0]; controls = TrainingControls(max_time=10.0, clock=lambda: now[0]); controls.start()
            >>> now[0] = 4.0; controls.no_time_for_another_step(torch.device("cpu"))  # 4 s a step: 8 s < 10 s
            False
            >>> now[0] = 8.0; controls.no_time_for_another_step(torch.device("cpu"))  # 8 + 4 > 10
            True
        """
        self.steps_run += 1
        elapsed = self._now() - self.started
        up = elapsed + elapsed / self.steps_run > float(self.max_time)  # type: ignore[arg-type]  # set with max_time
        if launched_distributed():
            up = any_rank(up, device)
        self.time_up = up
        return up


def training_controls(validation_freq: Any = 1, validation_steps: Any = None, max_time: Any = None,
                      fast_dev_run: Any = False, overfit_batches: Any = 0,
                      validation_every_n_steps: Any = None) -> TrainingControls:
    """Check ``fit``'s control arguments (before anything runs) and return them as one object.

    Args:
        validation_freq: validate every N epochs (int), or after these 1-based epochs (a list), as Keras;
            epochs without validation have no ``val_*`` logs (NaN in the history; monitors skip them).
        validation_steps: at most this many validation batches each time (also ends an endless stream).
        max_time: seconds or a ``datetime.timedelta``: no batch starts that would end past it; checkpoint
            callbacks then write their interrupt file (``resume_from`` continues); torchrun ranks stop together.
        fast_dev_run: True or N: one epoch of N training and N validation batches (a smoke test), no history
            row, and the callbacks that write files (checkpoints, CSV, TensorBoard, MLflow) left out.
        overfit_batches: N: train and validate on the same first N batches every epoch (a debugging aid).
        validation_every_n_steps: also validate after every N-th training batch (global count: any N, also more
            than an epoch); each is a row of ``model.validation_history`` (its global step, epoch and ``val_*``).
            Epoch-end validation still follows ``validation_freq`` (``validation_freq=[]`` is refused: to validate
            only by steps, pass a ``validation_freq`` beyond ``epochs``).

    Example:
        >>> training_controls(validation_freq=[1, 3], max_time=datetime.timedelta(minutes=2)).max_time
        120.0
        >>> training_controls(fast_dev_run=True).fast_dev_run
        1
    """
    freq = _validation_freq(validation_freq)
    require_positive_int("validation_steps", validation_steps, allow_none=True)
    require_positive_int("validation_every_n_steps", validation_every_n_steps, allow_none=True)
    if isinstance(max_time, datetime.timedelta):
        max_time = max_time.total_seconds()
    if max_time is not None and (isinstance(max_time, bool) or not isinstance(max_time, numbers.Real)
                                 or not float(max_time) > 0):
        raise ValueError("`max_time` must be a positive number of seconds or a datetime.timedelta. Received: "
                         f"max_time={max_time!r}. E.g. max_time=3600 or datetime.timedelta(hours=1).")
    if fast_dev_run is True:
        fast_dev_run = 1
    elif fast_dev_run is False:
        fast_dev_run = 0
    else:
        require_positive_int("fast_dev_run", fast_dev_run)
    if overfit_batches:
        require_positive_int("overfit_batches", overfit_batches)
    if fast_dev_run and overfit_batches:
        raise ValueError("Pass either `fast_dev_run` or `overfit_batches`, not both: each picks the batches to run.")
    return TrainingControls(freq, None if validation_steps is None else int(validation_steps),
                            int(validation_every_n_steps or 0), None if max_time is None else float(max_time),
                            int(fast_dev_run), int(overfit_batches or 0))


def _validation_freq(value: Any) -> int | frozenset[int]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        require_positive_int("validation_freq", value)
        return int(value)
    if isinstance(value, Collection) and not isinstance(value, (str, bytes)) and value and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) >= 1 for v in value):
        return frozenset(int(v) for v in value)
    raise ValueError("`validation_freq` must be a positive int (validate every N epochs) or a collection of "
                     f"1-based epoch numbers, e.g. [1, 5, 10]. Received: validation_freq={value!r}")


def stop_for_time(session: Any, epoch: int, batches: int, finished: bool) -> None:
    """``max_time`` ended training: mid-epoch, checkpoint callbacks write their interrupt files; say where."""
    limit, number = session.controls.max_time, session.epoch_number(epoch)
    if finished:
        warnings.warn(f"max_time={limit:g}s reached at the end of epoch {number}: training stopped; model.history "
                      "keeps the finished epochs.", UserWarning, stacklevel=4)
        return
    saved = session.callbacks.save_interrupt_checkpoints()
    where = f" Interrupt checkpoint: {', '.join(saved)}; fit(resume_from=...) continues from it." if saved else ""
    warnings.warn(f"max_time={limit:g}s reached: training stopped in epoch {number} after {batches} batch(es); "
                  f"model.history keeps the finished epochs.{where}", UserWarning, stacklevel=4)


def callbacks_to_run(callbacks: Any, controls: TrainingControls) -> list[Any]:
    """The user's callbacks; a fast_dev_run leaves out those that write files (as Lightning's does)."""
    given = as_callback_list(callbacks)
    return [cb for cb in given if not getattr(cb, "writes_files", False)] if controls.fast_dev_run else given


def first_batches(source: Any, count: int) -> LoaderSource:
    """The first ``count`` batches of ``source`` in order (in-memory data unshuffled), kept to be rerun."""
    if isinstance(source, TensorBatcher):
        source.shuffle = False
    batches = list(itertools.islice(iter(source), count))
    if not batches:
        raise ValueError(f"`overfit_batches={count}`: the training data yields no batch.")
    return LoaderSource(batches)


def bind_schedule(config: Any, batches: Any, epochs_to_run: int) -> None:
    """A :mod:`kerastorch.schedules` preset gets this fit's number of optimizer updates: the run's total.

    Counted from the epoch iterator (epochs, batches per epoch after ``steps_per_epoch`` and this rank's
    shard, ``grad_accum_steps``, a short last window); under torchrun rank 0's count is every rank's. A
    resumed fit counts the same total from the same arguments and continues at the checkpoint's update.
    """
    if config.schedule is None:
        return
    total = batches.planned_updates(epochs_to_run)
    if total is None:
        raise ValueError(f"The learning-rate schedule {config.schedule!r} needs the run's number of optimizer updates, "
                         "but the training data has no length (a generator or an IterableDataset). Pass "
                         "steps_per_epoch=... to fit, or use a scheduler that needs no total.")
    if launched_distributed():
        total = broadcast_int(total, config.device)
    config.lr_scheduler = config.schedule.bind(config.optimizer, max(total, 1))
