"""fit's resume: pick the checkpoint, check it fits before any callback runs, load it after on_train_begin.

* :func:`request_resume` (before ``on_train_begin``): ``resume_from`` (a path, or "auto":
  the newest valid file the checkpoint callbacks wrote) or, without it, a callback's
  ``auto_resume_path`` (BackupAndRestore's backup). The file is loaded and checked
  against the model (:func:`~kerastorch.checkpointing.compatibility.check_resumable`):
  a mismatch raises before any callback, optimizer step or file write.
* :func:`resume` (after ``on_train_begin``): applies it (or a checkpoint a callback asked
  for in ``on_train_begin`` through ``session.request_resume``, checked then) and returns
  the epoch to start from.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

from ..checkpointing.compatibility import check_resumable
from ..checkpointing.files import newest_valid, safe_load
from ..checkpointing.training_state import restore
from .session import Session


def request_resume(model: Any, session: Session, resume_from: Any, trust_checkpoint: bool) -> None:
    """Find, load and check the checkpoint this fit resumes from; keep it in ``session.resume_loaded``."""
    path, trust = _chosen(session, resume_from, trust_checkpoint)
    if path is None:
        return
    checkpoint = safe_load(path, trust_checkpoint=trust)
    check_resumable(model, session, checkpoint, path)
    session.resume_loaded = (path, checkpoint)


def _chosen(session: Session, resume_from: Any, trust_checkpoint: bool) -> tuple[str | None, bool]:
    if resume_from is None:
        for auto_resume_path in session.callbacks.auto_resume_path:
            path = auto_resume_path()
            if path is not None:
                return os.fspath(path), False
        return None, False
    if resume_from == "auto":
        listers = session.callbacks.resume_candidates
        candidates = [path for listed in listers for path in listed()]
        path = newest_valid(candidates, trust_checkpoint=trust_checkpoint) if candidates else None
        if path is None:
            _warn_nothing_to_resume([getattr(listed, "__self__", None) for listed in listers])
            return None, False
        return os.fspath(path), trust_checkpoint
    if not isinstance(resume_from, (str, os.PathLike)) or not os.path.isfile(resume_from):
        raise FileNotFoundError(f"`resume_from` must be an existing checkpoint file or 'auto'. "
                                f"Received: resume_from={resume_from!r}")
    return os.fspath(resume_from), trust_checkpoint


def _warn_nothing_to_resume(callbacks: list[Any]) -> None:
    if not callbacks:
        warnings.warn("fit(resume_from='auto') found nothing to resume from: no callback writes resumable "
                      "checkpoints. Add ModelCheckpoint(..., save_weights_only=False) or BackupAndRestore(...) "
                      "to `callbacks`, or pass resume_from=<checkpoint file>. Training starts from scratch.",
                      UserWarning, stacklevel=4)
        return
    folders = [f"{getattr(cb, 'directory', None) or getattr(cb, 'backup_dir', '?')} ({type(cb).__name__})"
               for cb in callbacks]
    warnings.warn(f"fit(resume_from='auto') found no valid checkpoint to resume from in: {', '.join(folders)}. "
                  "Training starts from scratch.", UserWarning, stacklevel=4)


def resume(model: Any, session: Session, initial_epoch: int) -> int:
    """Load the checkpoint chosen for this fit (after ``on_train_begin``); return the epoch to start from."""
    if session.resume_path is not None:  # asked for by a callback in on_train_begin
        path, trust = session.resume_path
        session.resume_path = session.resume_loaded = None
        checkpoint = safe_load(path, trust_checkpoint=trust)
        check_resumable(model, session, checkpoint, path)
    elif session.resume_loaded is not None:
        (path, checkpoint), session.resume_loaded = session.resume_loaded, None
    else:
        return initial_epoch
    return restore(model, session, checkpoint, path)
