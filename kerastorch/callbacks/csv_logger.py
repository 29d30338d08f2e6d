"""CSVLogger: one CSV row per epoch, written and flushed as the epoch ends."""
from __future__ import annotations

import csv
import os
from typing import Any, TextIO

from ..distributed import is_rank_zero
from .arguments import require_file, require_parent_folder
from .base import Callback
from .history import order_logs as history_order

MISSING = ""  # the cell of a key an epoch did not log (e.g. val_* between validations)


class CSVLogger(Callback):
    """Write each epoch's logs to a CSV file.

    Columns are ``epoch`` (numbered as in the history frame, on across fits) and then the
    epoch-log keys in the history's order (training values, ``val_*``, ``lr``), fixed
    when the first row is written: the keys fit will log (known before training, so the
    ``val_*`` columns are there even when the first epoch does not validate, with
    ``fit(validation_freq=N)``) and the first row's. With a custom step whose keys are not
    known in advance and a first epoch without validation, the ``val_`` twin of each
    training key gets a column too, as Keras does. Values are written with ``str(value)``,
    which for a Python float is the shortest text that reads back to the same float
    (``pandas.read_csv`` reads them back exactly with pandas >= 3, or with
    ``float_precision="round_trip"`` before).
    A key an epoch did not log is an empty cell (``pandas.read_csv`` reads NaN; Keras
    writes ``NA``). The file is opened at the
    first epoch end (a fit that fails before it leaves an existing file untouched) and
    each row is flushed as it is written. Only rank 0 writes under ``torchrun``.

    Args:
        filename: the CSV file.
        separator: the field separator.
        append: True appends to an existing file, keeping its header (and its
            columns; a logged key the header lacks is a ValueError); use it when
            resuming a run. False overwrites the file.

    The validations of ``fit(validation_every_n_steps=N)`` go to a second file beside it,
    ``<name>.steps<ext>`` (``training.steps.csv``), one row each: ``step`` (global), ``epoch`` and
    the ``val_*`` values; it is written only when such validations run (appended with ``append``).

    Example:
        >>> cb = CSVLogger("training.csv")
    """

    writes_files = True  # fit(fast_dev_run=...) leaves it out

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError("`separator` must be a single character, e.g. ',' or ';'. "
                             f"Received: separator={separator!r}")
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.keys: list[str] | None = None
        self._file: TextIO | None = None
        self._writer: Any = None
        stem, ext = os.path.splitext(self.filename)
        self.steps_filename = f"{stem}.steps{ext or '.csv'}"
        self._steps_file: TextIO | None = None
        self._steps_writer: Any = None
        self._steps_keys: list[str] = []

    def check_params(self) -> None:
        """Before training: ``filename`` names a file; with ``append``, its header has every logged column."""
        require_file(self.filename, self, "filename", "training.csv")
        require_parent_folder(self.filename, self, "filename")
        header = self._existing_header() if self.append else None
        log_keys = self.params.get("log_keys")
        if header is None or log_keys is None or self.params.get("custom_logs"):
            return
        unknown = [key for key in history_order(dict.fromkeys(log_keys, 0.0)) if key not in header]
        if unknown:
            raise ValueError(f"CSVLogger(append=True): {self.filename!r} has the columns {['epoch', *header]}, which "
                             f"lack the {unknown} this fit logs. Write to a new file or use append=False.")

    def _existing_header(self) -> list[str] | None:
        """The columns after ``epoch`` of an existing non-empty file written by a CSVLogger, else None."""
        if not os.path.isfile(self.filename) or os.path.getsize(self.filename) == 0:
            return None
        with open(self.filename, newline="") as existing:
            header = next(csv.reader(existing, delimiter=self.sep), None)
        return header[1:] if header and header[0] == "epoch" else None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.on_train_end()  # a previous fit that raised may have left the file open
        self.keys = None

    def _open(self) -> TextIO:
        # At the first epoch end, not at train begin: a fit refused on its first batch leaves
        # an existing file (append=False overwrites it) as it was.
        os.makedirs(os.path.dirname(os.path.abspath(self.filename)), exist_ok=True)
        if self.append and os.path.isfile(self.filename) and os.path.getsize(self.filename) > 0:
            self.keys = self._existing_header()
            self._file = open(self.filename, "a", newline="")  # noqa: SIM115 (closed in on_train_end)
        else:
            self._file = open(self.filename, "w", newline="")  # noqa: SIM115 (closed in on_train_end)
        self._writer = csv.writer(self._file, delimiter=self.sep, lineterminator="\n")
        return self._file

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not is_rank_zero():
            return
        handle = self._file if self._file is not None else self._open()
        ordered = history_order(logs or {})
        if self.keys is None:
            self.keys = self._columns(ordered)
            self._writer.writerow(["epoch", *self.keys])
        unknown = [key for key in ordered if key not in self.keys]
        if unknown:
            raise ValueError(f"CSVLogger: {self.filename!r} has the columns {['epoch', *self.keys]}, which lack "
                             f"the logged {unknown}. Write to a new file or use append=False.")
        values = [f"{ordered[key]}" if key in ordered else MISSING for key in self.keys]
        self._writer.writerow([self.epoch_number(epoch), *values])
        handle.flush()

    def on_step_validation(self, step: int, logs: dict[str, Any]) -> None:
        """A row of :attr:`steps_filename`: the global step, the epoch (as in the history) and the ``val_*`` values."""
        if not is_rank_zero():
            return
        if self._steps_file is None:
            keep = self.append and os.path.isfile(self.steps_filename) and os.path.getsize(self.steps_filename) > 0
            self._steps_file = open(self.steps_filename, "a" if keep else "w", newline="")  # noqa: SIM115 (closed at train end)
            self._steps_writer = csv.writer(self._steps_file, delimiter=self.sep, lineterminator="\n")
            self._steps_keys = list(history_order(logs))
            if not keep:
                self._steps_writer.writerow(["step", "epoch", *self._steps_keys])
        values = [f"{logs[key]}" if key in logs else MISSING for key in self._steps_keys]
        self._steps_writer.writerow([step, self.session.epoch_number(self.session.epoch), *values])
        self._steps_file.flush()

    def _columns(self, row: dict[str, Any]) -> list[str]:
        """The columns after ``epoch``: the keys fit will log and the first row's, in history order."""
        columns = {**dict.fromkeys(self.params.get("log_keys") or ()), **row}
        if self.params.get("custom_logs") and self.params.get("has_validation") and \
                not any(key.startswith("val_") for key in row):  # Keras: a first epoch without validation
            columns.update(dict.fromkeys(f"val_{key}" for key in row if not key.startswith("val_") and key != "lr"))
        return list(history_order(columns))

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None
        if self._steps_file is not None:
            self._steps_file.close()
            self._steps_file = self._steps_writer = None
