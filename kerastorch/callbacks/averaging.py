"""EMA and SWA: average the weights during fit, validate with the average, keep it after fit.

Both keep a :class:`~kerastorch.averaging.WeightAverage` of the model's parameters on their device
(``model._weight_average``, which ``model.averaged_weights()`` swaps in) and share these rules:

* ``validate_with="ema"`` / ``"swa"``: fit's validations (epoch-end and step-level) run on the averaged
  weights, swapped in at ``on_test_begin`` and out at ``on_test_end`` (also when fit raises), so
  training, ``on_epoch_end`` callbacks and checkpoints see the trained weights. ``"raw"``: they do not.
* ``final_weights="averaged"`` (the default, as Keras's ``use_ema=True`` and Lightning's SWA): when fit
  ends, the model holds the average; ``"raw"``: the trained weights, the average a ``with
  model.averaged_weights():`` away. A fit that ends with an exception leaves the trained weights.
  With ``EarlyStopping(restore_best_weights=True)`` the callback listed last writes the weights last.
* Each fit starts a new average; ``state_dict()`` holds the average and its counters, so a training
  checkpoint (``BackupAndRestore``, ``ModelCheckpoint(save_weights_only=False)``) resumes it exactly.
* One averaging callback per fit.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from ..averaging import WeightAverage, batchnorm_buffers, recompute_batchnorm
from ..checkpointing.rng import capture_rng_state, restore_rng_state
from ..checks import require_non_negative_int, require_positive_int
from ..data import move_to_device, unpack_batch
from .base import Callback


def _require_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}. Received: {name}={value!r}")


def _require_number(name: str, value: Any, low: float, high: float | None, example: str) -> None:
    """``value`` a real number in the open interval (low, high) (high None: no upper bound)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (low < value and (high is None or value < high)):
        interval = f"in ({low:g}, {high:g})" if high is not None else f"> {low:g}"
        raise ValueError(f"`{name}` must be a number {interval}. Received: {name}={value!r}. E.g. {name}={example}.")


class _Averaging(Callback):
    """What EMA and SWA share: the average's life in fit, validation swaps, final weights, state."""

    kind = ""

    def __init__(self, validate_with: str, final_weights: str) -> None:
        super().__init__()
        _require_choice("validate_with", validate_with, (self.kind, "raw"))
        _require_choice("final_weights", final_weights, ("averaged", "raw"))
        self.validate_with, self.final_weights = validate_with, final_weights
        self.average: WeightAverage | None = None
        self._running = False  # between on_train_begin and the end of fit: validations swap
        self._swap = contextlib.ExitStack()
        self._pending: dict[str, Any] | None = None  # a state loaded before on_train_begin made the average

    def check_params(self) -> None:
        averaging = [type(cb).__name__ for cb in self.session.callbacks.find(_Averaging)]
        if len(averaging) > 1:
            raise ValueError(f"fit got {len(averaging)} weight-averaging callbacks ({', '.join(averaging)}); "
                             "the model keeps one average per fit. Pass one EMA or SWA callback.")

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.average = WeightAverage(self.model, self.kind)
        self.model._weight_average = self.average  # what model.averaged_weights() swaps in
        self._reset()
        self._running = True
        if self._pending is not None:
            state, self._pending = self._pending, None
            self.load_state_dict(state)

    def _reset(self) -> None:
        """Counters of a new average (subclasses)."""

    def on_test_begin(self, logs: dict | None = None) -> None:
        average = self.average
        if self._running and self.validate_with != "raw" and average is not None and average.count:
            self._swap.enter_context(average.swapped_in(self.model))

    def on_test_end(self, logs: dict | None = None) -> None:
        self._swap.close()  # the trained weights are back before any other hook trains or saves

    def on_exception(self, error: BaseException) -> None:
        self._swap.close()
        self._running = False

    def on_train_end(self, logs: dict | None = None) -> None:
        self._swap.close()
        self._running = False
        if self.final_weights != "averaged" or self.average is None:
            return
        if self.average.count:
            self.average.copy_to(self.model)
        else:
            warnings.warn(f"{type(self).__name__} averaged nothing in this fit, so the model keeps its trained "
                          f"weights. {self._why_empty()}".rstrip(), UserWarning, stacklevel=2)

    def _why_empty(self) -> str:
        return ""

    def state_dict(self) -> dict[str, Any]:
        if self.average is None:
            return {}
        return {"average": self.average.state_dict(), **self._counters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.average is None:
            self._pending = state
            return
        self.average.load_state_dict(state["average"])
        self._load_counters(state)

    def _counters(self) -> dict[str, Any]:
        return {}

    def _load_counters(self, state: dict[str, Any]) -> None: ...


class EMA(_Averaging):
    """Keep an exponential moving average of the weights, updated after optimizer steps.

    After the optimizer step of a batch (with ``grad_accum_steps=k``: once per k batches), every
    ``update_every``-th step moves the average toward the weights:
    ``average = decay_n * average + (1 - decay_n) * weights`` (one fused ``torch._foreach_lerp_``
    on the weights' device, no host-device sync). The first update copies the weights.

    Args:
        decay: how much of the average each update keeps, in (0, 1); the average spans about
            ``1 / (1 - decay)`` updates (1000 for 0.999). Applies per update: with ``update_every=k``
            it spans about ``k / (1 - decay)`` optimizer steps.
        warmup: updates over which that span grows linearly from 1 to ``1 / (1 - decay)``, so early
            (poor) weights leave the average soon: the n-th update (n = 0, 1, ...) uses
            ``decay_n = 1 - 1 / (1 + n * (1 / (1 - decay) - 1) / warmup)`` while ``n < warmup``, then
            ``decay``. ``warmup = 1 / (1 - decay)`` makes the warmup a plain mean of the weights so far;
            0 (the default, as Keras's ``use_ema``): ``decay`` from the second update on.
        update_every: update after every N-th optimizer step (saves time on large models).
        validate_with: "ema": fit's validations use the average (as Keras's ``SwapEMAWeights``);
            "raw": the trained weights.
        final_weights: what the model holds after fit: "averaged" (the EMA, as Keras's
            ``use_ema=True``) or "raw" (the trained weights; ``with model.averaged_weights():`` swaps).

    Buffers (BatchNorm running statistics) are not averaged: the averaged weights use the model's own,
    as Keras averages trainable variables only. A step a GradScaler skips (fp16 overflow) still counts:
    it pulls the average toward unchanged weights. Memory: one copy of the parameters.

    Example:
        >>> import torch; from torch import nn; from kerastorch import Model
        >>> net = Model.wrap(nn.Linear(2, 1)); net.compile("sgd", "mse", device="cpu")
        >>> ema = EMA(decay=0.9, final_weights="raw")
        >>> _ = net.fit(torch.randn(32, 2), torch.randn(32, 1), batch_size=8, epochs=2, verbose=0, callbacks=[ema])
        >>> ema.average.count  # one update per optimizer step
        8
    """

    kind = "ema"

    def __init__(self, decay: float = 0.999, warmup: int = 0, update_every: int = 1, validate_with: str = "ema",
                 final_weights: str = "averaged") -> None:
        _require_number("decay", decay, 0.0, 1.0, "0.999")
        require_non_negative_int("warmup", warmup)
        require_positive_int("update_every", update_every)
        super().__init__(validate_with, final_weights)
        self.decay, self.warmup, self.update_every = float(decay), int(warmup), int(update_every)
        self.steps = 0  # optimizer steps seen in this fit

    def decay_at(self, count: int) -> float:
        """The decay of the update made after ``count`` earlier updates (0: the first update copies).

        Example:
            >>> ema = EMA(decay=0.9, warmup=9)
            >>> [round(ema.decay_at(n), 3) for n in (0, 1, 9, 100)]
            [0.0, 0.5, 0.9, 0.9]
        """
        if count == 0:
            return 0.0
        if count >= self.warmup:
            return self.decay
        span = 1.0 + count * (1.0 / (1.0 - self.decay) - 1.0) / self.warmup
        return 1.0 - 1.0 / span

    def _reset(self) -> None:
        self.steps = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self.session.update_now:  # inside an accumulation window: no optimizer step this batch
            return
        self.steps += 1
        if self.steps % self.update_every == 0:
            average: Any = self.average
            average.update(1.0 - self.decay_at(average.count))

    def _counters(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def _load_counters(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])


class SWA(_Averaging):
    """Stochastic Weight Averaging: the equal mean of the weights at the end of each epoch from ``start_epoch``.

    At the end of each epoch numbered ``start_epoch`` or later (1-based, as the history and fit's
    ``epochs`` count them), before that epoch's validation, the average takes in the weights:
    ``average += (weights - average) / (n + 1)`` after n earlier epochs, as
    ``torch.optim.swa_utils.AveragedModel``. A model with BatchNorm then gets the statistics of the
    averaged weights (``torch.optim.swa_utils.update_bn``'s way: one forward pass, without gradients, over
    fit's training data, at most an epoch's batches, in training mode; RNG states and the shuffling order
    are left as they were). That pass happens after every averaged epoch, so every validation and
    checkpoint that swaps the average in sees matching statistics (Lightning #8811, #14866); it costs a
    forward pass over the training data per averaged epoch. An epoch whose loss went non-finite is not averaged.

    Args:
        start_epoch: the first epoch averaged (1-based, on the scale of fit's ``epochs``: ``epochs=10,
            start_epoch=8`` averages epochs 8, 9 and 10).
        swa_lr: None: the learning rate is left alone. A float: from ``start_epoch`` on, this callback
            writes every param group's lr, annealed from its value at the start of ``start_epoch`` to
            ``swa_lr`` over ``anneal_epochs`` epochs (set at each epoch's start: epoch ``start_epoch + k``
            uses ``lr0 + (swa_lr - lr0) * a((k + 1) / anneal_epochs)``, ``a`` clipped at 1), then ``swa_lr``.
            It takes over from the compiled lr scheduler (rewritten after each optimizer step, so a
            per-step scheduler has no effect either) and from callbacks that set the lr.
        anneal_epochs: epochs of the annealing (0: ``swa_lr`` from ``start_epoch`` on).
        anneal_strategy: ``a``: "cos" (``(1 - cos(pi * t)) / 2``) or "linear" (``t``), as torch's SWALR.
        validate_with: "swa": validations from ``start_epoch`` on use the average (earlier ones, with
            nothing averaged yet, the trained weights); "raw": the trained weights.
        final_weights: what the model holds after fit: "averaged" (the SWA weights and their BatchNorm
            statistics, as Lightning's callback) or "raw".

    Memory: one copy of the parameters and of the BatchNorm statistics. Training data given as a one-shot
    iterator (a generator) cannot be passed over again: with BatchNorm it is refused before training.

    Example:
        >>> import torch; from torch import nn; from kerastorch import Model
        >>> net = Model.wrap(nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)))
        >>> net.compile("sgd", "mse", device="cpu")
        >>> swa = SWA(start_epoch=2, swa_lr=0.005, anneal_epochs=2)
        >>> history = net.fit(torch.randn(32, 2), torch.randn(32, 1), batch_size=8, epochs=3, verbose=0,
        ...                   callbacks=[swa])
        >>> swa.average.count, [round(lr, 6) for lr in history["lr"]]  # epochs 2 and 3 averaged, lr annealed
        (2, [0.01, 0.0075, 0.005])
    """

    kind = "swa"

    def __init__(self, start_epoch: int, swa_lr: float | None = None, anneal_epochs: int = 10,
                 anneal_strategy: str = "cos", validate_with: str = "swa", final_weights: str = "averaged") -> None:
        require_positive_int("start_epoch", start_epoch)
        if swa_lr is not None:
            _require_number("swa_lr", swa_lr, 0.0, None, "0.05")
        require_non_negative_int("anneal_epochs", anneal_epochs)
        _require_choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        super().__init__(validate_with, final_weights)
        self.start_epoch, self.anneal_epochs, self.anneal_strategy = int(start_epoch), int(anneal_epochs), \
            anneal_strategy
        self.swa_lr = None if swa_lr is None else float(swa_lr)
        if swa_lr is None:
            self.inactive_hooks = ("on_train_batch_end",)  # nothing to rewrite after the steps
        self._reset()

    def check_params(self) -> None:
        super().check_params()
        epochs = self.params.get("epochs")
        if epochs is not None and self.start_epoch > epochs:
            raise ValueError(f"SWA(start_epoch={self.start_epoch}) averages from epoch {self.start_epoch} on, but "
                             f"fit runs {epochs} epochs, so nothing would be averaged. Pass start_epoch <= epochs "
                             f"(epochs count from 1, as in the history), e.g. start_epoch={max(1, epochs * 3 // 4)}.")
        if batchnorm_buffers(self.model) and getattr(self.session.train_source, "one_shot", False):
            raise ValueError("SWA recomputes the BatchNorm statistics of the averaged weights on fit's training "
                             "data, which a one-shot iterator (a generator) cannot pass over again. Train from a "
                             "DataLoader, a Dataset or in-memory data, or use EMA.")

    def _reset(self) -> None:
        self.averaged_epoch = -1  # 0-based index of the last epoch averaged
        self.anneal_from: list[float] | None = None  # each param group's lr when the annealing began
        self._lrs: list[float] | None = None
        self._epoch = 0
        self._step_validated = -1  # global step of the last step-level validation

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        if self.swa_lr is not None and epoch + 1 >= self.start_epoch:
            self._anneal(epoch)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._lrs is not None and self.session.update_now:
            self._write_lrs()  # after the step: a per-step scheduler has just written its own lr

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._running and not self._step_level_validation():
            self._average_epoch(self._epoch)  # the epoch's training is over: average it before validating
        super().on_test_begin(logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._average_epoch(epoch)  # an epoch without validation (or ended early): averaged now

    def _step_level_validation(self) -> bool:
        """Whether this validation is a ``validation_every_n_steps`` one, which fit runs after the batch's hooks
        and before any epoch-end validation at the same global step."""
        every, step = self.session.controls.validation_every_n_steps, self.session.record.global_step
        if every and step % every == 0 and step != self._step_validated:
            self._step_validated = step
            return True
        return False

    def _average_epoch(self, epoch: int) -> None:
        if epoch + 1 < self.start_epoch or epoch <= self.averaged_epoch or self.session.nonfinite:
            return
        average: Any = self.average
        average.update(1.0 / (average.count + 1))
        self.averaged_epoch = epoch
        if average.buffers:
            with average.swapped_in(self.model), _rng_kept(self.session.train_source):
                recompute_batchnorm(self.model, self._training_inputs(), self.model.forward_batch)
                average.keep_buffers(self.model)

    def _training_inputs(self) -> Iterator[Any]:
        config, steps = self.session.config, self.params.get("steps")
        for batch in itertools.islice(self.session.train_source, steps):
            yield move_to_device(unpack_batch(batch)[0], config.device, channels_last=config.channels_last)

    def _anneal(self, epoch: int) -> None:
        groups = self.session.config.optimizer.param_groups
        if self.anneal_from is None:
            self.anneal_from = [float(group["lr"]) for group in groups]  # once per fit
        progress = 1.0 if self.anneal_epochs == 0 else min(1.0, (epoch + 2 - self.start_epoch) / self.anneal_epochs)
        alpha = (1.0 - math.cos(math.pi * progress)) / 2.0 if self.anneal_strategy == "cos" else progress
        swa_lr: Any = self.swa_lr
        self._lrs = [lr0 + (swa_lr - lr0) * alpha for lr0 in self.anneal_from]
        self._write_lrs()

    def _write_lrs(self) -> None:
        for group, lr in zip(self.session.config.optimizer.param_groups, self._lrs or (), strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def _why_empty(self) -> str:
        return f"Training ended before start_epoch={self.start_epoch}."

    def _counters(self) -> dict[str, Any]:
        return {"averaged_epoch": self.averaged_epoch, "anneal_from": self.anneal_from}

    def _load_counters(self, state: dict[str, Any]) -> None:
        self.averaged_epoch, self.anneal_from = int(state["averaged_epoch"]), state["anneal_from"]


@contextlib.contextmanager
def _rng_kept(source: Any) -> Iterator[None]:
    """Pass over ``source`` without changing what training draws next: RNG states, shuffling generators and a
    resume's pending batch skip are restored afterwards."""
    state = capture_rng_state()
    loader = getattr(source, "loader", None)
    found = [getattr(source, "generator", None), getattr(loader, "generator", None),
             getattr(getattr(loader, "sampler", None), "generator", None)]
    generators = list({id(g): g for g in found if isinstance(g, torch.Generator)}.values())
    saved = [generator.get_state() for generator in generators]
    skip = getattr(source, "skip_batches", 0)
    if skip:
        source.skip_batches = 0
    try:
        yield
    finally:
        restore_rng_state(state)
        for generator, generator_state in zip(generators, saved, strict=True):
            generator.set_state(generator_state)
        if skip:
            source.skip_batches = skip
