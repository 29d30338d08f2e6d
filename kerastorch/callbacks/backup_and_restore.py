"""BackupAndRestore: resume an interrupted fit automatically from its last backup."""
from __future__ import annotations

import os
from typing import Any

from .. import resume
from ..checkpoint import atomic_save, check_writable, cleanup_temp_files, newest_valid
from ..distributed import is_rank_zero
from .base import Callback
from .model_checkpoint import safe_to_save
from .save_schedule import SaveSchedule

BACKUP_NAME = "backup.pt"


class BackupAndRestore(Callback):
    """Keep a full training checkpoint in ``backup_dir``; the next ``fit`` resumes from it.

    When ``fit`` starts and a valid backup exists (e.g. after a crash, ``kill -9`` or
    Ctrl-C), training continues exactly where the backup was taken: weights,
    optimizer, history, callback states, RNG states and, for mid-epoch backups,
    the epoch's batch order. The backup is deleted when ``fit`` completes.

    Args:
        backup_dir: folder for ``backup.pt`` (created if missing).
        save_freq: "epoch", or a number of batches between mid-epoch backups.
        delete_checkpoint: remove the backup when training finishes normally.

    Example:
        >>> cb = BackupAndRestore("/tmp/run1-backup", save_freq=50)
    """

    def __init__(self, backup_dir: str | os.PathLike, save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True) -> None:
        super().__init__()
        self.backup_dir = os.fspath(backup_dir)
        self.path = os.path.join(self.backup_dir, BACKUP_NAME)
        self.schedule = SaveSchedule(save_freq)
        self.delete_checkpoint = delete_checkpoint
        self.inactive_hooks = ("on_train_batch_end",) if self.schedule.per_epoch else ()

    def on_train_begin(self, logs=None):
        if is_rank_zero():
            check_writable(self.backup_dir)
            cleanup_temp_files(self.backup_dir)
        runtime = self.model._kt
        if runtime.resume_request is None and os.path.exists(self.path):
            if newest_valid([self.path]) is not None:  # a corrupt backup warns and is ignored
                runtime.request_resume(self.path)

    def on_epoch_end(self, epoch, logs=None):
        if self.schedule.per_epoch:
            self.model._kt.defer(lambda: self._save(mid_epoch=False))

    def on_train_batch_end(self, batch, logs=None):
        if self.schedule.batch_done(self.model._kt):
            self.model._kt.defer(lambda: self._save(mid_epoch=True))

    def _save(self, mid_epoch: bool) -> None:
        if is_rank_zero() and safe_to_save(self.model):
            atomic_save(resume.capture(self.model, mid_epoch=mid_epoch), self.path)

    def save_interrupt_checkpoint(self) -> None:
        self._save(mid_epoch=True)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and is_rank_zero() and not self.model._kt.nonfinite \
                and os.path.exists(self.path):
            os.remove(self.path)

    def resume_candidates(self) -> list[str]:
        return [self.path] if os.path.exists(self.path) else []

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state)
