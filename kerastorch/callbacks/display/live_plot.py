"""LivePlot: the training curves, redrawn at epoch ends, in place in a notebook or into a PNG file."""
from __future__ import annotations

import contextlib
import os
import secrets
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...distributed import is_rank_zero
from ..base import Callback
from ..monitor import check_monitor, resolve_mode
from .environment import in_notebook
from .plots import (
    base_name,
    draw_history,
    history_frame,
    metric_groups,
    require_matplotlib,
    select_groups,
    shown_groups,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NOWHERE_TO_DRAW = ("LivePlot has nowhere to draw outside a notebook: pass path='curves.png' to write the figure")


class LivePlot(Callback):
    """Redraw the whole history (all fits so far) at epoch ends, into one figure.

    One subplot per metric with its validation curve, a marker per epoch, the best value
    in each title, the learning rate when it changes, and a star on the best epoch of
    ``monitor`` (see :func:`~kerastorch.callbacks.display.plots.plot_history`). In a
    Jupyter notebook the figure is one image output updated in place; with ``path`` the
    PNG file is rewritten atomically (scripts too). Neither: a warning when training
    begins, and nothing else.

    The first ``PROMPT_EPOCHS`` (3) epochs of each fit are drawn as they end, whatever
    the drawing costs, so the curves show from the start; later epochs keep drawing
    within ``max_overhead`` of the time (the early draws count against it). Every
    finished epoch is drawn when training ends, and when it ends with an exception
    (Ctrl-C included): the figure never stops at an earlier epoch.

    It reads only the history rows (plain floats ``fit`` has already read back): no
    tensor read, no host-device sync. Only rank 0 draws under ``torchrun``.

    Args:
        monitor: the column whose best epoch is starred; default ``val_loss`` when fit has
            validation data, else ``loss``.
        mode: "min", "max" or "auto" (as in EarlyStopping).
        path: a ``.png`` file to write at every drawn epoch end (its folder must exist).
        metrics: base names to draw, in that order; default all (``lr`` once it changes).
        max_overhead: the largest share of training time spent drawing after the first
            ``PROMPT_EPOCHS`` epochs: after a draw that took ``t`` seconds, epochs ending
            within ``t / max_overhead`` seconds are not drawn (the last epoch always is).
            None draws every epoch.

    Attributes:
        figure: the figure of the last draw (None before the first epoch end).

    Example:
        >>> import os, tempfile
        >>> live = LivePlot(path=os.path.join(tempfile.mkdtemp(), "curves.png"))
    """

    #: Epochs of each fit drawn as they end, before ``max_overhead`` holds draws back.
    PROMPT_EPOCHS = 3

    def __init__(self, monitor: str | None = None, mode: str = "auto", path: str | os.PathLike | None = None,
                 metrics: str | Sequence[str] | None = None, max_overhead: float | None = 0.1) -> None:
        super().__init__()
        require_matplotlib("LivePlot")
        if max_overhead is not None and not (isinstance(max_overhead, (int, float)) and 0 < max_overhead <= 1):
            raise ValueError(f"`max_overhead` must be a fraction in (0, 1] or None (draw every epoch). "
                             f"Received: max_overhead={max_overhead!r}")
        self.max_overhead = max_overhead
        resolve_mode("loss" if monitor is None else monitor, mode)  # checks monitor and mode
        if metrics is not None and not isinstance(metrics, str) and (
                not isinstance(metrics, Sequence) or not all(isinstance(name, str) for name in metrics)):
            raise TypeError(f"`metrics` must be a list of metric names. Received: metrics={metrics!r}")
        self.monitor, self.mode, self.metrics = monitor, mode, metrics
        self.path = None if path is None else _check_path(path)
        self.writes_files = self.path is not None  # fit(fast_dev_run=...) leaves a PNG writer out
        self.figure: Figure | None = None
        self._monitor: str | None = None  # set while a fit draws (None: not drawing)
        self._notebook = False
        self._handle: Any = None
        self._next_draw, self._epochs, self._drawn_rows = 0.0, 0, 0

    def check_params(self) -> None:
        if not is_rank_zero():
            return
        if self.path is not None:
            _check_path(self.path)  # the folder may have gone since construction
        if self.monitor is not None:
            check_monitor(self.monitor, self)
        self._check_metrics()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._handle = None  # a new fit (a new notebook cell) gets a new image output
        self._next_draw, self._epochs, self._drawn_rows = 0.0, 0, len(self._rows())
        self._notebook = False
        self._monitor = None
        if not is_rank_zero():
            return
        self._notebook = in_notebook()
        if not self._notebook and self.path is None:
            warnings.warn(NOWHERE_TO_DRAW, UserWarning, stacklevel=2)
            return
        self._monitor = self.monitor or ("val_loss" if self.params.get("has_validation") else "loss")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._monitor is None:
            return
        self._epochs += 1
        now = time.perf_counter()
        if self.max_overhead is not None and self._epochs > self.PROMPT_EPOCHS and now < self._next_draw:
            return  # drawn at a later epoch end, or when training ends
        self._draw()
        if self.max_overhead is not None:  # the next draw waits until this one is max_overhead of the time
            self._next_draw = now + (time.perf_counter() - now) / self.max_overhead

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._monitor is not None and len(self._rows()) != self._drawn_rows:
            self._draw()  # the last epochs are always shown
        self._monitor = None

    def on_exception(self, error: BaseException) -> None:
        """Draw the epochs finished before ``error`` (Ctrl-C, a failing callback) that are not drawn yet."""
        if self._monitor is not None and len(self._rows()) != self._drawn_rows:
            try:
                self._draw()
            except Exception as draw_error:  # ``error`` is the exception to raise
                warnings.warn(f"LivePlot could not draw the finished epochs while fit ended with {error!r}: "
                              f"{draw_error!r}", RuntimeWarning, stacklevel=2)
        self._monitor = None

    def _rows(self) -> list[dict]:
        return self.session.record.history_rows if self.session is not None else []

    def _draw(self) -> None:
        from .figure import png_bytes

        rows = self._rows()  # plain floats: History appended them at epoch ends
        self._drawn_rows = len(rows)
        frame = history_frame(rows)
        groups = shown_groups(frame, self.metrics, self._monitor)
        # A monitor not logged yet (validation every few epochs) or not drawn: no star this time.
        chosen = self._monitor
        monitor = chosen if chosen is not None and chosen in frame.columns and base_name(chosen) in groups else None
        self.figure = draw_history(frame, groups, monitor, self.mode, figure=self.figure)
        png = png_bytes(self.figure)
        if self.path is not None:
            _write_atomically(self.path, png)
        if self._notebook:
            self._show(png)

    def _show(self, png: bytes) -> None:
        from IPython.display import Image, display

        image = Image(data=png, format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

    def _check_metrics(self) -> None:
        """Reject, before any epoch, a name in ``metrics`` that neither fit nor the history will have."""
        keys = self.params.get("log_keys")
        if self.metrics is None or keys is None or self.params.get("custom_logs"):
            return
        columns = dict.fromkeys([*keys, *(column for row in self._rows() for column in row)])
        select_groups(metric_groups(list(columns)), self.metrics)


def _check_path(path: str | os.PathLike) -> str:
    """``path`` as a str, or ValueError when it is a folder, is not a .png file or its folder is missing."""
    target = os.fspath(path)
    if not isinstance(target, str):
        raise TypeError(f"`path` must be a file path (str or os.PathLike). Received: path={path!r}")
    if os.path.isdir(target):
        raise ValueError(f"`path` must be a PNG file to write, not a folder. Received: path={target!r}. "
                         f"Pass a file in it, e.g. path={os.path.join(target, 'curves.png')!r}.")
    if os.path.splitext(target)[1].lower() != ".png":
        raise ValueError(f"`path` must end in .png (LivePlot writes PNG images). Received: path={target!r}")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise ValueError(f"The folder of `path` does not exist. Received: path={target!r}. Create it first "
                         f"(os.makedirs({folder!r})) or pass a path in an existing folder.")
    return target


def _write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then ``os.replace`` it over ``path``."""
    folder, name = os.path.split(os.path.abspath(path))
    temp = os.path.join(folder, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    # os.open with 0o666: the file gets the usual permissions (umask applied), as an open(path, "wb") would.
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise
