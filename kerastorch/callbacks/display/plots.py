"""plot_history: a history's training curves, one subplot per metric, the best epoch marked.

matplotlib (and pandas) are imported when a plot is made, never with kerastorch.
The figure is a :class:`~kerastorch.callbacks.display.figure.HistoryFigure`, built
without pyplot: scripts never open a window, and in Jupyter the figure renders once,
as one PNG, when it is a cell's last expression.

How a history is drawn:

* x is the ``epoch`` column (1..n when there is none, or when it does not increase: a
  second ``fit`` that counted from 1 again); ``epoch`` itself is never drawn;
* one subplot per base metric, titled with the base name: ``loss`` holds the
  ``loss`` ("train") and ``val_loss`` ("validation") curves, ``acc`` holds ``acc``
  and ``val_acc``; a ``val_x`` without ``x`` gets its own ``x`` subplot;
* the learning rates (``lr`` and columns ending in ``_lr``) share an ``lr`` subplot,
  each labelled with its column name, on a log scale when all are positive and not
  constant;
* a missing value (NaN: validation run only some epochs) leaves a gap; a curve with
  gaps also has point markers, so an isolated value stays visible;
* the best epoch of the monitored column has a star (its own line, labelled e.g.
  ``best val_loss 0.1234 (epoch 7)``; the first one on ties).
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..monitor import resolve_mode
from .epoch_table import format_value

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: How to get matplotlib, in the ImportError of plot_history and LivePlot.
INSTALL_HINT = "pip install matplotlib (or pip install kerastorch[notebook])"
#: Legend labels of a metric's two curves.
TRAIN_LABEL, VALIDATION_LABEL = "train", "validation"
#: The subplot of the learning rates.
LR = "lr"
_CELL_INCHES = (4.5, 3.3)  # one subplot
# Fixed margins (inches: left, right, bottom, top, between columns, between rows): a layout
# engine (constrained, tight) would measure every text first, doubling the cost of a PNG.
_MARGINS = (0.75, 0.2, 0.55, 0.35, 0.75, 0.75)
_TITLE_INCHES = 0.35
_MAX_COLUMNS = 3


def require_matplotlib(who: str) -> None:
    """Raise ImportError naming ``who`` and the install command when matplotlib is missing.

    Example:
        >>> require_matplotlib("plot_history")
    """
    try:
        importlib.import_module("matplotlib")
    except ImportError as error:
        raise ImportError(f"{who} needs matplotlib: {INSTALL_HINT}") from error


def history_frame(history: Any) -> pd.DataFrame:
    """``history`` as a DataFrame: a DataFrame, a list of row dicts, or anything with a ``.history`` DataFrame.

    Raises:
        TypeError: ``history`` is none of those.
        ValueError: the history has no rows or no metric column (fit first).

    Example:
        >>> list(history_frame([{"epoch": 1, "loss": 0.5}]).columns)
        ['epoch', 'loss']
    """
    import pandas as pd

    frame = history
    if not isinstance(frame, (pd.DataFrame, list, tuple)) and isinstance(getattr(frame, "history", None),
                                                                          pd.DataFrame):
        frame = frame.history  # a kerastorch Model (duck-typed: callbacks never import the model)
    if isinstance(frame, (list, tuple)):
        if not all(isinstance(row, dict) for row in frame):
            raise TypeError("`history` as a list must hold one dict per epoch (column -> value). "
                            f"Received: {[type(row).__name__ for row in frame][:5]}")
        frame = pd.DataFrame(list(frame))
    if not isinstance(frame, pd.DataFrame):
        raise TypeError("`history` must be a pandas DataFrame (model.history), a list of row dicts or a "
                        f"kerastorch Model. Received: history of type {type(history).__name__}")
    if len(frame) == 0 or not [column for column in frame.columns if column != "epoch"]:
        raise ValueError("The history is empty: there is nothing to plot. Train first (model.fit(...)), then "
                         f"plot. Received: a history with {len(frame)} rows and columns {list(frame.columns)}")
    return frame


def is_lr(column: str) -> bool:
    """True for a learning-rate column: ``lr`` or a name ending in ``_lr``.

    Example:
        >>> is_lr("lr"), is_lr("head_lr"), is_lr("val_loss")
        (True, True, False)
    """
    return column == LR or column.endswith("_lr")


def base_name(column: str) -> str:
    """The subplot a column is drawn on: ``val_acc`` -> ``acc``; learning rates -> ``lr``.

    Example:
        >>> base_name("val_acc"), base_name("loss"), base_name("head_lr")
        ('acc', 'loss', 'lr')
    """
    if is_lr(column):
        return LR
    return column[4:] if column.startswith("val_") else column


def metric_groups(columns: Sequence[Any]) -> dict[str, list[str]]:
    """Base name -> its columns (training first), in the order the bases first appear; ``epoch`` left out.

    Example:
        >>> metric_groups(["epoch", "loss", "acc", "val_loss", "val_acc", "val_f1", "lr"])
        {'loss': ['loss', 'val_loss'], 'acc': ['acc', 'val_acc'], 'f1': ['val_f1'], 'lr': ['lr']}
    """
    groups: dict[str, list[str]] = {}
    for column in columns:
        if not isinstance(column, str):
            raise TypeError(f"History column names must be strings. Received: column {column!r}")
        if column != "epoch":
            groups.setdefault(base_name(column), []).append(column)
    return {base: sorted(group, key=lambda column: column.startswith("val_")) for base, group in groups.items()}


def select_groups(groups: dict[str, list[str]], metrics: str | Sequence[str] | None) -> dict[str, list[str]]:
    """The groups ``metrics`` names (base names, in that order); all of them when ``metrics`` is None.

    Example:
        >>> select_groups({"loss": ["loss"], "acc": ["acc"], "lr": ["lr"]}, ["lr", "loss"])
        {'lr': ['lr'], 'loss': ['loss']}
    """
    if metrics is None:
        return groups
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [name for name in names if name not in groups]
    if unknown or not names or len(set(names)) != len(names):
        what = f"{unknown} not in the history" if unknown else "no name or a name twice"
        raise ValueError(f"`metrics` must name base metrics of the history, each once ({what}; a subplot holds the "
                         f"training and validation curves, so name 'loss', not 'val_loss'). Received: "
                         f"metrics={metrics!r}. Available: {', '.join(groups)}.")
    return {name: groups[name] for name in names}


def default_monitor(columns: Sequence[str]) -> str | None:
    """``val_loss`` if the history has it, else ``loss``, else None (nothing to mark).

    Example:
        >>> default_monitor(["epoch", "loss", "val_loss"]), default_monitor(["epoch", "loss"])
        ('val_loss', 'loss')
    """
    for name in ("val_loss", "loss"):
        if name in columns:
            return name
    return None


def best_epoch(x: np.ndarray, values: np.ndarray, mode: str) -> tuple[float, float] | None:
    """``(epoch, value)`` of the best value ("min" or "max"; the first on ties, NaN skipped), None if all NaN.

    Example:
        >>> best_epoch(np.array([1, 2, 3]), np.array([0.5, 0.2, 0.2]), "min")
        (2, 0.2)
    """
    if np.isnan(values).all():
        return None
    index = int(np.nanargmin(values) if mode == "min" else np.nanargmax(values))
    return x[index].item(), values[index].item()


def plot_history(history: Any, metrics: str | Sequence[str] | None = None, *, monitor: str | None = None,
                 mode: str = "auto", figure: Figure | None = None, title: str | None = None) -> Figure:
    """Draw a training history: one subplot per metric (training and validation curves), the best epoch starred.

    Args:
        history: ``model.history`` (a DataFrame with ``epoch``, ``loss``, metrics, ``val_*``, ``lr``),
            a list of row dicts, or a kerastorch Model (its ``.history`` is drawn).
        metrics: base names to draw, in that order (e.g. ``["loss", "accuracy", "lr"]``); default all.
        monitor: the column whose best epoch is starred; default ``val_loss`` when the history has
            it, else ``loss``.
        mode: "min", "max" or "auto" (as in EarlyStopping: "max" for acc/auc/precision/recall/f1).
        figure: a Figure to clear and draw into (reused by LivePlot); a HistoryFigure is resized
            to the subplot grid, another Figure keeps its size. Default: a new HistoryFigure.
        title: the figure's title (none by default).

    Returns:
        The figure (a matplotlib Figure; it renders as one PNG in Jupyter, opens no window).

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: an empty history, an unknown name in ``metrics``, a ``monitor`` not in the
            history (or on a subplot ``metrics`` leaves out), a bad ``mode``.

    Example:
        >>> import pandas as pd
        >>> history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.9, 0.5, 0.4],
        ...                         "val_loss": [1.0, 0.6, 0.7], "lr": [0.1, 0.1, 0.01]})
        >>> figure = plot_history(history)
        >>> [axes.get_title() for axes in figure.axes]
        ['loss', 'lr']
        >>> figure.axes[0].get_legend_handles_labels()[1]
        ['train', 'validation', 'best val_loss 0.6000 (epoch 2)']
    """
    require_matplotlib("plot_history")
    frame = history_frame(history)
    groups = select_groups(metric_groups(list(frame.columns)), metrics)
    columns = [column for column in frame.columns if column != "epoch"]
    if monitor is None:
        resolve_mode("loss", mode)  # checks mode
        marked = default_monitor(columns)
        marked = marked if marked is not None and base_name(marked) in groups else None
    else:
        resolve_mode(monitor, mode)
        if monitor not in columns:
            raise ValueError(f"`monitor` must be a column of the history. Received: monitor={monitor!r}. "
                             f"Available: {', '.join(columns)}.")
        if base_name(monitor) not in groups:
            raise ValueError(f"`monitor` is drawn on the {base_name(monitor)!r} subplot, which `metrics` leaves out. "
                             f"Received: monitor={monitor!r}, metrics={metrics!r}. Add {base_name(monitor)!r} to "
                             "`metrics` or monitor another column.")
        marked = monitor
    return draw_history(frame, groups, marked, mode, figure=figure, title=title)


def draw_history(frame: pd.DataFrame, groups: dict[str, list[str]], monitor: str | None, mode: str = "auto",
                 figure: Figure | None = None, title: str | None = None) -> Figure:
    """Draw checked ``groups`` of ``frame`` (see :func:`plot_history`); ``monitor=None`` stars nothing.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"loss": [0.3, 0.2]})
        >>> draw_history(frame, {"loss": ["loss"]}, "loss").axes[0].lines[-1].get_xydata().tolist()
        [[2.0, 0.2]]
    """
    require_matplotlib("plot_history")
    from .figure import HistoryFigure

    x, xlabel = epoch_axis(frame)
    columns = min(len(groups), _MAX_COLUMNS)
    rows = math.ceil(len(groups) / columns)
    size = (max(6.4, _CELL_INCHES[0] * columns), _CELL_INCHES[1] * rows)
    if figure is None:
        figure = HistoryFigure(figsize=size)
    else:
        figure.clear()
        if isinstance(figure, HistoryFigure):
            figure.set_size_inches(*size)
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for unused in grid[len(groups):]:
        figure.delaxes(unused)
    for axes, (base, group) in zip(grid[:len(groups)], groups.items(), strict=True):
        _draw_group(axes, base, {column: _values(frame, column) for column in group}, x, monitor, mode)
        axes.set_xlabel(xlabel)
    if title is not None:
        figure.suptitle(title)
    if figure.get_layout_engine() is None:  # a user's figure with a layout engine keeps it
        _set_margins(figure, rows, columns, title is not None)
    return figure


def _set_margins(figure: Figure, rows: int, columns: int, titled: bool) -> None:
    width, height = figure.get_size_inches()
    left, right, bottom, top, between_columns, between_rows = _MARGINS
    top += _TITLE_INCHES if titled else 0.0
    cell_width = (width - left - right - between_columns * (columns - 1)) / columns
    cell_height = (height - bottom - top - between_rows * (rows - 1)) / rows
    if cell_width <= 0 or cell_height <= 0:
        return  # a figure too small for the margins: matplotlib's default spacing
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                           wspace=between_columns / cell_width, hspace=between_rows / cell_height)


def epoch_axis(frame: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The x values and label: the ``epoch`` column when it increases, else the rows counted from 1.

    A ``fit`` that starts again from ``initial_epoch=0`` numbers its epochs from 1 again;
    drawn over those numbers, the curves of two fits would zigzag, so the rows (training
    order, all fits) are counted instead and the label says so.

    Example:
        >>> import pandas as pd
        >>> epoch_axis(pd.DataFrame({"epoch": [1, 2, 1], "loss": [3.0, 2.0, 1.0]}))
        (array([1., 2., 3.]), 'epoch (all fits, in order)')
    """
    rows = np.arange(1.0, len(frame) + 1)
    if "epoch" not in frame.columns:
        return rows, "epoch"
    epochs = _values(frame, "epoch")
    if len(epochs) > 1 and not (np.diff(epochs) > 0).all():
        return rows, "epoch (all fits, in order)"
    return epochs, "epoch"


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    try:
        return frame[column].to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise ValueError(f"History column {column!r} must hold numbers (NaN for missing). Received: "
                         f"{frame[column].tolist()[:5]} ({error})") from error


def _draw_group(axes: Axes, base: str, curves: dict[str, np.ndarray], x: np.ndarray, monitor: str | None,
                mode: str) -> None:
    from matplotlib.ticker import MaxNLocator

    colors = {}
    for column, values in curves.items():
        if base == LR:
            label, color = column, None
        else:
            validation = column.startswith("val_") and column != base
            label, color = (VALIDATION_LABEL, "C1") if validation else (TRAIN_LABEL, "C0")
        gaps = bool(np.isnan(values).any())
        (line,) = axes.plot(x, values, label=label, color=color, marker="o" if gaps else None, markersize=3)
        colors[column] = line.get_color()
    best = None if monitor not in curves else best_epoch(x, curves[monitor], resolve_mode(monitor, mode))
    if monitor is not None and best is not None:
        epoch, value = best
        axes.plot([epoch], [value], linestyle="none", marker="*", markersize=14, color=colors[monitor],
                  markeredgecolor="black", zorder=3,
                  label=f"best {monitor} {format_value(monitor, value)} (epoch {epoch:g})")
    if base == LR:
        rates = np.concatenate(list(curves.values()))
        rates = rates[~np.isnan(rates)]
        if rates.size and (rates > 0).all() and rates.min() < rates.max():
            axes.set_yscale("log")
    axes.set_title(base)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    axes.legend()
