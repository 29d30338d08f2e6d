"""ModelCheckpoint: save weights or full training state, atomically, never non-finite; keep the best / newest."""
from __future__ import annotations

import glob
import math
import numbers
import os
from typing import Any

from ..checkpointing import training_state
from ..checkpointing.files import atomic_save, check_writable, cleanup_temp_files
from ..checkpointing.policy import SaveSchedule, safe_to_save
from ..checkpointing.retention import Retention, remove_files
from ..checks import require_positive_int
from ..distributed import is_rank_zero, unwrap
from ..fsdp import full_model_state, takes_part_in_saves
from .arguments import check_template, filled, require_file, require_parent_folder, template_keys
from .base import Callback
from .monitor import check_monitor, is_better, resolve_mode, validated

INTERRUPT_NAME = "interrupted.pt"


class ModelCheckpoint(Callback):
    """Save the model during training, atomically (temp file, fsync, rename).

    Args:
        filepath: file name, may hold ``str.format`` fields filled with ``epoch``
            (numbered as in the history: from 1, on across fits), the epoch's logs and,
            for mid-epoch saves (``save_freq=N``), ``batch`` (the batch's number in its
            epoch, from 1, as in Keras), e.g. ``"ckpt/epoch{epoch:02d}-{val_loss:.3f}.pt"``.
            A name using ``val_*`` fields is written only on epochs that validate.
        monitor: the logged value that decides "best".
        mode: "min", "max" or "auto" (max for accuracy-like names).
        save_best_only: only write when ``monitor`` improves (the file is overwritten
            unless the name has fields).
        save_weights_only: True writes a plain state_dict (loadable in bare PyTorch);
            False writes a full training checkpoint that ``fit(resume_from=...)`` continues.
        save_freq: "epoch", an integer number of batches (mid-epoch checkpoints), or "validation": after
            each validation, the epoch-end ones (epochs ``validation_freq`` picks) and those of
            ``fit(validation_every_n_steps=N)`` (mid-epoch, resumable; ``monitor`` is that validation's
            value; the name may use ``{step}``, the global step, and ``{batch}``).
        verbose: 1 prints a line per saved (and per deleted) file.
        initial_value_threshold: as in Keras, a value ``monitor`` must beat before
            ``save_best_only`` (or ``save_top_k``) saves anything.
        save_top_k: keep the files of the k best epochs by ``monitor``: an epoch is written only
            when it enters the top k, and the file it pushes out is deleted (None: no such rule).
        keep_last: keep the n most recently written files, deleting older ones (None: no such rule).
            With ``save_top_k`` too, every epoch is written and a file is kept while it is in the
            top k or among the n newest.
        weights: "trained" (the model's weights) or "averaged": the average an ``EMA`` / ``SWA`` callback of
            this fit keeps (:mod:`kerastorch.averaging`). A weights file then holds the average (the trained
            weights while there is none yet, e.g. SWA before its ``start_epoch``); ``{weights}`` in ``filepath``
            names which ("ema", "swa" or "trained"). A full checkpoint always holds the trained weights (what
            resuming needs; the average travels in the callback's state) and, with "averaged", the average too
            under ``"averaged_model"`` (its kind under ``"averaged_kind"``).

    ``save_top_k`` and ``keep_last`` need a field in ``filepath`` (so the files' names differ).
    They delete only files this callback wrote (in this run, or in the run a resumed fit
    continues: the ranking is part of its state, saved in full checkpoints), only after the new
    file is completely written, and only on rank 0; equal scores keep the older file.
    ``best_model_path``, ``best_model_score``, ``best_k_models`` and ``last_model_path`` tell
    which files it kept (absolute paths).

    A non-finite loss or non-finite weights never overwrite a good file. On Ctrl-C or
    SIGTERM a full training checkpoint is written to ``interrupted.pt`` beside ``filepath``.

    Example:
        >>> cb = ModelCheckpoint("ckpt/best.pt", monitor="val_loss", save_best_only=True)
        >>> top = ModelCheckpoint("ckpt/e{epoch:02d}-{val_loss:.3f}.pt", save_top_k=3, keep_last=1)
    """

    writes_files = True  # fit(fast_dev_run=...) leaves it out

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", mode: str = "auto",
                 save_best_only: bool = False, save_weights_only: bool = True,
                 save_freq: str | int = "epoch", verbose: int = 0, initial_value_threshold: float | None = None,
                 save_top_k: int | None = None, keep_last: int | None = None, weights: str = "trained") -> None:
        super().__init__()
        if weights not in ("trained", "averaged"):
            raise ValueError(f"`weights` must be 'trained' or 'averaged' (an EMA or SWA callback's average). "
                             f"Received: weights={weights!r}")
        self.weights = weights
        self.filepath = os.fspath(filepath)
        self.directory = os.path.dirname(os.path.abspath(self.filepath))
        self.monitor, self.save_best_only = monitor, save_best_only
        self.mode = resolve_mode(monitor, mode)
        self.save_weights_only, self.verbose = save_weights_only, verbose
        self.schedule = SaveSchedule(save_freq, validation=True)
        self.inactive_hooks = ("on_train_batch_end",) if self.schedule.per_epoch or self.schedule.on_validation else ()
        self.initial_value_threshold = _threshold(initial_value_threshold)
        self._check_retention(save_top_k, keep_last)
        self.retention = Retention(self.mode, save_top_k, keep_last)
        self.best: float | None = self.initial_value_threshold
        self._pending: list[tuple[str, bool, float | None]] = []  # (path, mid_epoch, score) decided this hook

    def _check_retention(self, save_top_k: int | None, keep_last: int | None) -> None:
        require_positive_int("save_top_k", save_top_k, allow_none=True)
        require_positive_int("keep_last", keep_last, allow_none=True)
        if save_top_k is not None and self.save_best_only:
            raise ValueError("Pass either `save_best_only=True` or `save_top_k`, not both: save_top_k=1 keeps the "
                             f"best file under its own name. Received: save_top_k={save_top_k}, save_best_only=True")
        for name, value in (("save_top_k", save_top_k), ("keep_last", keep_last)):
            if value is not None and not template_keys(self.filepath):
                stem, ext = os.path.splitext(self.filepath)
                raise ValueError(f"ModelCheckpoint({name}={value}) keeps several files, so `filepath` needs a field "
                                 f"that differs between them, e.g. {stem + '-{epoch:03d}' + ext!r}. "
                                 f"Received: filepath={self.filepath!r}")

    @property
    def best_model_path(self) -> str | None:
        """The kept file with the best ``monitor`` value (absolute path), or None."""
        return self.retention.best_path

    @property
    def best_model_score(self) -> float | None:
        """The ``monitor`` value of :attr:`best_model_path`, or None."""
        return self.retention.best_score

    @property
    def best_k_models(self) -> dict[str, float]:
        """The kept files ranked by ``monitor``, best first: ``{path: value}``."""
        return self.retention.best_k

    @property
    def last_model_path(self) -> str | None:
        """The file written last (absolute path), or None."""
        return self.retention.last_path

    def check_params(self) -> None:
        """Before training: ``filepath`` names a file, its fields will be logged, ``save_best_only`` can save."""
        require_file(self.filepath, self, "filepath", "epoch{epoch:02d}.pt")
        by_score = "save_best_only=True" if self.save_best_only else \
            f"save_top_k={self.retention.top_k}" if self.retention.top_k is not None else None
        if self.schedule.on_validation:
            self._check_validation_saves(by_score)
        elif self.schedule.per_epoch:
            if "batch" in template_keys(self.filepath):
                raise ValueError(f"ModelCheckpoint `filepath`={self.filepath!r} uses {{batch}}, which only mid-epoch "
                                 "saves know. Pass save_freq=<number of batches>, or drop {batch} from the name.")
            check_template(self.filepath, self, "filepath")
        else:
            check_template(self.filepath, self, "filepath", keys=("batch",), reason=(
                f"but save_freq={self.schedule.save_freq} saves in the middle of epochs, where only {{epoch}} and "
                "{batch} are known. Use only those in the name, or save_freq='epoch'."))
            if by_score is not None:
                raise ValueError(
                    f"ModelCheckpoint({by_score}) compares the epoch's {self.monitor!r}, but save_freq="
                    f"{self.schedule.save_freq} saves in the middle of epochs, where no epoch value exists: nothing "
                    f"would ever be saved. Use save_freq='epoch' with {by_score}.")
        if by_score is not None:
            check_monitor(self.monitor, self)
        require_file(filled(self.filepath, self.params.get("log_keys") or ()), self, "filepath",
                     "epoch{epoch:02d}.pt")
        require_parent_folder(self.filepath, self, "filepath")

    def on_train_begin(self, logs=None):
        self._pending = []  # nothing decided by an earlier fit is written by this one
        if is_rank_zero():
            check_writable(self.directory)
            cleanup_temp_files(self.directory)

    def _check_validation_saves(self, by_score: str | None) -> None:
        """save_freq="validation": fit validates, its windows are closed at step validations, names are known."""
        every, window = self.params.get("validation_every_n_steps") or 0, self.params.get("grad_accum_steps", 1)
        if not self.params.get("has_validation"):
            raise ValueError("ModelCheckpoint(save_freq='validation') saves after each validation, but this fit has "
                             "no validation data. Pass validation_data=... (or validation_split=...) to fit.")
        if every and window > 1 and every % window:
            raise ValueError(f"ModelCheckpoint(save_freq='validation') would save inside a gradient-accumulation "
                             f"window: validation_every_n_steps={every} is not a multiple of grad_accum_steps="
                             f"{window}. Validate every {every * window // math.gcd(every, window)} steps, or save "
                             "per epoch.")
        keys = ["batch", "step", *(k for k in self.params.get("log_keys") or () if k.startswith("val_"))]
        check_template(self.filepath, self, "filepath", keys=keys, reason=(
            "but save_freq='validation' also saves after step-level validations, where only {epoch}, {batch}, "
            "{step} and the val_* values are known. Use only those in the name."))

    def on_epoch_end(self, epoch, logs=None):
        if getattr(self.session, "nonfinite", False):  # fit said none is written
            return
        if self.schedule.per_epoch or (self.schedule.on_validation and validated(logs or {})):
            self._maybe_save(epoch, logs or {}, mid_epoch=False)

    def on_step_validation(self, step: int, logs: dict[str, Any]) -> None:
        """save_freq="validation": a step-level validation ran; save as its ``monitor`` value says."""
        if self.schedule.on_validation:
            self._maybe_save(self.session.epoch, logs, mid_epoch=True, batch=self.session.batch, scored=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.schedule.batch_done(self.session):
            self._maybe_save(self.session.epoch, {}, mid_epoch=True, batch=batch)

    def _score(self, logs: dict[str, Any]) -> float | None:
        """The epoch's ``monitor`` value when it is logged, finite-or-inf and beats ``initial_value_threshold``."""
        current = logs.get(self.monitor)
        if current is None or math.isnan(current):
            return None
        threshold = self.initial_value_threshold
        return None if threshold is not None and not is_better(current, threshold, self.mode) else float(current)

    def _maybe_save(self, epoch: int, logs: dict[str, Any], mid_epoch: bool, batch: int | None = None,
                    scored: bool = False) -> None:
        if not mid_epoch and not validated(logs) and any(k.startswith("val_") for k in template_keys(self.filepath)):
            return  # fit(validation_freq=N): this epoch has no val_* value to name the file with
        score = self._score(logs) if scored or not mid_epoch else None
        if self.save_best_only:
            if score is None or (self.best is not None and not is_better(score, self.best, self.mode, 0.0)):
                return
        elif self.retention.keep_last is None and not self.retention.admits(score):
            return  # save_top_k alone: only an epoch entering the top k is written
        if not takes_part_in_saves(self.model) or not safe_to_save(self.model, self.session):
            return  # rank 0 writes; under FSDP every rank gathers the state with it
        if self.save_best_only:
            self.best = score
        # Written by flush_writes, after every callback's hook for this epoch/batch, so
        # the saved callback states (EarlyStopping counters, ...) are this epoch's.
        self._pending.append((self._format_path(epoch, logs, batch), mid_epoch, score))

    def flush_writes(self) -> None:
        pending, self._pending = self._pending, []
        for path, mid_epoch, score in pending:
            self._write(path, mid_epoch, score)

    def _format_path(self, epoch: int, logs: dict[str, Any], batch: int | None = None) -> str:
        fields = {**logs, "batch": batch + 1} if batch is not None else dict(logs)
        fields.setdefault("step", self.session.record.global_step if self.session is not None else 0)
        fields.setdefault("weights", self._average_kind() or "trained")
        try:
            return self.filepath.format(epoch=self.epoch_number(epoch), **fields)
        except KeyError as err:  # only with a custom step or loss: other keys are checked before training
            raise KeyError(f"ModelCheckpoint filepath {self.filepath!r} uses {err}, which is not logged. "
                           f"Available: epoch, {', '.join(sorted(fields))}") from None

    def _write(self, path: str, mid_epoch: bool, score: float | None) -> None:
        before = self.retention.state_dict()
        dropped = self.retention.add(path, score)  # first, so a full checkpoint's ranking holds this file
        try:
            state = self._weights_state() if self.save_weights_only else \
                training_state.capture(self.model, self.session, mid_epoch=mid_epoch)
            if not self.save_weights_only and self._average_kind() is not None:
                state.update(averaged_model=self._weights_state(), averaged_kind=self._average_kind())
            if is_rank_zero():
                atomic_save(state, path)
        except BaseException:
            self.retention.load_state_dict(before)  # nothing was written: the ranking stays as it was
            raise
        removed = remove_files(dropped) if is_rank_zero() else []  # only now that the new file is durable
        if self.verbose:
            print(f"ModelCheckpoint: saved {path}")  # noqa: T201 (verbose=1: output the user asked for)
            for old in removed:
                print(f"ModelCheckpoint: deleted {old}")  # noqa: T201 (verbose=1: output the user asked for)

    def _average_kind(self) -> str | None:
        """"ema" / "swa" when ``weights="averaged"`` and the fit's average holds something, else None."""
        average = self.model.__dict__.get("_weight_average") if self.weights == "averaged" else None
        return average.kind if average is not None and average.count > 0 else None

    def _weights_state(self) -> dict[str, Any]:
        """The weights this callback saves: the trained ones, or the average swapped in (copied, then swapped back)."""
        if self._average_kind() is None:
            return full_model_state(self.model)
        with self.model.__dict__["_weight_average"].swapped_in(unwrap(self.model)):
            return {key: value.detach().clone() for key, value in full_model_state(self.model).items()}

    def save_interrupt_checkpoint(self) -> str | None:
        """Called by fit on Ctrl-C / SIGTERM: a full, resumable mid-epoch checkpoint; returns its path."""
        if not (takes_part_in_saves(self.model) and safe_to_save(self.model, self.session)):
            return None
        path = os.path.join(self.directory, INTERRUPT_NAME)
        state = training_state.capture(self.model, self.session, mid_epoch=True)
        if is_rank_zero():
            atomic_save(state, path)
        return path

    def resume_candidates(self) -> list[str]:
        """Files ``fit(resume_from="auto")`` may continue from (full checkpoints only)."""
        if self.save_weights_only:
            pattern = os.path.join(self.directory, INTERRUPT_NAME)
        else:
            pattern = os.path.join(self.directory, "*")
        return [p for p in glob.glob(pattern) if os.path.isfile(p) and not os.path.basename(p).startswith(".")]

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, **self.schedule.state_dict(), "retention": self.retention.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.schedule.load_state_dict(state)
        if "retention" in state:  # checkpoints written before save_top_k / keep_last have none
            self.retention.load_state_dict(state["retention"])


def _threshold(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("`initial_value_threshold` must be a number or None. "
                        f"Received: initial_value_threshold={value!r}")
    if math.isnan(value):
        raise ValueError("`initial_value_threshold` must not be NaN: no value would beat it. "
                         f"Received: initial_value_threshold={value!r}")
    return float(value)
