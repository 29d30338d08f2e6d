"""lr_find: an exponential learning-rate range test that leaves the model exactly as it was.

:func:`lr_find` runs the model's own ``train_step`` at learning rates growing
geometrically from ``start_lr`` to ``end_lr``, records each step's loss, stops when
the loss diverges and suggests a learning rate; a
:class:`~kerastorch.engine.snapshot.RestorePoint` puts every weight, optimizer,
scaler, history and RNG state back afterwards (also when the sweep raises).
:class:`LRFinderResult` holds the curve and plots it.
"""
from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from ..callbacks.base import CallbackList
from ..checks import compiled, require_fraction
from ..data import adapt, move_to_device, place
from ..distributed import all_reduce_sum, launched_distributed, world_size
from ..optimizers import foreign_optimizer_message
from .session import Session
from .snapshot import RestorePoint
from .step import sync_context
from .window import AccumulationWindow

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..compiling import CompileConfig

#: Fewer recorded points than this give no suggestion (a curve of 4 points has no reliable minimum).
MIN_POINTS = 5
#: The sweep's private shuffling seed: the same batches every call, and no draw from torch's RNG.
_SHUFFLE_SEED = 0


class LRFinderResult:
    """The curve of one :func:`lr_find` sweep and its suggested learning rate.

    Attributes:
        lrs: the learning rate of each step run.
        losses: each step's training loss (``train_step``'s ``"loss"``), as run.
        smoothed: the bias-corrected exponential moving average of ``losses`` (see :func:`lr_find`).
        suggestion: the learning rate at the lowest smoothed loss divided by 10, to three
            significant digits (``0.0115``: the number shown everywhere, ``1.15e-02``, is the
            number used), or None when the curve cannot tell (``note`` says why).
        diverged_at: the learning rate of the step where the sweep stopped because the
            loss diverged, or None when it ran all its steps.
        note: how ``suggestion`` was found, or why there is none.

    Example:
        >>> result = LRFinderResult([1e-3, 1e-2, 1e-1, 1.0, 10.0], [2.0, 1.5, 1.0, 0.5, 9.0],
        ...                         [2.0, 1.5, 1.0, 0.5, 9.0], diverged_at=10.0)
        >>> result.suggestion
        0.1
        >>> result
        LRFinderResult(steps=5, lr=1.00e-03..1.00e+01, suggestion=1.00e-01, diverged_at=1.00e+01)
    """

    def __init__(self, lrs: list[float], losses: list[float], smoothed: list[float],
                 diverged_at: float | None) -> None:
        self.lrs, self.losses, self.smoothed, self.diverged_at = list(lrs), list(losses), list(smoothed), diverged_at
        self.suggestion, self.note = _suggest(self.lrs, self.smoothed)

    def __repr__(self) -> str:
        span = f"{format_lr(self.lrs[0])}..{format_lr(self.lrs[-1])}" if self.lrs else "none"
        return (f"LRFinderResult(steps={len(self.lrs)}, lr={span}, suggestion={format_lr(self.suggestion)}, "
                f"diverged_at={format_lr(self.diverged_at)})")

    def plot(self, figure: Figure | None = None) -> Figure:
        """Loss against learning rate (log axis), raw and smoothed, the suggestion as a dashed line and in the title.

        Args:
            figure: a ``matplotlib.figure.Figure`` to draw into (one new axes is added);
                None makes one. Built without pyplot: nothing opens a window or keeps the
                figure alive; a notebook displays the returned figure.

        Returns:
            The figure; its axes' first two lines are ``(lrs, losses)`` and ``(lrs, smoothed)``.

        Example:
            >>> result = LRFinderResult([1e-3, 1e-2, 1e-1, 1.0, 10.0], [2.0, 1.5, 1.0, 0.5, 9.0],
            ...                         [2.0, 1.5, 1.0, 0.5, 9.0], diverged_at=10.0)
            >>> axes = result.plot().axes[0]
            >>> axes.get_xscale(), [float(loss) for loss in axes.lines[0].get_ydata()]
            ('log', [2.0, 1.5, 1.0, 0.5, 9.0])
        """
        try:  # HistoryFigure: a notebook shows it as one image (a bare Figure prints "<Figure size ...>")
            from ..callbacks.display.figure import HistoryFigure
        except ImportError as error:
            raise ImportError("LRFinderResult.plot needs matplotlib. Install it: pip install matplotlib") from error
        figure = HistoryFigure() if figure is None else figure
        axes = figure.add_subplot()
        axes.plot(self.lrs, self.losses, alpha=0.35, label="loss")
        axes.plot(self.lrs, self.smoothed, label="smoothed loss")
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("loss")
        shown = f"suggestion {format_lr(self.suggestion)}"
        axes.set_title(shown)
        if self.suggestion is not None:
            axes.axvline(self.suggestion, color="tab:red", linestyle="--", label=shown)
        finite = [value for value in self.smoothed[:-1 if self.diverged_at is not None else None]
                  if math.isfinite(value)]
        if finite and min(finite) < max(finite):  # the divergence's blow-up would flatten the curve
            axes.set_ylim(top=max(finite) + 0.1 * (max(finite) - min(finite)))
        axes.legend()
        return figure


def lr_find(model: Any, x: Any, y: Any = None, *, batch_size: int | None = None, start_lr: float = 1e-7,
            end_lr: float = 10.0, num_steps: int = 100, diverge_factor: float = 4.0, smoothing: float = 0.05,
            sample_weight: Any = None) -> LRFinderResult:
    """Train ``num_steps`` steps at exponentially growing learning rates; suggest one; restore everything.

    Step ``i`` (from 0) sets ``lr = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))``
    on every optimizer param group and runs the model's own ``train_step`` (so a custom
    step, regularizers, AMP, clipping and ``grad_accum_steps`` work as in ``fit``; with
    accumulation one sweep step is one optimizer step over ``grad_accum_steps`` batches
    and its loss is their mean). The data is taken as ``fit`` takes it and cycled when it
    has fewer batches than needed; in-memory data is shuffled with a private generator.
    No callback is called, compiled metrics update copies, and a per-step LR scheduler is
    not stepped (the sweep sets the LR).

    Smoothing (``b = smoothing``, the weight of the past): ``s_i = b * s_(i-1) + (1 - b) * loss_i``
    from ``s_(-1) = 0``, and ``smoothed_i = s_i / (1 - b ** (i + 1))`` (the bias correction:
    the average of the losses so far, weighted ``1, b, b**2, ...`` from the newest back).
    ``smoothing=0`` gives the raw losses; the default 0.05 only damps single noisy batches.
    Heavier smoothing (fastai uses 0.98) lags: the curve's minimum and the divergence test
    move about ``1 / (1 - b)`` steps to the right, toward learning rates that already diverge.
    The sweep stops after the first step whose smoothed loss is not finite or exceeds
    ``diverge_factor`` times the lowest smoothed loss so far (while that lowest loss is > 0).

    Suggestion: the learning rate at the lowest smoothed loss, divided by 10, to three significant
    digits (:func:`format_lr`: the repr, the plot and the value are the same number). The lowest
    loss sits just below where training becomes unstable, and an order of magnitude
    lower is the classic safe choice since Smith's range test (2017), fastai's ``lr_min / 10``; unlike
    the steepest slope it does not depend on the noise of a few mini-batches. None
    (with ``result.note`` saying why) when fewer than :data:`MIN_POINTS` finite points were
    recorded or the loss never went below its first value (lower ``start_lr``).

    Every parameter, gradient and buffer, the optimizer's state and param groups, the
    LR scheduler, the GradScaler, the history (``model._record``), compiled metrics,
    ``model.training`` / ``stop_training`` and every RNG state are bit-identical afterwards;
    if the sweep raises, they are restored and the error propagates.

    Args:
        model: a compiled kerastorch Model.
        x, y, sample_weight, batch_size: the training data, as for ``fit``.
        start_lr, end_lr: the first and the last learning rate (``0 < start_lr < end_lr``).
        num_steps: sweep steps (an integer >= 2); fewer run when the loss diverges.
        diverge_factor: stop when the smoothed loss exceeds this times its best (> 1).
        smoothing: weight of the past in the loss's moving average, in [0, 1).

    Returns:
        An :class:`LRFinderResult` (``lrs``, ``losses``, ``smoothed``, ``suggestion``,
        ``diverged_at``, ``note``, ``plot()``).

    Raises:
        RuntimeError: the model is not compiled.
        ValueError: a bad argument (checked before anything changes), or a ``train_step``
            that returns no ``"loss"``.

    Example:
        >>> from torch import nn; from kerastorch import Model
        >>> _ = torch.manual_seed(0); x = torch.randn(512, 1)
        >>> net = Model.wrap(nn.Linear(1, 1, bias=False)); net.compile("sgd", "mse", device="cpu")
        >>> before = net.weight.detach().clone()
        >>> result = lr_find(net, x, 3 * x, batch_size=512)  # gradient descent here diverges above lr = 1
        >>> 1 < result.diverged_at < 3, 0.01 < result.suggestion < 1, torch.equal(net.weight, before)
        (True, True, True)
    """
    config = compiled(model._config, "lr_find")
    _check_arguments(start_lr, end_lr, num_steps, diverge_factor, smoothing)
    if config.foreign_parameters:
        raise ValueError(foreign_optimizer_message(config.foreign_parameters))
    generator = torch.Generator().manual_seed(_SHUFFLE_SEED)
    source = place(adapt(x, y, sample_weight, batch_size=batch_size, shuffle=True, generator=generator),
                   config.device, config.data_on_device, _SHUFFLE_SEED)
    lrs = [start_lr * (end_lr / start_lr) ** (i / (num_steps - 1)) for i in range(num_steps)]
    point = RestorePoint(model, config, x)
    outer_session, scheduler, metrics = model._session, config.lr_scheduler, config.metrics
    try:
        config.lr_scheduler = None
        config.metrics = {name: copy.deepcopy(metric) for name, metric in metrics.items()}
        window = AccumulationWindow(config.grad_accum_steps)
        model._session = Session(config, model._record, CallbackList(), window=window)
        return _sweep(model, config, model._session, _cycle(source), lrs, diverge_factor, smoothing)
    finally:
        config.lr_scheduler, config.metrics, model._session = scheduler, metrics, outer_session
        point.restore()


def _sweep(model: Any, config: CompileConfig, session: Session, batches: Iterator[Any], lrs: list[float],
           diverge_factor: float, smoothing: float) -> LRFinderResult:
    """Run the steps; stop at divergence; return the recorded curve."""
    train_step, window = model._step_runner("train", session), config.grad_accum_steps
    for parameter in model.parameters():
        parameter.grad = None  # a clean start (the restore point has any gradients there were)
    model.train()
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    for step, lr in enumerate(lrs):
        _set_lr(config.optimizer, lr)
        total = _run_window(model, config, session, batches, train_step, window)
        if launched_distributed():  # every rank sees the same losses, so all stop together
            total = all_reduce_sum(total) / world_size()
        loss = float(total) / window  # host-sync: lr_find reads each step's loss to detect divergence
        losses.append(loss)
        average = smoothing * average + (1 - smoothing) * loss
        smoothed.append(average / (1 - smoothing ** (step + 1)))
        best = min(best, smoothed[-1])
        if not math.isfinite(smoothed[-1]) or (best > 0 and smoothed[-1] > diverge_factor * best):
            return LRFinderResult(lrs[:step + 1], losses, smoothed, diverged_at=lr)
    return LRFinderResult(lrs, losses, smoothed, diverged_at=None)


def _run_window(model: Any, config: CompileConfig, session: Session, batches: Iterator[Any], train_step: Any,
                window: int) -> torch.Tensor:
    """One optimizer step: ``window`` batches through ``train_step``; the sum of their losses (on the device)."""
    parts = []
    for index in range(window):
        batch = move_to_device(next(batches), config.device, channels_last=config.channels_last)
        session.window.steps = window
        session.window.plan(index)
        with sync_context(config, session.window):
            logs = train_step(batch)
        loss = logs.get("loss") if isinstance(logs, dict) else None
        if not isinstance(loss, torch.Tensor):
            received = sorted(logs) if isinstance(logs, dict) else type(logs).__name__
            raise ValueError(f"lr_find needs `train_step` to return a dict with a 'loss' tensor. "
                             f"Received: {received}. Return the batch's loss under the key 'loss'.")
        parts.append(loss.detach().float().reshape(()))
    return parts[0] if window == 1 else torch.stack(parts).sum()


def _cycle(source: Any) -> Iterator[Any]:
    """The source's batches over and over (a new epoch, reshuffled, each time round)."""
    while True:
        empty = True
        for batch in source:
            empty = False
            yield batch
        if empty:
            raise ValueError("lr_find's data yields no batches. Received: an empty data source. "
                             "Pass data with at least one batch.")


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):  # a tensor LR (fused / capturable optimizers) stays a tensor
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def _suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, str]:
    """The lr at the lowest finite smoothed loss / 10, and a note; None when the curve cannot tell."""
    finite = [(loss, index) for index, loss in enumerate(smoothed) if math.isfinite(loss)]
    if len(finite) < MIN_POINTS:
        return None, (f"No suggestion: only {len(finite)} finite loss(es) were recorded (at least "
                      f"{MIN_POINTS} are needed). Start lower (start_lr) or take more steps (num_steps).")
    _, lowest = min(finite)
    if lowest == 0:
        return None, ("No suggestion: the loss never went below its value at the first learning rate. "
                      "Start the sweep lower (start_lr).")
    suggestion = float(format_lr(lrs[lowest] / 10))
    return suggestion, f"The learning rate at the lowest smoothed loss ({format_lr(lrs[lowest])}), divided by 10."


def format_lr(lr: float | None) -> str:
    """A learning rate as lr_find shows it everywhere (repr, plot, note): three significant digits.

    Example:
        >>> format_lr(0.011513953993264469), format_lr(10.0), format_lr(None)
        ('1.15e-02', '1.00e+01', 'None')
    """
    return "None" if lr is None else f"{lr:.2e}"


def _check_arguments(start_lr: Any, end_lr: Any, num_steps: Any, diverge_factor: Any, smoothing: Any) -> None:
    """Every argument of the sweep, before anything changes."""
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr), ("diverge_factor", diverge_factor)):
        if not _is_real(value) or not math.isfinite(value):
            raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}")
    if start_lr <= 0:
        raise ValueError(f"`start_lr` must be > 0. Received: start_lr={start_lr!r}")
    if end_lr <= start_lr:
        raise ValueError(f"`end_lr` must be greater than `start_lr`. Received: start_lr={start_lr!r}, "
                         f"end_lr={end_lr!r}")
    if not isinstance(num_steps, numbers.Integral) or isinstance(num_steps, bool) or num_steps < 2:
        raise ValueError(f"`num_steps` must be an integer >= 2. Received: num_steps={num_steps!r}")
    if diverge_factor <= 1:
        raise ValueError(f"`diverge_factor` must be > 1 (the smoothed loss over its best that stops the "
                         f"sweep). Received: diverge_factor={diverge_factor!r}")
    require_fraction("smoothing", smoothing)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
