"""The state of one running fit / evaluate / predict, and the record that outlives it.

* :class:`FitRecord` belongs to the model and survives between calls: the
  history rows, where training stands (epoch, global step) and the shuffling
  generator. Checkpoints save and restore it.
* :class:`Session` is made by each ``fit`` / ``evaluate`` / ``predict`` call and
  passed explicitly to what needs it: the engine's loops, the optimizer step and
  the callbacks (``callback.session``). The model holds the running fit's session
  only for what a custom ``train_step`` calls: ``backward_and_step`` and ``running_logs``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..callbacks.base import CallbackList
from .epochs import TrainingControls
from .logs import LogAccumulator, running_logs
from .window import AccumulationWindow

if TYPE_CHECKING:
    from ..compiling import CompileConfig


class FitRecord:
    """What a model keeps between ``fit`` calls (saved in training checkpoints).

    Attributes:
        history_rows: one dict per finished epoch, over all fits (``model.history``).
        epoch: 0-based index of the epoch being run, or of the last one run.
        global_step: training batches seen over all fits.
        generator: the shuffling generator of in-memory data, made at the first fit.
        validation_rows: one dict per step-level validation (``fit(validation_every_n_steps=N)``): its global
            step, the epoch and the ``val_*`` logs (``model.validation_history``).
        example_input: the first sample of the last fit's in-memory inputs (a CPU copy), export's default example.

    Example:
        >>> FitRecord().global_step
        0
    """

    def __init__(self) -> None:
        self.history_rows: list[dict[str, Any]] = []
        self.epoch = 0
        self.global_step = 0
        self.generator: torch.Generator | None = None
        self.example_input: Any = None
        self.validation_rows: list[dict[str, Any]] = []


class Session:
    """State of one running call, passed to the loops, the optimizer step and the callbacks.

    Made by ``fit`` / ``evaluate`` / ``predict``; each field has one writer, named here.

    Attributes:
        config: the compiled configuration (None for ``predict`` before ``compile``).
        record: the model's :class:`FitRecord`.
        callbacks: this call's :class:`~kerastorch.callbacks.base.CallbackList` (empty when None is given).
        epochs: the ``epochs`` argument of ``fit`` (0 outside fit).
        batches: fit's :class:`~kerastorch.engine.epoch_iterator.EpochIterator` (the training batches and the
            position in them), else None.
        window: the accumulation window the optimizer step reads (the epoch iterator's in fit).
        controls: fit's validation cadence, limits and debug runs (:class:`~kerastorch.engine.epochs.TrainingControls`).
        validation_source: fit's validation batch source (for step-level validation), else None.
        logs: the last finished epoch's logs (floats; the epoch loop).
        accumulator: the running epoch's step logs (device buffers; the batch loop).
        pending_signal: "SIGINT" / "SIGTERM" received during the epoch, else None (the signal guard).
        resume_path: ``(path, trust_checkpoint)`` to resume from once ``on_train_begin`` has run (a callback).
        resume_loaded: ``(path, checkpoint)`` chosen, loaded and checked before ``on_train_begin`` (resume).
        nonfinite: the loss went non-finite and training stopped (fit).
        epoch_base: added to this fit's epoch index + 1 to number epochs in the history: the
            epochs earlier fits ran, so ``model.history`` numbers epochs continuously (fit).
        data_findings: non-finite values found in fit's in-memory training data before the first step
            (:func:`kerastorch.data.scan.scan`), named by the non-finite-loss warning (fit).
        step_autocast: the train step is user code run whole under autocast, so the optimizer step
            leaves autocast for the backward (written by :func:`~kerastorch.engine.execution.step_runner`).

    Example:
        >>> session = Session(None, FitRecord(), None)
        >>> session.update_now, session.epoch
        (True, 0)
    """

    def __init__(self, config: CompileConfig | None, record: FitRecord, callbacks: CallbackList | None,
                 epochs: int = 0, *, batches: Any = None, controls: TrainingControls | None = None,
                 validation_source: Any = None, window: AccumulationWindow | None = None) -> None:
        self.config = config
        self.record = record
        self.callbacks = CallbackList() if callbacks is None else callbacks  # no callbacks: empty tables
        self.epochs = epochs
        self.batches = batches
        self.window = batches.window if batches is not None else window or AccumulationWindow()
        self.controls = TrainingControls() if controls is None else controls
        self.validation_source = validation_source
        self.logs: dict[str, float] = {}
        self.accumulator: LogAccumulator | None = None
        self.pending_signal: str | None = None
        self.resume_path: tuple[str, bool] | None = None
        self.resume_loaded: tuple[str, dict[str, Any]] | None = None
        self.nonfinite = False
        self.epoch_base = 0
        self.step_autocast = False
        self.data_findings: list[Any] = []

    @property
    def epoch(self) -> int:
        """0-based index of the epoch being run (the record's)."""
        return self.record.epoch

    @property
    def batch(self) -> int:
        """Index, in the epoch, of the training batch being run (0 outside fit)."""
        return max(self.batches.batch, 0) if self.batches is not None else 0

    @property
    def update_now(self) -> bool:
        """True when the batch being run ends an accumulation window: the optimizer steps (callbacks read this)."""
        return self.window.update_now

    @property
    def train_source(self) -> Any:
        """fit's training batch source (batches as the loop gets them, before device placement), else None."""
        return self.batches.source if self.batches is not None else None

    def epoch_number(self, epoch: int) -> int:
        """The history's number (from 1, continuing across fits) of this fit's 0-based ``epoch``.

        Example:
            >>> session = Session(None, FitRecord(), None); session.epoch_base = 3
            >>> session.epoch_number(0)
            4
        """
        return self.epoch_base + epoch + 1

    def running_logs(self) -> dict[str, float]:
        """The running epoch's means and metrics so far (one host sync; for progress displays)."""
        if self.config is None:
            return {}
        return running_logs(self.config, self.accumulator)

    def request_resume(self, path: str, trust_checkpoint: bool = False) -> None:
        """Resume from ``path`` once every ``on_train_begin`` hook has run."""
        self.resume_path = (str(path), trust_checkpoint)
