"""One place for input checks and their messages.

Messages follow one template: what the argument must be, then what was
received, then (where useful) what to do. ``ValueError`` for bad values,
``TypeError`` for bad types, ``RuntimeError`` for misuse of state.
"""
from __future__ import annotations

from typing import Any

import torch


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
    if config is None:
        raise RuntimeError(
            f"You must call `compile()` before `{method}()`. "
            "Example: model.compile(optimizer='adam', loss='mse')")


def require_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def require_non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")


def require_fraction(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1). Received: {name}={value!r}")


def require_verbose(value: Any) -> None:
    if value not in (0, 1, 2, "auto"):
        raise ValueError(f"`verbose` must be 0, 1, 2 or 'auto'. Received: verbose={value!r}")


def check_target_shape(y_pred: torch.Tensor, y_true: torch.Tensor, what: str) -> bool:
    """Validate that ``y_true`` can be compared with ``y_pred`` element-wise.

    Returns True when ``y_true`` of shape (N,) must be viewed as (N, 1) to match
    an output of shape (N, 1) (the one alignment Keras does). Any other shape
    difference is an error: silent broadcasting of (N,) against (N, 1) would
    give an (N, N) loss, which is the classic silent bug.
    """
    if y_pred.shape == y_true.shape:
        return False
    if y_pred.dim() == 2 and y_pred.shape[1] == 1 and y_true.dim() == 1 \
            and y_true.shape[0] == y_pred.shape[0]:
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
    if not y_true.is_floating_point() and (
            y_pred.dim() != y_true.dim() + 1 or y_pred.shape[0] != y_true.shape[0]
            or y_pred.shape[2:] != y_true.shape[1:]):
        raise ValueError(
            f"{what} expects an output of shape (N, C, ...) and integer targets of shape "
            f"(N, ...). Received: output shape {tuple(y_pred.shape)}, "
            f"target shape {tuple(y_true.shape)}.")
