"""plot_history: a history's training curves, one subplot per metric, the best epoch marked.

matplotlib (and pandas) are imported when a plot is made, never with kerastorch.
The figure is a :class:`~kerastorch.callbacks.display.figure.HistoryFigure`, built
without pyplot: scripts never open a window, and in Jupyter the figure renders once,
as one PNG, when it is a cell's last expression.

How a history is drawn:

* x is the ``epoch`` column (1..n when there is none, or when it does not increase: a
  second ``fit`` that counted from 1 again); ``epoch`` itself is never drawn;
* one subplot per base metric: ``loss`` holds the ``loss`` ("train") and ``val_loss``
  ("validation") curves, ``acc`` holds ``acc`` and ``val_acc``; a ``val_x`` without ``x``
  gets its own ``x`` subplot. The subplot's label (``axes.get_label()``) is the base name;
  its title adds the best value, e.g. ``loss (best val 0.1234 at epoch 7)``: the monitored
  column's on its subplot, else the validation curve's, else the training curve's;
* the learning rates (``lr`` and columns ending in ``_lr``) share an ``lr`` subplot,
  each labelled with its column name, on a log scale when all are positive and not
  constant. It is drawn only when a learning rate changes (or ``metrics`` names it):
  a flat line says nothing the compile call does not;
* every epoch is a point marker on its curve (smaller beyond 60 epochs), so the first epoch
  shows and a missing value (NaN: validation run only some epochs) leaves a gap without
  hiding its neighbours; the x axis has whole epochs, with room at each end (0.5..1.5 for one);
* the best epoch of the monitored column has a star (its own line, labelled e.g.
  ``best val_loss 0.1234 (epoch 7)``; the first one on ties);
* at most two subplots a row: the PNG is at most 760 px wide, a notebook's output column
  (see :mod:`~kerastorch.callbacks.display.figure`).
"""
from __future__ import annotations

import importlib
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
# A point marker on every epoch, smaller on long runs, where markers 3 points wide would merge into a band.
_MARKER_SIZE, _LONG_MARKER_SIZE, _LONG_RUN = 3.0, 1.5, 60


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


def shown_groups(frame: pd.DataFrame, metrics: str | Sequence[str] | None,
                 monitor: str | None = None) -> dict[str, list[str]]:
    """The subplots to draw: those ``metrics`` names; by default all but an ``lr`` subplot whose rates never change.

    A constant ``lr`` subplot is kept when ``monitor`` is drawn on it or it is the only one.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"loss": [0.5, 0.4], "lr": [0.1, 0.1]})
        >>> shown_groups(frame, None), shown_groups(frame, ["loss", "lr"])
        ({'loss': ['loss']}, {'loss': ['loss'], 'lr': ['lr']})
    """
    groups = select_groups(metric_groups(list(frame.columns)), metrics)
    rates = groups.get(LR)
    if metrics is not None or rates is None or len(groups) == 1 or (monitor is not None and base_name(monitor) == LR):
        return groups
    for column in rates:
        values = _values(frame, column)
        if np.unique(values[~np.isnan(values)]).size > 1:
            return groups
    return {base: group for base, group in groups.items() if base != LR}


def plot_history(history: Any, metrics: str | Sequence[str] | None = None, *, monitor: str | None = None,
                 mode: str = "auto", figure: Figure | None = None, title: str | None = None) -> Figure:
    """Draw a training history: one subplot per metric (training and validation curves), the best epoch starred.

    Args:
        history: ``model.history`` (a DataFrame with ``epoch``, ``loss``, metrics, ``val_*``, ``lr``),
            a list of row dicts, or a kerastorch Model (its ``.history`` is drawn).
        metrics: base names to draw, in that order (e.g. ``["loss", "accuracy", "lr"]``); default all,
            but the learning rate only when it changes.
        monitor: the column whose best epoch is starred; default ``val_loss`` when the history has
            it, else ``loss``.
        mode: "min", "max" or "auto" (as in EarlyStopping: "max" for acc/auc/precision/recall/f1).
        figure: a Figure to clear and draw into (reused by LivePlot); a HistoryFigure is resized
            to the subplot grid, another Figure keeps its size. Default: a new HistoryFigure.
        title: the figure's title (none by default).

    Returns:
        The figure (a matplotlib Figure; it renders as one PNG in Jupyter, opens no window). Each
        subplot's label (``axes.get_label()``) is its base name; its title adds the best value.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: an empty history, an unknown name in ``metrics``, a ``monitor`` not in the
            history (or on a subplot ``metrics`` leaves out), a bad ``mode``.

    Example:
        >>> import pandas as pd
        >>> history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.9, 0.5, 0.4],
        ...                         "val_loss": [1.0, 0.6, 0.7], "lr": [0.1, 0.1, 0.01]})
        >>> figure = plot_history(history)
        >>> [axes.get_label() for axes in figure.axes], figure.axes[0].get_title()
        (['loss', 'lr'], 'loss (best val 0.6000 at epoch 2)')
        >>> figure.axes[0].get_legend_handles_labels()[1]
        ['train', 'validation', 'best val_loss 0.6000 (epoch 2)']
    """
    require_matplotlib("plot_history")
    frame = history_frame(history)
    groups = shown_groups(frame, metrics, monitor)
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
    from .figure import LABEL_SIZE, subplot_grid

    x, xlabel = epoch_axis(frame)
    figure, grid = subplot_grid(figure, len(groups), title)
    for axes, (base, group) in zip(grid, groups.items(), strict=True):
        _draw_group(axes, base, {column: _values(frame, column) for column in group}, x, monitor, mode)
        axes.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    return figure


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
    from matplotlib.ticker import LogFormatter, MaxNLocator

    from .figure import SMALL_SIZE, TITLE_SIZE

    colors, size = {}, _MARKER_SIZE if x.size <= _LONG_RUN else _LONG_MARKER_SIZE
    for column, values in curves.items():
        if base == LR:
            label, color = column, None
        else:
            label, color = (VALIDATION_LABEL, "C1") if _is_validation(column, base) else (TRAIN_LABEL, "C0")
        (line,) = axes.plot(x, values, label=label, color=color, marker="o", markersize=size)
        colors[column] = line.get_color()
    best = None if monitor not in curves else best_epoch(x, curves[monitor], resolve_mode(monitor, mode))
    if monitor is not None and best is not None:
        epoch, value = best
        axes.plot([epoch], [value], linestyle="none", marker="*", markersize=12, color=colors[monitor],
                  markeredgecolor="black", zorder=3,
                  label=f"best {monitor} {format_value(monitor, value)} (epoch {epoch:g})")
    if base == LR:
        rates = np.concatenate(list(curves.values()))
        rates = rates[~np.isnan(rates)]
        if rates.size and (rates > 0).all() and rates.min() < rates.max():
            axes.set_yscale("log")  # labels "2e-02", not the wider "2x10^-2" that the margin would clip
            axes.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
            axes.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    axes.set_label(base)
    axes.set_title(subplot_title(base, curves, x, monitor, mode), fontsize=TITLE_SIZE)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if x.size:  # whole epochs, half an epoch (or 4% of the span) of room each side: one epoch is 0.5..1.5
        low, high = float(np.nanmin(x)), float(np.nanmax(x))
        room = max(0.5, 0.04 * (high - low))
        axes.set_xlim(low - room, high + room)
    axes.tick_params(which="both", labelsize=SMALL_SIZE)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=SMALL_SIZE)


def subplot_title(base: str, curves: dict[str, np.ndarray], x: np.ndarray, monitor: str | None,
                  mode: str = "auto") -> str:
    """``base`` and its best value: the monitored column's if on this subplot, else validation's, else training's.

    The learning rates have no best value unless monitored; all NaN: the base name alone.

    Example:
        >>> x = np.array([1.0, 2.0])
        >>> subplot_title("loss", {"loss": np.array([0.5, 0.3]), "val_loss": np.array([0.6, 0.7])}, x, "val_loss")
        'loss (best val 0.6000 at epoch 1)'
        >>> subplot_title("acc", {"acc": np.array([0.5, 0.8])}, x, None)
        'acc (best 0.8000 at epoch 2)'
    """
    if monitor in curves:
        column, mode = monitor, resolve_mode(monitor, mode)
    elif base == LR:
        return base
    else:
        validation = [column for column in curves if _is_validation(column, base)]
        column = next((c for c in validation if not np.isnan(curves[c]).all()), next(iter(curves)))
        mode = resolve_mode(column, "auto")
    best = best_epoch(x, curves[column], mode)
    if best is None:
        return base
    epoch, value = best
    which = "val " if _is_validation(column, base) else "train " if len(curves) > 1 and base != LR else ""
    return f"{base} (best {which}{format_value(column, value)} at epoch {epoch:g})"


def _is_validation(column: str, base: str) -> bool:
    return column.startswith("val_") and column != base
