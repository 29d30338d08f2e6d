"""BackupAndRestore: resume an interrupted fit automatically from its last backup."""
from __future__ import annotations

import os
import warnings
from typing import Any

from ..checkpointing import training_state
from ..checkpointing.files import atomic_save, check_writable, cleanup_temp_files, newest_valid
from ..checkpointing.policy import SaveSchedule, safe_to_save
from ..distributed import is_rank_zero
from ..fsdp import takes_part_in_saves
from .arguments import require_folder
from .base import Callback

BACKUP_NAME = "backup.pt"
PREVIOUS_NAME = "backup.prev.pt"


class BackupAndRestore(Callback):
    """Keep a full training checkpoint in ``backup_dir``; the next ``fit`` resumes from it.

    When ``fit`` starts and a valid backup exists (e.g. after a crash, ``kill -9`` or
    Ctrl-C), training continues exactly where the backup was taken: weights,
    optimizer, history, callback states, RNG states and, for mid-epoch backups,
    the epoch's batch order. When ``fit`` completes, the backup is deleted and so is
    ``backup_dir`` once empty (as Keras removes it; a folder still holding other files
    is left with them).

    Args:
        backup_dir: folder for ``backup.pt`` (created if missing); "" or None is a ValueError.
        save_freq: "epoch", or a number of batches between mid-epoch backups.
        double_checkpoint: as in Keras, keep the previous backup too (``backup.prev.pt``,
            the last one renamed before each write) and resume from it when the latest
            is unreadable.
        delete_checkpoint: remove the backup (and the emptied folder) when training
            finishes normally.

    Example:
        >>> import os, tempfile, torch; from kerastorch import Model
        >>> backup_dir = os.path.join(tempfile.mkdtemp(), "backup")
        >>> net = Model.wrap(torch.nn.Linear(2, 1)); net.compile("sgd", "mse", device="cpu")
        >>> _ = net.fit(torch.randn(8, 2), torch.randn(8, 1), batch_size=2, epochs=2, verbose=0,
        ...             callbacks=[BackupAndRestore(backup_dir, save_freq=2)])
        >>> os.path.exists(backup_dir)  # the finished fit deleted its backup and the emptied folder
        False
    """

    writes_files = True  # fit(fast_dev_run=...) leaves it out

    def __init__(self, backup_dir: str | os.PathLike, save_freq: str | int = "epoch",
                 double_checkpoint: bool = False, delete_checkpoint: bool = True) -> None:
        super().__init__()
        if backup_dir is None or (isinstance(backup_dir, (str, os.PathLike)) and not os.fspath(backup_dir)):
            raise ValueError("`backup_dir` must be a non-empty folder path, e.g. 'backup'. "
                             f"Received: backup_dir={backup_dir!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.path = os.path.join(self.backup_dir, BACKUP_NAME)
        self.previous_path = os.path.join(self.backup_dir, PREVIOUS_NAME)
        self.double_checkpoint = double_checkpoint
        self.schedule = SaveSchedule(save_freq)
        self.delete_checkpoint = delete_checkpoint
        self.inactive_hooks = ("on_train_batch_end",) if self.schedule.per_epoch else ()
        self._pending: bool | None = None  # mid_epoch of the backup decided this hook

    def check_params(self) -> None:
        require_folder(self.backup_dir, self, "backup_dir")

    def on_train_begin(self, logs=None):
        self._pending = None  # nothing decided by an earlier fit is written by this one
        if is_rank_zero():
            check_writable(self.backup_dir)
            cleanup_temp_files(self.backup_dir)

    def auto_resume_path(self) -> str | None:
        """The backup, when one exists and is valid (a corrupt backup warns and is ignored).

        With ``double_checkpoint``, the previous backup when the latest is missing or unreadable.
        """
        candidates = self.resume_candidates()
        if not candidates:
            return None
        with warnings.catch_warnings(record=True) as skipped:  # said once below, with the fallback
            warnings.simplefilter("always")
            chosen = newest_valid(candidates)
        reasons = " ".join(str(warning.message) for warning in skipped)
        if chosen is not None and chosen == self.previous_path:
            warnings.warn(f"BackupAndRestore: the latest backup {self.path!r} is missing or unreadable; resuming "
                          f"from the previous one, {self.previous_path!r}. {reasons}".rstrip(),
                          UserWarning, stacklevel=2)
        else:
            for warning in skipped:
                warnings.warn(warning.message, warning.category, stacklevel=2)
        return None if chosen is None else os.fspath(chosen)

    def on_epoch_end(self, epoch, logs=None):
        if self.schedule.per_epoch and not getattr(self.session, "nonfinite", False):  # fit said none is written
            self._pending = False

    def on_train_batch_end(self, batch, logs=None):
        if self.schedule.batch_done(self.session):
            self._pending = True

    def flush_writes(self) -> None:
        # After every callback's hook, so the saved callback states are this epoch's.
        mid_epoch, self._pending = self._pending, None
        if mid_epoch is not None:
            self._save(mid_epoch)

    def _save(self, mid_epoch: bool) -> str | None:
        if takes_part_in_saves(self.model) and safe_to_save(self.model, self.session):
            state = training_state.capture(self.model, self.session, mid_epoch=mid_epoch)  # under FSDP: every rank
            if not is_rank_zero():
                return self.path
            if self.double_checkpoint and os.path.exists(self.path):
                os.replace(self.path, self.previous_path)  # atomic_save's folder sync makes both renames durable
            atomic_save(state, self.path)
            return self.path
        return None

    def save_interrupt_checkpoint(self) -> str | None:
        return self._save(mid_epoch=True)

    def on_train_end(self, logs=None):
        if not (self.delete_checkpoint and is_rank_zero()) or self.session.nonfinite:
            return
        for path in (self.path, self.previous_path):
            if os.path.exists(path):
                os.remove(path)
        if os.path.isdir(self.backup_dir) and not os.listdir(self.backup_dir):
            os.rmdir(self.backup_dir)  # Keras removes the folder; one holding other files is kept

    def resume_candidates(self) -> list[str]:
        paths = [self.previous_path, self.path] if self.double_checkpoint else [self.path]
        return [path for path in paths if os.path.exists(path)]

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state)
