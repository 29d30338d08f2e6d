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

    Attributes:
        config: the compiled configuration (None for ``predict`` before ``compile``).
        record: the model's :class:`FitRecord`.
        callbacks: this call's :class:`~kerastorch.callbacks.base.CallbackList` (empty when None is given).
        epochs: the ``epochs`` argument of ``fit`` (0 outside fit).
        batch: index of the batch being run within the epoch.
        logs: the last finished epoch's logs (floats).
        accumulator: the running epoch's step logs (device buffers).
        accum_divisor: the loss divisor of this batch's accumulation window.
        update_now: True when this batch ends an accumulation window (the optimizer steps).
        pending_signal: "SIGINT" / "SIGTERM" received during the epoch, else None.
        resume_path: ``(path, trust_checkpoint)`` to resume from once ``on_train_begin`` has run.
        resume_loaded: ``(path, checkpoint)`` chosen, loaded and checked before ``on_train_begin``.
        train_sizes: ``(batch_size, samples)`` of fit's training data (saved in mid-epoch checkpoints).
        replay: what a mid-epoch resume replays at the next epoch start, else None.
        epoch_start_rng, epoch_start_generator: RNG states at the running epoch's start
            (saved in mid-epoch checkpoints so the same batch order is redrawn).
        nonfinite: the loss went non-finite and training stopped.
        epoch_base: added to this fit's epoch index + 1 to number epochs in the history: the
            epochs earlier fits ran, so ``model.history`` numbers epochs continuously.
        steps_capped: ``steps_per_epoch`` ends each epoch before its data does (fit).
        validation_source: fit's validation batch source (for step-level validation), else None.
        controls: fit's validation cadence, limits and debug runs (:class:`~kerastorch.engine.epochs.TrainingControls`).
        data_findings: non-finite values found in fit's in-memory training data before the first step
            (:func:`kerastorch.data.scan.scan`), named by the non-finite-loss warning.
        step_autocast: the train step is user code run whole under autocast, so the optimizer step
            leaves autocast for the backward (written by :func:`~kerastorch.engine.execution.step_runner`).

    Example:
        >>> session = Session(None, FitRecord(), None)
        >>> session.update_now, session.epoch
        (True, 0)
    """

    def __init__(self, config: CompileConfig | None, record: FitRecord, callbacks: CallbackList | None,
                 epochs: int = 0) -> None:
        self.config = config
        self.record = record
        self.callbacks = CallbackList() if callbacks is None else callbacks  # no callbacks: empty tables
        self.epochs = epochs
        self.batch = 0
        self.logs: dict[str, float] = {}
        self.accumulator: LogAccumulator | None = None
        self.accum_divisor = 1
        self.update_now = True
        self.pending_signal: str | None = None
        self.resume_path: tuple[str, bool] | None = None
        self.resume_loaded: tuple[str, dict[str, Any]] | None = None
        self.train_sizes: tuple[int | None, int | None] | None = None
        self.replay: dict[str, Any] | None = None
        self.epoch_start_rng: dict[str, Any] | None = None
        self.epoch_start_generator: torch.Tensor | None = None
        self.nonfinite = False
        self.epoch_base = 0
        self.steps_capped = False
        self.step_autocast = False
        self.data_findings: list[Any] = []
        self.controls = TrainingControls()
        self.validation_source: Any = None

    @property
    def epoch(self) -> int:
        """0-based index of the epoch being run (the record's)."""
        return self.record.epoch

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
