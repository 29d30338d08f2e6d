"""What fit shows: the progress bar and epoch table, the torchkeras log, or plain lines; the live plot."""
from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Any

from ..callbacks.display import EpochLine, EpochTable, ProgressBar, TorchkerasLogger
from ..callbacks.display.environment import in_notebook, output_mode
from ..distributed import is_rank_zero


def printers(verbose: Any, torchkeras_form: bool, log_step_freq: int | None) -> list:
    if verbose == 0 or not is_rank_zero():
        return []
    if torchkeras_form:  # torchkeras prints a step dict every log_step_freq steps, every step by default
        return [TorchkerasLogger(1 if log_step_freq is None else log_step_freq)]
    if verbose == 2 or output_mode() == "plain":  # a log file gets whole lines, no bar
        return [EpochLine()]
    return [ProgressBar(), EpochTable()]


def live_plot_for(plot: Any, verbose: Any) -> list:
    """``fit(plot=...)`` as a list of at most one LivePlot (checked before anything runs).

    "auto" (the default) draws in notebooks when matplotlib is installed and ``verbose`` is
    not 0, as torchkeras 4 does; scripts get no figure unless asked (True or a PNG path).
    """
    if plot is False or plot is None or not is_rank_zero():
        return []
    if plot == "auto":
        if verbose == 0 or not in_notebook():
            return []
        if importlib.util.find_spec("matplotlib") is None:
            _say_once_no_matplotlib()
            return []
        plot = True
    from ..callbacks.display.live_plot import LivePlot  # matplotlib loads only when a plot is asked for
    if plot is True:
        return [LivePlot()]
    if isinstance(plot, (str, os.PathLike)):
        return [LivePlot(path=plot)]
    raise TypeError(f"`plot` must be 'auto', True, False or a PNG path. Received: plot={plot!r}")


_SAID: set[str] = set()  # what was said once per process


def _say_once_no_matplotlib() -> None:
    """fit(plot="auto") in a notebook without matplotlib: said once per process, not at every fit."""
    if "no matplotlib" not in _SAID:
        _SAID.add("no matplotlib")
        # _say_once <- live_plot_for <- engine fit <- guarded's run <- Model.fit <- the user's call
        warnings.warn("fit(plot='auto') draws no live plot: matplotlib is not installed. Get it with `pip install "
                      "kerastorch[notebook]` (widgets and plots), or pass plot=False to silence this.",
                      UserWarning, stacklevel=6)
