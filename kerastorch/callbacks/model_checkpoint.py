"""ModelCheckpoint: save weights or full training state, atomically, never non-finite."""
from __future__ import annotations

import glob
import math
import os
from typing import Any

from ..checkpointing import training_state
from ..checkpointing.files import atomic_save, check_writable, cleanup_temp_files
from ..checkpointing.policy import SaveSchedule, safe_to_save
from ..distributed import is_rank_zero, strip_prefixes, unwrap
from .arguments import check_template, filled, require_file, require_parent_folder
from .base import Callback
from .monitor import check_monitor, is_better, resolve_mode

INTERRUPT_NAME = "interrupted.pt"


class ModelCheckpoint(Callback):
    """Save the model during training, atomically (temp file, fsync, rename).

    Args:
        filepath: file name, may hold ``str.format`` fields filled with ``epoch``
            (numbered as in the history: from 1, on across fits) and the epoch's logs,
            e.g. ``"ckpt/epoch{epoch:02d}-{val_loss:.3f}.pt"``.
        monitor: the logged value that decides "best".
        mode: "min", "max" or "auto" (max for accuracy-like names).
        save_best_only: only write when ``monitor`` improves (the file is overwritten
            unless the name has fields).
        save_weights_only: True writes a plain state_dict (loadable in bare PyTorch);
            False writes a full training checkpoint that ``fit(resume_from=...)`` continues.
        save_freq: "epoch", or an integer number of batches (mid-epoch checkpoints).
        verbose: 1 prints a line per saved file.

    A non-finite loss or non-finite weights never overwrite a good file. On Ctrl-C or
    SIGTERM a full training checkpoint is written to ``interrupted.pt`` beside ``filepath``.

    Example:
        >>> cb = ModelCheckpoint("ckpt/best.pt", monitor="val_loss", save_best_only=True)
    """

    writes_files = True  # fit(fast_dev_run=...) leaves it out

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", mode: str = "auto",
                 save_best_only: bool = False, save_weights_only: bool = True,
                 save_freq: str | int = "epoch", verbose: int = 0) -> None:
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.directory = os.path.dirname(os.path.abspath(self.filepath))
        self.monitor, self.save_best_only = monitor, save_best_only
        self.mode = resolve_mode(monitor, mode)
        self.save_weights_only, self.verbose = save_weights_only, verbose
        self.schedule = SaveSchedule(save_freq)
        self.inactive_hooks = ("on_train_batch_end",) if self.schedule.per_epoch else ()
        self.best: float | None = None
        self._pending: list[tuple[str, bool]] = []  # (path, mid_epoch) decided this hook

    def check_params(self) -> None:
        """Before training: ``filepath`` names a file, its fields will be logged, ``save_best_only`` can save."""
        require_file(self.filepath, self, "filepath", "epoch{epoch:02d}.pt")
        if self.schedule.per_epoch:
            check_template(self.filepath, self, "filepath")
        else:
            check_template(self.filepath, self, "filepath", keys=(), reason=(
                f"but save_freq={self.schedule.save_freq} saves in the middle of epochs, where only {{epoch}} is "
                "known. Use only {epoch} in the name, or save_freq='epoch'."))
            if self.save_best_only:
                raise ValueError(
                    f"ModelCheckpoint(save_best_only=True) compares the epoch's {self.monitor!r}, but save_freq="
                    f"{self.schedule.save_freq} saves in the middle of epochs, where no epoch value exists: nothing "
                    "would ever be saved. Use save_freq='epoch' with save_best_only=True.")
        if self.save_best_only:
            check_monitor(self.monitor, self)
        require_file(filled(self.filepath, self.params.get("log_keys") or ()), self, "filepath",
                     "epoch{epoch:02d}.pt")
        require_parent_folder(self.filepath, self, "filepath")

    def on_train_begin(self, logs=None):
        self._pending = []  # nothing decided by an earlier fit is written by this one
        if is_rank_zero():
            check_writable(self.directory)
            cleanup_temp_files(self.directory)

    def on_epoch_end(self, epoch, logs=None):
        if self.schedule.per_epoch:
            self._maybe_save(epoch, logs or {}, mid_epoch=False)

    def on_train_batch_end(self, batch, logs=None):
        if self.schedule.batch_done(self.session):
            self._maybe_save(self.session.epoch, {}, mid_epoch=True)

    def _maybe_save(self, epoch: int, logs: dict[str, Any], mid_epoch: bool) -> None:
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None or math.isnan(current):
                return
            if self.best is not None and not is_better(current, self.best, self.mode, 0.0):
                return
        if not is_rank_zero() or not safe_to_save(self.model, self.session):
            return
        if self.save_best_only:
            self.best = logs[self.monitor]
        # Written by flush_writes, after every callback's hook for this epoch/batch, so
        # the saved callback states (EarlyStopping counters, ...) are this epoch's.
        self._pending.append((self._format_path(epoch, logs), mid_epoch))

    def flush_writes(self) -> None:
        pending, self._pending = self._pending, []
        for path, mid_epoch in pending:
            self._write(path, mid_epoch)

    def _format_path(self, epoch: int, logs: dict[str, Any]) -> str:
        try:
            return self.filepath.format(epoch=self.epoch_number(epoch), **logs)
        except KeyError as err:  # only with a custom step or loss: other keys are checked before training
            raise KeyError(f"ModelCheckpoint filepath {self.filepath!r} uses {err}, which is not logged. "
                           f"Available: epoch, {', '.join(sorted(logs))}") from None

    def _write(self, path: str, mid_epoch: bool) -> None:
        if self.save_weights_only:
            atomic_save(strip_prefixes(unwrap(self.model).state_dict()), path)
        else:
            atomic_save(training_state.capture(self.model, self.session, mid_epoch=mid_epoch), path)
        if self.verbose:
            print(f"ModelCheckpoint: saved {path}")  # noqa: T201 (verbose=1: output the user asked for)

    def save_interrupt_checkpoint(self) -> str | None:
        """Called by fit on Ctrl-C / SIGTERM: a full, resumable mid-epoch checkpoint; returns its path."""
        if not (is_rank_zero() and safe_to_save(self.model, self.session)):
            return None
        path = os.path.join(self.directory, INTERRUPT_NAME)
        atomic_save(training_state.capture(self.model, self.session, mid_epoch=True), path)
        return path

    def resume_candidates(self) -> list[str]:
        """Files ``fit(resume_from="auto")`` may continue from (full checkpoints only)."""
        if self.save_weights_only:
            pattern = os.path.join(self.directory, INTERRUPT_NAME)
        else:
            pattern = os.path.join(self.directory, "*")
        return [p for p in glob.glob(pattern) if os.path.isfile(p) and not os.path.basename(p).startswith(".")]

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, **self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.schedule.load_state_dict(state)
