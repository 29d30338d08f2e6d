"""Shared logic of callbacks that watch one logged value (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint).

* :func:`resolve_mode` turns ``mode="auto"`` into "min" or "max";
* :func:`is_better` is the one "is this an improvement" comparison;
* :func:`check_monitor` rejects, in ``on_train_begin`` (before any optimizer
  step), a monitored name that ``fit`` will never log (fit passes the keys it
  will log in the callback's ``params``);
* :func:`require_logged` is the same check at epoch end, for names that could
  not be decided before training (custom ``train_step``, losses returning dicts);
* :func:`monitored_value` is what the callbacks read at epoch end: like
  :func:`require_logged`, but None on an epoch that did not validate
  (``fit(validation_freq=...)``) when the monitor is a ``val_*`` name.
"""
from __future__ import annotations

import math
from typing import Any

#: Substrings that make ``mode="auto"`` pick "max".
MAX_HINTS = ("acc", "auc", "precision", "recall", "f1")

_MODES = ("auto", "min", "max")


def resolve_mode(monitor: str, mode: str) -> str:
    """Return "min" or "max" for ``monitor``.

    "auto" picks "max" when the name contains acc/auc/precision/recall/f1, else "min".

    Example:
        >>> resolve_mode("val_accuracy", "auto"), resolve_mode("val_loss", "auto")
        ('max', 'min')
    """
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"`monitor` must be a non-empty string. Received: monitor={monitor!r}")
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of 'auto', 'min', 'max'. Received: mode={mode!r}")
    if mode != "auto":
        return mode
    name = monitor.lower()
    return "max" if any(hint in name for hint in MAX_HINTS) else "min"


def is_better(current: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """True when ``current`` beats ``best`` by more than ``min_delta`` (strictly).

    ``best=None`` (nothing seen yet) is beaten by any value but NaN; a NaN
    ``current`` never improves. The sign of ``min_delta`` is ignored.

    Example:
        >>> is_better(0.5, 1.0, "min", 0.4), is_better(0.5, 1.0, "min", 0.5)
        (True, False)
    """
    if current is None or math.isnan(current):
        return False
    if best is None:
        return True
    delta = abs(min_delta)
    if mode == "min":
        return current < best - delta
    if mode == "max":
        return current > best + delta
    raise ValueError(f"`mode` must be 'min' or 'max'. Received: mode={mode!r}")


def check_monitor(monitor: str, callback: Any) -> None:
    """Raise ValueError if ``fit`` will never log ``monitor`` (call from ``on_train_begin``).

    Args:
        monitor: the logged name, e.g. "val_loss".
        callback: the calling callback. Its ``params`` are read: ``log_keys`` (the
            keys a default fit logs), ``custom_logs`` (a custom step or loss may log
            others) and ``has_validation``; its class name goes into the message.
            Without ``log_keys`` (outside fit) it checks nothing.

    Example:
        >>> class Watcher: params = {"log_keys": ["loss", "lr"], "has_validation": False}
        >>> check_monitor("loss", Watcher())
    """
    params = getattr(callback, "params", None) or {}
    available = params.get("log_keys")
    if available is None:
        return
    has_validation = params.get("has_validation")
    name = type(callback).__name__
    if monitor.startswith("val_") and has_validation is False:
        raise ValueError(
            f"{name} monitors {monitor!r}, but fit has no validation data, so no val_* value is "
            f"logged. Pass validation_data= or validation_split=, or monitor one of: {', '.join(available)}.")
    if monitor in available or params.get("custom_logs"):
        return
    if has_validation is None and monitor.startswith("val_") and monitor[4:] in available:
        return  # params do not say whether there is validation data
    raise ValueError(f"{name} monitors {monitor!r}, which fit will not log. "
                     f"Available: {', '.join(available)}.")


def require_logged(monitor: str, logs: dict[str, Any], callback: Any) -> float:
    """``logs[monitor]`` as a float, or ValueError listing the logged keys (call at epoch end)."""
    if monitor not in logs:
        raise ValueError(f"{type(callback).__name__} monitors {monitor!r}, which is not in the epoch logs. "
                         f"Available: {', '.join(logs)}.")
    return float(logs[monitor])


def validated(logs: dict[str, Any]) -> bool:
    """True when the epoch ``logs`` hold validation values (any ``val_*`` key).

    Example:
        >>> validated({"loss": 0.5, "val_loss": 0.75}), validated({"loss": 0.5, "lr": 0.1})
        (True, False)
    """
    return any(key.startswith("val_") for key in logs)


def monitored_value(monitor: str, logs: dict[str, Any], callback: Any) -> float | None:
    """``logs[monitor]`` as a float; None when ``monitor`` is a ``val_*`` name and this epoch did not validate.

    With ``fit(validation_freq=...)`` the epochs between validations log no ``val_*``
    key: a callback watching a ``val_*`` name skips them silently (no patience counted,
    nothing saved). A name missing from a validated epoch, or a non-``val_*`` name
    missing from any epoch, is the ValueError of :func:`require_logged`.

    Example:
        >>> class Watcher: pass
        >>> monitored_value("val_loss", {"loss": 0.5, "lr": 0.1}, Watcher()) is None
        True
        >>> monitored_value("val_loss", {"loss": 0.5, "val_loss": 0.25}, Watcher())
        0.25
    """
    if monitor not in logs and monitor.startswith("val_") and not validated(logs):
        return None
    return require_logged(monitor, logs, callback)
