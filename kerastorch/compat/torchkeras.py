"""The torchkeras 1.x/2.x call forms, mapped onto the Keras-style API.

Scripts written for torchkeras run with only the import changed:

* ``compile(loss_func=..., metrics_dict=...)``: the torchkeras names of ``loss`` / ``metrics``;
* ``fit(epochs, dl_train, dl_val=None, log_step_freq=N)``: an int first means this form;
  it prints torchkeras's step dicts and epoch tables and returns the history
  without the ``lr`` column, as torchkeras did.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def merge_compile_names(loss: Any, loss_func: Any, metrics: Any, metrics_dict: Any) -> tuple[Any, Any]:
    """``loss`` / ``metrics`` from either their Keras or their torchkeras names.

    Example:
        >>> merge_compile_names(None, "mse", None, {"mae": "mae"})
        ('mse', {'mae': 'mae'})
    """
    if loss_func is not None:
        if loss is not None:
            raise ValueError("Pass either `loss` or its torchkeras name `loss_func`, not both.")
        loss = loss_func
    if metrics_dict is not None:
        if metrics is not None:
            raise ValueError("Pass either `metrics` or its torchkeras name `metrics_dict`, not both.")
        metrics = metrics_dict
    return loss, metrics


def fit_arguments(x: Any, y: Any, epochs: int, validation_data: Any, dl_train: Any,
                  dl_val: Any) -> tuple[Any, Any, int, Any, bool]:
    """Map ``fit(epochs, dl_train, dl_val=...)`` onto ``(x, y, epochs, validation_data, torchkeras_form)``.

    Example:
        >>> fit_arguments(5, "loader", 1, None, None, "val")
        ('loader', None, 5, 'val', True)
    """
    torchkeras_form = isinstance(x, int) and not isinstance(x, bool)
    if torchkeras_form:
        if y is not None and dl_train is not None:
            raise ValueError("fit(epochs, dl_train, ...) got the training data twice "
                             "(positionally and as `dl_train`).")
        return (y if y is not None else dl_train), None, x, dl_val, True
    if dl_train is not None or dl_val is not None:
        if x is not None and dl_train is not None:
            raise ValueError("Pass the training data as `x` or as `dl_train`, not both.")
        return (x if dl_train is None else dl_train), y, epochs, \
            (validation_data if dl_val is None else dl_val), True
    return x, y, epochs, validation_data, False


def history_frame(history: pd.DataFrame, rows_before: int) -> pd.DataFrame:
    """The history as torchkeras returned it: without the ``lr`` column (when this fit added rows)."""
    if len(history) > rows_before:
        return history[[c for c in history.columns if c != "lr"]]
    return history
