"""MLflowLogger: a fit's parameters, epoch logs, model summary and checkpoints in an MLflow run."""
from __future__ import annotations

import contextlib
import glob
import importlib
import importlib.util
import math
import numbers
import os
import stat
import string
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from ..distributed import is_rank_zero
from .base import Callback
from .model_checkpoint import INTERRUPT_NAME, ModelCheckpoint

MISSING_PACKAGE = "MLflowLogger needs the `mlflow` (or `mlflow-skinny`) package: pip install kerastorch[mlflow]"
SUMMARY_NAME = "model_summary.txt"


class MLflowLogger(Callback):
    """Log a fit to MLflow: parameters, every epoch's logs as metrics, the model, checkpoints.

    When training begins, an MLflow run already active (``mlflow.active_run()``, e.g. inside
    ``with mlflow.start_run():``) is used as it is and left open. Otherwise the logger sets
    ``tracking_uri`` and ``experiment_name`` for the process (as ``mlflow.set_tracking_uri`` and
    ``mlflow.set_experiment`` do) and starts a run, which it ends when training ends (status
    FAILED when fit raises). Into the run go:

    * parameters, once per run: ``optimizer`` (its class), ``optimizer.<name>`` for each number,
      bool, string or tuple of numbers (``betas``) of its first param group, ``loss`` (as given to
      compile), ``batch_size`` (when known), ``epochs``, ``precision``, ``grad_accum_steps`` and
      ``lr_scheduler`` (its class, if any); as strings cut to MLflow's length limit;
    * each epoch's logs (training values, ``val_*``, ``lr``) as metrics whose step is the epoch of
      ``model.history`` (from 1, on across fits: a second ``fit(epochs=3)`` logs steps 4 to 6).
      A NaN is left out of its step (MLflow stores NaN poorly); the history keeps it;
    * ``model_summary.txt``: the module's ``repr`` (``str(model)``), once per run;
    * with ``log_models``, at train end, under ``checkpoints/``: for each ModelCheckpoint of the
      fit, the last file it wrote in this fit (a file of its ``filepath`` template that appeared
      or changed, seen once per epoch).

    A tracking failure never costs training: the first exception an MLflow call raises becomes
    one RuntimeWarning and the logger does nothing more in that fit (a run it started is ended
    as FAILED); the history and every local file are as without it. Only rank 0 logs under
    ``torchrun``. mlflow is imported when training begins, never by ``import kerastorch``.

    Args:
        experiment_name: the experiment of the runs it starts (made if missing); None: MLflow's current one.
        run_name: the name of the runs it starts; None: MLflow chooses.
        tracking_uri: where the runs it starts go, e.g. ``"http://localhost:5000"``; None: MLflow's
            current URI (``MLFLOW_TRACKING_URI``).
        log_models: "last": each ModelCheckpoint's last file of the fit. "best": the file of the best
            monitored value, i.e. the last one a ``save_best_only`` checkpoint wrote (else its last file).
            False: none.
        tags: tags set on the run used (an active one too).

    Raises:
        ImportError: at fit, when neither mlflow nor mlflow-skinny is installed.

    Example:
        >>> logger = MLflowLogger(experiment_name="two-rings", log_models="best", tags={"team": "vision"})
        >>> logger.log_models, logger.run_name
        ('best', None)
    """

    writes_files = True  # fit(fast_dev_run=...) leaves it out

    def __init__(self, experiment_name: str | None = None, run_name: str | None = None,
                 tracking_uri: str | None = None, log_models: Literal["best", "last", False] = False,
                 tags: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not (log_models is False or (isinstance(log_models, str) and log_models in ("best", "last"))):
            raise ValueError(f"`log_models` must be 'best', 'last' or False. Received: log_models={log_models!r}")
        for name, value in (("experiment_name", experiment_name), ("run_name", run_name),
                            ("tracking_uri", tracking_uri)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"`{name}` must be a string or None. Received: {name}={value!r} "
                                f"of type {type(value).__name__}")
        if tags is not None and not isinstance(tags, dict):
            raise TypeError(f"`tags` must be a dict of tag names to values, or None. Received: tags={tags!r}")
        self.experiment_name, self.run_name, self.tracking_uri = experiment_name, run_name, tracking_uri
        self.log_models, self.tags = log_models, dict(tags or {})
        self._mlflow: Any = None  # the mlflow module while logging, None when off (other ranks, failure)
        self._started = False  # the run in use is one this logger started (and ends)
        self._described: set[str] = set()  # runs that got the parameters and the summary
        self._watches: list[_Watch] = []

    def check_params(self) -> None:
        """Before training: mlflow is installed (on rank 0, the one that logs)."""
        if is_rank_zero() and importlib.util.find_spec("mlflow") is None:
            raise ImportError(MISSING_PACKAGE)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``mlflow.<name>(...)``; None without calling it once logging is off."""
        if self._mlflow is None:
            return None
        try:
            return getattr(self._mlflow, name)(*args, **kwargs)
        except Exception as error:  # any tracking failure: warn once, keep training
            self._disable(error)
            return None

    def _disable(self, error: Exception) -> None:
        mlflow, self._mlflow, self._watches = self._mlflow, None, []
        warnings.warn(f"MLflow logging failed ({type(error).__name__}: {error}); training continues, nothing is "
                      "lost locally. MLflowLogger logs nothing more in this fit.", RuntimeWarning, stacklevel=2)
        if self._started and mlflow is not None:
            self._started = False
            with contextlib.suppress(Exception):  # the failure is reported above; the run's end is best effort
                mlflow.end_run(status="FAILED")

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._mlflow, self._started, self._watches = None, False, []
        if not is_rank_zero():
            return
        try:
            self._mlflow = importlib.import_module("mlflow")
        except Exception as error:  # a broken installation is a tracking failure too
            self._disable(error)
            return
        run = self._open_run()
        if run is None:
            return
        if self.tags:
            self._call("set_tags", self.tags)
        if run.info.run_id not in self._described:
            self._call("log_params", self._parameters())
            self._call("log_text", str(self.model), SUMMARY_NAME)
            if self._mlflow is not None:
                self._described.add(run.info.run_id)
        if self.log_models and self._mlflow is not None:  # files already there are no checkpoint of this fit
            self._watches = [_Watch(_pattern(cb.filepath)) for cb in self.session.callbacks.find(ModelCheckpoint)]

    def _open_run(self) -> Any:
        """The active run, else a run started with the logger's URI, experiment and name (None on failure)."""
        run = self._call("active_run")
        if run is not None or self._mlflow is None:
            return run
        if self.tracking_uri is not None:
            self._call("set_tracking_uri", self.tracking_uri)
        if self.experiment_name is not None:
            self._call("set_experiment", self.experiment_name)
        run = self._call("start_run", run_name=self.run_name)
        self._started = run is not None
        return run

    def _parameters(self) -> dict[str, str]:
        """The fit's hyperparameters as MLflow parameters (strings cut to MLflow's limit)."""
        config = self.session.config
        optimizer = config.optimizer
        scheduler = config.lr_scheduler
        values = {"optimizer": type(optimizer).__name__,
                  **{f"optimizer.{key}": value for key, value in optimizer.param_groups[0].items()
                     if key != "params" and _plain(value)},
                  "loss": _describe(config.loss_spec), "batch_size": self.session.batches.sizes[0],
                  "epochs": self.params.get("epochs"), "precision": config.precision.mode,
                  "grad_accum_steps": config.grad_accum_steps,
                  "lr_scheduler": None if scheduler is None else type(scheduler).__name__}
        limit = _param_limit()
        return {key: str(value)[:limit] for key, value in values.items() if value is not None}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._mlflow is None:
            return
        for watch in self._watches:  # the checkpoints written since the last epoch end
            watch.scan()
        metrics = {key: float(value) for key, value in (logs or {}).items()
                   if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)}
        if metrics:
            self._call("log_metrics", metrics, step=self.epoch_number(epoch))

    def on_train_end(self, logs: dict | None = None) -> None:
        watches, self._watches = self._watches, []
        for watch in watches:
            watch.scan()
            if watch.last is not None:
                self._call("log_artifact", watch.last, artifact_path="checkpoints")
        if self._started:
            self._call("end_run")
        self._mlflow, self._started = None, False

    def on_exception(self, error: BaseException) -> None:
        """fit is raising: a run this logger started ends as FAILED (an active run of the user's stays open)."""
        if self._started:
            self._call("end_run", status="FAILED")
        self._mlflow, self._started, self._watches = None, False, []


@dataclass
class _Watch:
    """The files one ModelCheckpoint's template names: their stamps, and the last one changed this fit."""

    pattern: str
    stamps: dict[str, tuple[int, int, int]] = field(init=False)
    last: str | None = None

    def __post_init__(self) -> None:
        self.stamps = _stamps(self.pattern)

    def scan(self) -> None:
        """Note the files written since the previous scan; the newest of them becomes ``last``."""
        stamps = _stamps(self.pattern)
        changed = [path for path, stamp in stamps.items() if self.stamps.get(path) != stamp]
        if changed:
            self.last = max(changed, key=lambda path: (stamps[path][1], path))
        self.stamps = stamps


def _pattern(filepath: str) -> str:
    """A glob of every file the ``str.format`` template ``filepath`` can name (each field is ``*``)."""
    parsed = string.Formatter().parse(os.path.abspath(filepath))
    return "".join(glob.escape(literal) + ("*" if name is not None else "") for literal, name, _, _ in parsed)


def _stamps(pattern: str) -> dict[str, tuple[int, int, int]]:
    """``path -> (inode, mtime_ns, size)`` of the files matching ``pattern`` but temp and interrupt files.

    An atomic save replaces the file: its inode changes even where the clock is too coarse for mtime.
    """
    stamps = {}
    for path in (found for found in glob.glob(pattern) if os.path.basename(found) != INTERRUPT_NAME):
        with contextlib.suppress(OSError):  # a file removed since the listing is no checkpoint of this fit
            info = os.stat(path)
            if stat.S_ISREG(info.st_mode):
                stamps[path] = (info.st_ino, info.st_mtime_ns, info.st_size)
    return stamps


def _plain(value: Any) -> bool:
    """A hyperparameter worth a parameter: a number, bool or string, or a tuple/list of numbers."""
    items = value if isinstance(value, (tuple, list)) and value else (value,)
    return isinstance(value, str) or all(isinstance(item, numbers.Number) for item in items)


def _describe(loss_spec: Any) -> str | None:
    """The compiled loss as given: its name, a function's or class's name, else its repr."""
    if loss_spec is None or isinstance(loss_spec, str):
        return loss_spec
    name = getattr(loss_spec, "__name__", None)
    return name if isinstance(name, str) else repr(loss_spec)


def _param_limit() -> int:
    """MLflow's longest parameter value (6000 characters since MLflow 2.x; 500 before)."""
    with contextlib.suppress(ImportError, AttributeError):  # moved in a later MLflow: the smallest limit
        return int(importlib.import_module("mlflow.utils.validation").MAX_PARAM_VAL_LENGTH)
    return 500
