"""Progress output: a tqdm bar refreshed on a timer, in the form the output stream supports.

The bar reads running values a few times a second (``refresh_seconds``),
never every step: each read is a host-device sync, and the ``name=value`` pairs
beside the bar are built then too. Where it draws
(:func:`~kerastorch.callbacks.display.environment.output_mode`):

* a notebook: tqdm's widget bar (a text bar without ipywidgets, and no warning). The
  widget is shown with a display id; when it closes, the saved output's ``text/plain``
  and ``text/html`` become its final line, so a viewer without widget state (GitHub,
  nbviewer, VS Code) shows the finished bar, not its first frame;
* a terminal: a text bar on stdout redrawn with ``\\r``, its width set at each epoch's
  start from the terminal's: the bar keeps a fixed width (at least :data:`MIN_BAR`)
  and the pairs that do not fit beside it are left out whole, never cut;
* anything else (a file, a pipe, CI): no bar at all, so logs hold no ``\\r`` fragments;
  the epoch line says what the epoch did.

A bar that ends normally shows its true count (a notebook bar closed below its total
turns red as "failed"); an interrupted one shows the count it stopped at, the batch
the ``KeyboardInterrupt`` message names, and is closed before the traceback prints.
"""
from __future__ import annotations

import html
import sys
import time
from typing import Any

from ..base import Callback
from .environment import has_widgets, output_mode, terminal_columns, terminal_rows
from .epoch_table import format_value

#: The fewest characters the terminal bar itself keeps, however narrow the terminal.
MIN_BAR = 20


def _bar_class(mode: str) -> Any:
    # Imported when a bar is shown, not with kerastorch. tqdm.auto is avoided: without
    # ipywidgets it warns (TqdmWarning) instead of falling back quietly.
    if mode == "notebook" and has_widgets():
        from tqdm.notebook import tqdm as notebook_tqdm
        return notebook_tqdm
    from tqdm.std import tqdm as text_tqdm
    return text_tqdm


def _is_widget_bar(bar_class: Any) -> bool:
    notebook = sys.modules.get("tqdm.notebook")  # never imported: no widget bar
    return notebook is not None and isinstance(bar_class, type) and issubclass(bar_class, notebook.tqdm_notebook)


def text_bar_format(desc: str, total: int, columns: int, wanted: int | None) -> str:
    """The terminal bar's tqdm ``bar_format``: a bar of fixed width and counters of fixed width.

    The bar gets what the counters and ``wanted`` characters of values leave of ``columns``
    (half the rest when ``wanted`` is None), and at least :data:`MIN_BAR`. Below 100 columns
    the percentage and the rate are left out, to keep room for the values.

    Example:
        >>> text_bar_format("Epoch 1/2", 875, 78, 25)
        '{desc} |{bar:20}| {n_fmt:>3}/{total_fmt} [{elapsed}<{remaining}{postfix}]'
    """
    from tqdm.std import tqdm as text_tqdm

    digits = len(str(total))
    if columns >= 100:
        head = "{desc}: {percentage:3.0f}%|"
        tail = f"| {{n_fmt:>{digits}}}/{{total_fmt}} [{{elapsed}}<{{remaining}}, {{rate_fmt:>12}}{{postfix}}]"
    else:
        head, tail = "{desc} |", f"| {{n_fmt:>{digits}}}/{{total_fmt}} [{{elapsed}}<{{remaining}}{{postfix}}]"
    counters = len(text_tqdm.format_meter(total, total, 59, prefix=desc, bar_format=head + tail, unit="step"))
    free = columns - counters
    width = max(MIN_BAR, (free - wanted) if wanted is not None else free // 2)
    return f"{head}{{bar:{width}}}{tail}"


def fit_pairs(pairs: list[str], room: int | None) -> str:
    """The ``name=value`` pairs that fit in ``room`` characters (each after a ", "), joined; the others left out whole.

    Example:
        >>> fit_pairs(["loss=0.1234", "accuracy=0.9000", "mae=0.5000"], 28)
        'loss=0.1234, mae=0.5000'
    """
    if room is None:
        return ", ".join(pairs)
    kept: list[str] = []
    for pair in pairs:
        if len(pair) + 2 <= room:
            kept.append(pair)
            room -= len(pair) + 2
    return ", ".join(kept)


def _pairs(values: dict[str, Any]) -> list[str]:
    return [f"{name}={format_value(name, value)}" for name, value in values.items()]


def _meter_width(bar: Any, n: int) -> int:
    """Characters the bar's line takes at count ``n`` without its values."""
    from tqdm.utils import disp_len

    state = bar.format_dict
    state.update(n=n, postfix=None)
    return disp_len(bar.format_meter(**state))


def _show_widget(bar: Any) -> tuple[Any, dict[str, Any]] | None:
    """Show the widget with a display id; return the handle and the data shown (None: shown without)."""
    from IPython.display import display  # a notebook is running: IPython is imported already

    bundle = getattr(bar.container, "_repr_mimebundle_", None)
    data = bundle() if callable(bundle) else None
    if not isinstance(data, dict):  # an ipywidgets that shows itself otherwise
        display(bar.container)
        return None
    return display(data, raw=True, display_id=True), data


def _final_output(bar: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``text/plain`` and ``text/html`` showing the bar's line as it is now (the widget view kept)."""
    state = bar.format_dict
    state["bar_format"] = "{l_bar}<bar/>{r_bar}"
    left, _, right = bar.format_meter(**state).partition("<bar/>")
    counts = f'value="{bar.n}" max="{bar.total or max(bar.n, 1)}"'
    page = (f'<div class="kerastorch-progress">{html.escape(left.rstrip("|").rstrip())} <progress {counts}></progress> '
            f'{html.escape(right.lstrip("|").strip())}</div>')
    return {**data, "text/plain": bar.format_meter(**bar.format_dict), "text/html": page}


class ProgressBar(Callback):
    """A per-epoch tqdm bar with the running loss and metrics (and bars for evaluate / predict).

    In a terminal each epoch's bar disappears when the epoch ends (its table row replaces it);
    in a notebook one widget per fit is reset each epoch and stays, finished, when fit ends.
    ``evaluate`` / ``predict`` bars stay, finished.

    Args:
        refresh_seconds: minimum time between two reads of the running values.

    Example:
        >>> bar = ProgressBar(refresh_seconds=0.5)
    """

    def __init__(self, refresh_seconds: float = 0.25) -> None:
        super().__init__()
        self.refresh_seconds = refresh_seconds
        self._bar: Any = None
        self._shown: tuple[Any, dict[str, Any]] | None = None  # a widget's display handle and data
        self._columns: int | None = None  # the terminal bar's width: the values beside it are fitted to it
        self._done = 0
        self._next_refresh = 0.0
        self._standalone = False
        self._notebook = False

    def _open(self, desc: str, total: int | None, leave: bool, wanted: int | None = 0) -> None:
        mode = output_mode()
        if mode == "plain":
            return
        options: dict[str, Any] = {}
        self._columns = None
        if mode == "terminal":
            # Two columns short of the terminal, so the "^C" a terminal echoes stays on the bar's line
            # (the bar is then cleared whole); read at each bar's start, then fixed: the bar never jumps.
            self._columns = options["ncols"] = terminal_columns() - 2
            options["nrows"] = terminal_rows()
            if total:
                options["bar_format"] = text_bar_format(desc, total, self._columns, wanted)
        bar_class = _bar_class(mode)
        widget = _is_widget_bar(bar_class)
        if widget:
            options["display"] = False  # shown below, with a display id
        self._bar = bar_class(total=total, desc=desc, leave=leave, unit="step", file=sys.stdout, **options)
        self._shown = _show_widget(self._bar) if widget else None
        self._done, self._next_refresh = 0, time.monotonic() + self.refresh_seconds

    def _advance(self, running: Any) -> None:
        self._done += 1
        now = time.monotonic()
        if self._bar is not None and now >= self._next_refresh:
            self._next_refresh = now + self.refresh_seconds
            values = running() if running is not None else {}
            if values:
                room = None if self._columns is None else self._columns - _meter_width(self._bar, self._done)
                self._bar.set_postfix_str(fit_pairs(_pairs(values), room), refresh=False)
            self._bar.update(self._done - self._bar.n)

    def _close(self, finished: bool = True) -> None:
        bar, self._bar = self._bar, None
        shown, self._shown = self._shown, None
        if bar is None:
            return
        bar.update(self._done - bar.n)  # the true count, whatever the last refresh showed
        if finished and bar.total is not None and self._done < bar.total:
            bar.total = self._done  # an early stop (steps_per_epoch, stop_training) is a success too
        bar.close()
        if shown is not None:
            handle, data = shown
            handle.update(_final_output(bar, data), raw=True)

    def on_train_begin(self, logs=None):
        self._notebook = output_mode() == "notebook"

    def on_epoch_begin(self, epoch, logs=None):
        base = self.session.epoch_base
        desc, steps = f"Epoch {base + epoch + 1}/{base + self.params.get('epochs', 0)}", self.params.get("steps")
        if self._notebook and self._bar is not None:  # one widget per fit, reset each epoch
            self._bar.reset(total=steps)
            self._bar.set_description_str(desc, refresh=False)
            self._done = 0
        else:
            self._open(desc, steps, leave=self._notebook, wanted=self._wanted())

    def _wanted(self) -> int | None:
        """Characters the running values will take beside the bar (None: unknown, a custom step's logs)."""
        keys = self.params.get("log_keys")
        if keys is None:
            return None
        return sum(len(f", {key}=0.0000") for key in keys if not key.startswith("val_") and key != "lr")

    def on_train_batch_end(self, batch, logs=None):
        self._advance(self.session.running_logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._notebook and self._bar is not None:  # the widget stays, at the epoch's full count
            self._bar.update(self._done - self._bar.n)
            train = {k: v for k, v in (logs or {}).items() if not k.startswith("val_") and k != "lr"}
            self._bar.set_postfix_str(", ".join(_pairs(train)), refresh=True)  # the epoch's own values
        else:
            self._close()

    def on_test_begin(self, logs=None):
        if self.params.get("epochs") is None:  # standalone evaluate(); within fit, validation is quick and silent
            self._open("Evaluate", self.params.get("steps"), leave=True)
            self._standalone = True

    def on_test_batch_end(self, batch, logs=None):
        if self._standalone:
            self._advance(None)

    def on_test_end(self, logs=None):
        if self._standalone:
            self._close()
            self._standalone = False

    def on_predict_begin(self, logs=None):
        self._open("Predict", self.params.get("steps"), leave=True)

    def on_predict_batch_end(self, batch, logs=None):
        self._advance(None)

    def on_predict_end(self, logs=None):
        self._close()

    def on_train_end(self, logs=None):
        self._close()

    def on_exception(self, error: BaseException) -> None:
        self._close(finished=False)  # at the true count; before the traceback prints, so it starts on its own line
        self._standalone = False
