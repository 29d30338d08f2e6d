"""Epoch output: a compact table that fits the terminal, an HTML table in notebooks, or one line per epoch.

* :class:`EpochTable` (``verbose=1``): in a terminal, rules around the header only and one
  line per epoch, sized to the terminal width; when the columns cannot fit even with
  shorter numbers, each epoch becomes a ``name: value`` line wrapped between values (never
  inside one). In a notebook, one HTML table that grows in place. A ``time`` column gives
  each epoch's seconds (a display column only: ``model.history`` has none).
* :class:`EpochLine` (``verbose=2``, and ``verbose=1`` when stdout is a file or a pipe):
  ``Epoch 3/10 - 0.4s - loss: 0.1234 - val_loss: 0.2345``.

Epochs are numbered as in ``model.history`` (continuing across ``fit`` calls).
"""
from __future__ import annotations

import html
import math
import time
from typing import Any, cast

from ..base import Callback
from .environment import in_notebook, terminal_columns

#: The clock epoch times are read from (tests replace it).
clock = time.perf_counter


def format_value(key: str, value: Any, decimals: int = 4) -> str:
    """Format one logged value: integers and text as they are, the lr in %g, other floats to ``decimals``.

    Example:
        >>> format_value("loss", 0.123456), format_value("lr", 0.001), format_value("epoch", 3)
        ('0.1235', '0.001', '3')
    """
    if isinstance(value, (int, str)):
        return str(value)
    if key == "lr" or key.endswith("_lr"):
        return f"{value:.3g}"
    return f"{value:.{decimals}f}"


def render_table(row: dict[str, Any], decimals: int = 4, min_width: int = 0) -> str:
    """A one-row prettytable as a string (column width at least ``min_width``); the torchkeras form's table.

    Example:
        >>> print(render_table({"epoch": 1, "loss": 0.5}))
        +-------+--------+
        | epoch |  loss  |
        +-------+--------+
        |   1   | 0.5000 |
        +-------+--------+
    """
    from prettytable import PrettyTable  # imported when a table is printed, not with kerastorch

    table = PrettyTable(list(row))
    for name in row:
        table.min_width[name] = max(min_width, len(name))
    table.add_row([format_value(k, v, decimals) for k, v in row.items()])
    return table.get_string()


def wrap_parts(parts: list[str], columns: int, separator: str = " - ", indent: str = "    ") -> list[str]:
    """Join ``parts`` with ``separator`` into lines of at most ``columns``, breaking only between parts.

    Example:
        >>> wrap_parts(["Epoch 1/2", "loss: 0.5000", "acc: 0.9000"], columns=26)
        ['Epoch 1/2 - loss: 0.5000', '    acc: 0.9000']
    """
    lines: list[str] = []
    line = ""
    for part in parts:
        candidate = f"{line}{separator}{part}" if line else (indent if lines else "") + part
        if line and len(candidate) > columns:
            lines.append(line)
            candidate = indent + part
        line = candidate
    return [*lines, line] if line else lines


def format_seconds(seconds: float) -> str:
    """An epoch's time as the table and the epoch line show it: tenths below 100 s, whole seconds above.

    Example:
        >>> format_seconds(0.43), format_seconds(99.94), format_seconds(1234.5)
        ('0.4s', '99.9s', '1234s')
    """
    return f"{seconds:.1f}s" if seconds < 99.95 else f"{seconds:.0f}s"


def epoch_parts(label: str, logs: dict[str, Any], decimals: int) -> list[str]:
    """``[label, "loss: 0.1234", ...]``: the pieces of an epoch line."""
    return [label, *(f"{k}: {format_value(k, v, decimals)}" for k, v in logs.items())]


class _Layout:
    """Column widths of the text table for one set of columns and decimals."""

    def __init__(self, names: tuple[str, ...], cells: list[str], decimals: int) -> None:
        self.names, self.decimals = names, decimals
        narrowest = decimals + 2  # "0.1234": a value below 10 fits without widening the column
        self.widths = [max(len(name), len(cell), 5 if name == "time" else narrowest)  # "99.9s", "1234s"
                       for name, cell in zip(names, cells, strict=True)]

    @property
    def width(self) -> int:
        return sum(self.widths) + 3 * len(self.widths) + 1

    def holds(self, names: tuple[str, ...], cells: list[str]) -> bool:
        return names == self.names and all(len(c) <= w for c, w in zip(cells, self.widths, strict=True))

    def rule(self) -> str:
        return "+" + "+".join("-" * (w + 2) for w in self.widths) + "+"

    def line(self, cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, self.widths, strict=True)) + " |"

    def header(self) -> list[str]:
        return [self.rule(), self.line(list(self.names)), self.rule()]


class _HtmlTable:
    """The rows so far as an HTML table (notebooks), with the text table as the plain form."""

    def __init__(self, rows: list[dict[str, Any]], decimals: int) -> None:
        self.rows, self.decimals = rows, decimals

    def _repr_html_(self) -> str:
        names = list(dict.fromkeys(name for row in self.rows for name in row))
        head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        body = "".join("<tr>" + "".join(f"<td>{self._cell(row, n)}</td>" for n in names) + "</tr>"
                       for row in self.rows)
        return f'<table class="kerastorch-epochs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def _cell(self, row: dict[str, Any], name: str) -> str:
        return format_value(name, row[name], self.decimals) if name in row else ""

    def __repr__(self) -> str:
        lines: list[str] = []
        layout: _Layout | None = None
        for row in self.rows:
            names, cells = tuple(row), [format_value(k, v, self.decimals) for k, v in row.items()]
            if layout is None or not layout.holds(names, cells):
                layout = _Layout(names, cells, self.decimals)
                lines += layout.header()
            lines.append(layout.line(cells))
        return "\n".join(lines)


class EpochTable(Callback):
    """One row per epoch under a header printed once (again when the columns change), with the epoch's time.

    Args:
        decimals: digits after the point for floats (3 when the table would not fit otherwise).
        columns: the width to fit; None reads the terminal's (``COLUMNS`` when set) at train begin.

    Example:
        >>> table = EpochTable(columns=80)
    """

    def __init__(self, decimals: int = 4, columns: int | None = None) -> None:
        super().__init__()
        self.decimals = decimals
        self.columns = columns
        self._layout: _Layout | None = None
        self._width = 80
        self._notebook = False
        self._rows: list[dict[str, Any]] = []
        self._handle: Any = None
        self._start = 0.0

    def on_train_begin(self, logs=None):
        self._layout, self._rows, self._handle = None, [], None
        self._notebook = in_notebook()
        self._width = self.columns if self.columns is not None else terminal_columns()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = clock()

    def on_epoch_end(self, epoch, logs=None):
        number = self.session.epoch_base + epoch + 1
        row = {"epoch": number, "time": format_seconds(clock() - self._start), **(logs or {})}
        if self._notebook:
            self._show_html(row)
        else:
            total = self.session.epoch_base + self.params.get("epochs", 0)
            print("\n".join(self.text_lines(row, f"Epoch {number}/{total}")), flush=True)

    def on_train_end(self, logs=None):
        if self._layout is not None and not self._notebook:
            print(self._layout.rule(), flush=True)  # the table's closing border
        self._layout = None

    def text_lines(self, row: dict[str, Any], label: str) -> list[str]:
        """The lines one epoch adds in a terminal of ``self._width`` columns (a header when needed)."""
        names = tuple(row)
        if self._layout is not None:
            cells = [format_value(k, v, self._layout.decimals) for k, v in row.items()]
            if self._layout.holds(names, cells):
                return [self._layout.line(cells)]
        for decimals in (self.decimals, min(self.decimals, 3)):
            cells = [format_value(k, v, decimals) for k, v in row.items()]
            layout = _Layout(names, cells, decimals)
            if layout.width <= self._width:
                closing = [self._layout.rule()] if self._layout is not None else []
                self._layout = layout
                return [*closing, *layout.header(), layout.line(cells)]
        if self._layout is not None:  # leaving the table form: close it first
            closing, self._layout = [self._layout.rule()], None
        else:
            closing = []
        logs = {k: v for k, v in row.items() if k not in ("epoch", "time")}
        label = f"{label} - {row['time']}" if "time" in row else label  # as the epoch line has it
        return [*closing, *wrap_parts(epoch_parts(label, logs, self.decimals), self._width)]

    def _show_html(self, row: dict[str, Any]) -> None:
        from IPython.display import display  # a notebook is running: IPython is imported already

        self._rows.append(row)
        table = _HtmlTable(list(self._rows), self.decimals)
        if self._handle is None:
            self._handle = display(table, display_id=True)
        else:
            self._handle.update(table)


class EpochLine(Callback):
    """One line per epoch, for logs: ``Epoch 3/10 - 0.4s - loss: 0.1234 - val_loss: 0.2345``.

    With ``fit(verbose=1)`` and stdout redirected (a file, a pipe: ``nohup``, CI, SLURM), a long
    epoch also gets heartbeat lines, ``Epoch 3/10 - batch 400/1000 - 12.3s - loss: 0.1234`` (the
    running values so far), at least ``heartbeat`` seconds apart: on tenths of the epoch when a
    tenth takes less than that, else every ``heartbeat`` seconds. An epoch shorter than
    ``heartbeat`` seconds prints its epoch line only; so does ``verbose=2`` (Keras's one line per
    epoch). The per-batch hook compares a counter; the clock is read at a few planned batches
    (the batch rate measured so far says when the next line falls due) and the running values,
    a host sync, only when a line is printed.

    Args:
        decimals: digits after the point for floats.
        heartbeat: the least seconds between two lines of an epoch; None prints epoch lines only.

    Example:
        >>> line = EpochLine(heartbeat=60)
    """

    def __init__(self, decimals: int = 4, heartbeat: float | None = 30.0) -> None:
        super().__init__()
        if heartbeat is not None and (isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float))
                                      or not heartbeat > 0):
            raise ValueError("`heartbeat` must be a positive number of seconds or None. "
                             f"Received: heartbeat={heartbeat!r}")
        self.decimals = decimals
        self.heartbeat = heartbeat
        self._start = self._last_line = 0.0
        self._epoch = ""  # "Epoch 3/10"
        self._next_check = 0  # the batch index at which the clock is read next
        self._reference: tuple[int, float] | None = None  # (batches done, time) of the first read

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        beating = self.heartbeat is not None and params.get("verbose") != 2
        self.inactive_hooks = () if beating else ("on_train_batch_end",)  # then not in the batch loop

    def _label(self, epoch: int) -> str:
        base = self.session.epoch_base
        return f"Epoch {base + epoch + 1}/{base + self.params.get('epochs', 0)}"

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last_line = clock()
        self._epoch, self._next_check, self._reference = self._label(epoch), 0, None

    def on_train_batch_end(self, batch, logs=None):
        if batch < self._next_check:  # the whole cost on most batches
            return
        self._check(batch + 1)

    def _check(self, done: int) -> None:
        """Read the clock after ``done`` batches: print a heartbeat when one is due; plan the next read."""
        now, steps = clock(), self.params.get("steps")
        if self._reference is None:
            self._reference = (done, now)
        if now - self._last_line >= cast(float, self.heartbeat) and done != steps:  # the epoch line comes next
            self._last_line = now
            running = self.session.running_logs()  # host-sync: only when a heartbeat line is printed
            label = f"{self._epoch} - batch {done}{f'/{steps}' if steps else ''}"
            label = f"{label} - {format_seconds(now - self._start)}"
            print(" - ".join(epoch_parts(label, running, self.decimals)), flush=True)
        self._next_check = next_heartbeat_check(done, now, self._reference, self._last_line,
                                                cast(float, self.heartbeat), steps) - 1

    def on_epoch_end(self, epoch, logs=None):
        seconds = clock() - self._start
        label = f"{self._label(epoch)} - {format_seconds(seconds)}"
        print(" - ".join(epoch_parts(label, logs or {}, self.decimals)), flush=True)


def next_heartbeat_check(done: int, now: float, reference: tuple[int, float], last_line: float,
                         interval: float, steps: int | None) -> int:
    """After how many batches to read the clock next, for a heartbeat ``interval`` s after ``last_line``.

    The batch rate since ``reference`` (batches done, time) says when the line falls due; the
    wait is at most as many batches as measured so far (a slow start is not trusted far). When
    a tenth of the ``steps`` passes quicker than ``interval``, the read falls on a tenth.

    Example:
        >>> next_heartbeat_check(1, 2.0, (1, 2.0), 0.0, 30.0, steps=None)  # no rate yet: the next batch
        2
        >>> next_heartbeat_check(6, 20.0, (1, 10.0), 0.0, 30.0, steps=None)  # 0.5 batch/s: 10 s is 5 batches
        11
        >>> next_heartbeat_check(6, 20.0, (1, 10.0), 0.0, 30.0, steps=20)  # a tenth (2 batches, 4 s) is quicker
        12
    """
    seen, spent = done - reference[0], now - reference[1]
    if seen <= 0 or spent <= 0:
        return done + 1
    rate = seen / spent
    target = done + min(max(1, math.ceil((last_line + interval - now) * rate)), 2 * seen)
    if steps and steps < 10 * interval * rate:  # tenths pass quicker than the interval: read on the next tenth
        tenth = -(-target * 10 // steps)
        target = -(-tenth * steps // 10)
    return target
