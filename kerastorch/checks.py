"""One place for input checks and their messages.

Messages follow one template: what the argument must be, then what was
received, then (where useful) what to do. ``ValueError`` for bad values,
``TypeError`` for bad types, ``RuntimeError`` for misuse of state.
"""
from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable
from typing import Any, NoReturn, TypeVar

import torch

_T = TypeVar("_T")


def describe(value: Any) -> str:
    """Short description of a received value for error messages."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    text = repr(value)
    return text if len(text) <= 80 else f"{type(value).__name__} ({text[:60]}...)"


def require_compiled(config: Any, method: str) -> None:
    """Raise if ``compile`` has not been called before ``method``."""
    compiled(config, method)


def compiled(config: _T | None, method: str) -> _T:
    """Return ``config`` (the compiled configuration); raise if ``compile`` has not been called before ``method``."""
    if config is None:
        raise RuntimeError(
            f"You must call `compile()` before `{method}()`. "
            "Example: model.compile(optimizer='adam', loss='mse')")
    return config


def reject_unknown_arguments(function: str, unknown: dict[str, Any], valid: Iterable[str],
                             hints: dict[str, str] | None = None) -> None:
    """Raise ``TypeError`` for keyword arguments ``function`` does not take, naming the closest valid one.

    Args:
        function: the call's name as the user wrote it, e.g. "compile".
        unknown: the unexpected keyword arguments.
        valid: the names ``function`` does take.
        hints: advice for names users often try (e.g. ``{"lr": "..."}``); a
            misspelling of a hinted name gets the hint too.

    Example:
        >>> reject_unknown_arguments("compile", {"metric": ["acc"]}, ["loss", "metrics"])
        Traceback (most recent call last):
        ...
        TypeError: compile() got an unexpected keyword argument 'metric'. Did you mean `metrics`? Valid arguments: loss, metrics.
    """  # noqa: E501 (a doctest's expected message is one line)
    if not unknown:
        return
    hints = hints or {}
    valid = sorted(valid)
    name = next(iter(unknown))
    close = difflib.get_close_matches(name, [*valid, *hints], n=1, cutoff=0.6)
    if name in hints or (close and close[0] in hints):
        advice = hints[name if name in hints else close[0]]
    elif close:
        advice = f"Did you mean `{close[0]}`?"
    else:
        advice = ""
    extra = f" (and {len(unknown) - 1} more: {', '.join(list(unknown)[1:])})" if len(unknown) > 1 else ""
    raise TypeError(f"{function}() got an unexpected keyword argument {name!r}{extra}. "
                    f"{advice + ' ' if advice else ''}Valid arguments: {', '.join(valid)}.")


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers; False for bools (``True`` is no batch size)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def plain_int(value: Any) -> Any:
    """A NumPy integer as a Python int (checkpoints, DataLoaders and JSON take only those); anything else as it is.

    Example:
        >>> import numpy as np
        >>> type(plain_int(np.int64(3))).__name__, plain_int(None)
        ('int', None)
    """
    return int(value) if is_int(value) and type(value) is not int else value


def require_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer >= 1 (or None with ``allow_none``).

    Example:
        >>> require_positive_int("epochs", 0)
        Traceback (most recent call last):
        ...
        ValueError: `epochs` must be a positive integer. Received: epochs=0
    """
    if value is None and allow_none:
        return
    if not is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def require_positive_int_or_epoch(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is "epoch" or an integer >= 1 (a ``save_freq``-like option)."""
    if value != "epoch" and (not is_int(value) or value < 1):
        raise ValueError(f"`{name}` must be 'epoch' or a positive integer. Received: {name}={value!r}")


def require_non_negative_int(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer >= 0."""
    if not is_int(value) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")


def require_fraction(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1). Received: {name}={value!r}")


def require_verbose(value: Any) -> None:
    if value not in (0, 1, 2, "auto"):
        raise ValueError(f"`verbose` must be 0, 1, 2 or 'auto'. Received: verbose={value!r}")


def is_column_target(y_pred: torch.Tensor, y_true: torch.Tensor) -> bool:
    """The one target alignment rule (Keras's): a (N,) target against an (N, 1) output.

    Such a target is read as (N, 1). Every other shape difference is left alone
    here and is an error where element-wise comparison is meant (see
    :func:`check_target_shape`).

    Example:
        >>> is_column_target(torch.zeros(4, 1), torch.zeros(4)), is_column_target(torch.zeros(4, 2), torch.zeros(4))
        (True, False)
    """
    return (y_pred.dim() == 2 and y_pred.shape[1] == 1 and y_true.dim() == 1
            and y_true.shape[0] == y_pred.shape[0])


def align_target(y_pred: Any, y_true: Any) -> Any:
    """``y_true`` viewed as ``y_pred``'s shape when :func:`is_column_target` holds, else unchanged.

    Example:
        >>> align_target(torch.zeros(3, 1), torch.ones(3)).shape
        torch.Size([3, 1])
    """
    if isinstance(y_pred, torch.Tensor) and isinstance(y_true, torch.Tensor) and is_column_target(y_pred, y_true):
        return y_true.view_as(y_pred)
    return y_true


def check_target_shape(y_pred: torch.Tensor, y_true: torch.Tensor, what: str) -> bool:
    """Validate that ``y_true`` can be compared with ``y_pred`` element-wise.

    Returns True when ``y_true`` must be aligned (:func:`is_column_target`),
    False when the shapes are equal. Any other shape difference is an error:
    silent broadcasting of (N,) against (N, 2) or (N, 1) against (N,) gives
    wrong numbers, the classic silent bug.

    Example:
        >>> check_target_shape(torch.zeros(4, 1), torch.zeros(4), "loss 'mse'")
        True
    """
    if y_pred.shape == y_true.shape:
        return False
    if is_column_target(y_pred, y_true):
        return True
    raise ValueError(
        f"The model output and the target must have the same shape for {what}. "
        f"Received: output shape {tuple(y_pred.shape)}, target shape {tuple(y_true.shape)}. "
        "Reshape the target or change the model's last layer.")


def check_class_targets(y_pred: torch.Tensor, y_true: torch.Tensor, what: str) -> None:
    """Validate integer class-index targets for (N, C, ...) outputs."""
    if y_true.is_floating_point() and y_true.shape != y_pred.shape:
        raise ValueError(
            f"{what} expects integer class indices as targets (dtype torch.long). "
            f"Received: target {describe(y_true)} for output shape {tuple(y_pred.shape)}. "
            "Convert with y.long(), or pass one-hot float targets of the output's shape.")
    if not y_true.is_floating_point() and y_true.shape == y_pred.shape and y_pred.dim() >= 2:
        raise ValueError(
            f"{what} got integer targets of the output's shape {tuple(y_pred.shape)}: one-hot labels. "
            f"Received: target {describe(y_true)}. Pass class indices, y.argmax(1) (shape "
            f"{(y_pred.shape[0], *y_pred.shape[2:])}), or one-hot floats, y.float().")
    if not y_true.is_floating_point() and (
            y_pred.dim() != y_true.dim() + 1 or y_pred.shape[0] != y_true.shape[0]
            or y_pred.shape[2:] != y_true.shape[1:]):
        raise ValueError(
            f"{what} expects an output of shape (N, C, ...) and integer targets of shape "
            f"(N, ...). Received: output shape {tuple(y_pred.shape)}, "
            f"target shape {tuple(y_true.shape)}. Give the model one output column per class and pass "
            "the class of each sample as an integer.")


def reraise_with(err: Exception, where: str) -> NoReturn:
    """Re-raise ``err`` as the same type with ``where`` appended to its message (chained), or with a note.

    Example:
        >>> try:
        ...     reraise_with(IndexError("index 5 is out of bounds"), "(in the metric 'acc')")
        ... except IndexError as err:
        ...     print(err)
        index 5 is out of bounds (in the metric 'acc')
    """
    try:
        annotated = type(err)(f"{err} {where}")
    except Exception:  # an exception type that takes other arguments: a note instead
        annotated = None
    if annotated is None or type(annotated) is not type(err) or str(annotated) == str(err):
        add_note = getattr(err, "add_note", None)  # Python 3.11+
        if add_note is not None:
            add_note(where)
        raise err
    raise annotated.with_traceback(err.__traceback__) from err
