"""First-batch checks of what a built-in loss receives: the mistakes torch reports deep inside, said with the fix.

:class:`~kerastorch.losses.computer.LossComputer` runs them on the first batch of
every call that brings data (each ``fit``, each validation pass, each
``evaluate``), before the loss and so before any optimizer step. Shape and dtype
checks read only metadata. The value checks (probabilities in [0, 1], class
indices in range, softmax outputs given to ``cross_entropy``) read the first
batch's extremes back once per call: a host sync per call, never per step.
A user's own loss function is left to validate what it receives.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..checks import describe

BINARY_LOSSES = (nn.BCELoss, nn.BCEWithLogitsLoss)


def is_builtin(fn: Any) -> bool:
    """True for torch's and kerastorch's loss modules (which take one output tensor and one target tensor)."""
    return isinstance(fn, nn.Module) and type(fn).__module__.startswith(("torch.", "kerastorch."))


def check_output(fn: Any, name: str, y_pred: Any, y_true: Any) -> None:
    """The model returned something a loss can use: not None; one tensor for a built-in single loss."""
    if y_pred is None:
        raise TypeError(f"The model's forward returned None, so loss {name!r} has no output to compare with the "
                        "targets. Received: output=None. Return the output at the end of forward(): "
                        "`return self.layers(x)`.")
    if y_true is None:
        raise ValueError("The loss needs targets, but the batch has no `y`. Pass `y` to fit/evaluate, or batches "
                         "of (x, y) (a dict batch: {'x': ..., 'y': ...}).")
    if is_builtin(fn) and isinstance(y_pred, (tuple, list, dict)) and isinstance(y_true, torch.Tensor):
        count = len(y_pred)
        kind = "dict" if isinstance(y_pred, dict) else type(y_pred).__name__
        example = "{" + ", ".join(f"{key!r}: {name!r}" for key in y_pred) + "}" if isinstance(y_pred, dict) \
            else "[" + ", ".join([repr(name)] * count) + "]"
        raise ValueError(f"The model returned {count} outputs (a {kind}) but one loss, {name!r}, was compiled for "
                         f"one output tensor. Received: output {describe_structure(y_pred)}, target "
                         f"{describe(y_true)}. Compile one loss per output, loss={example}, with targets of the "
                         "same structure, or return a single tensor from forward().")


def describe_structure(value: Any) -> str:
    """Shapes of a tuple/list/dict of tensors, e.g. ``(tensor (32, 1), tensor (32, 4))``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key!r}: {describe_structure(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(describe_structure(item) for item in value) + ")"
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)}"
    return describe(value)


def _extremes(*tensors: torch.Tensor) -> list[float]:
    """[min, max] of each tensor, read back in one copy."""
    values = torch.stack([t.detach().float().aminmax()[i] for t in tensors for i in (0, 1)])
    return values.tolist()  # host-sync: once per call, on its first batch (torch's own check is a device assert)


def check_binary(fn: Any, name: str, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
    """bce / bce_with_logits: float targets in [0, 1]; bce: outputs that are probabilities."""
    if not y_true.is_floating_point():
        raise ValueError(f"Loss {name!r} needs float targets (0.0 / 1.0, or probabilities). Received: target "
                         f"{describe(y_true)}. Cast them with y.float() (numpy: y.astype('float32')); for integer "
                         "class labels with one output column per class, use loss='cross_entropy'.")
    if y_pred.numel() == 0:
        return
    out_lo, out_hi, y_lo, y_hi = _extremes(y_pred, y_true)
    if isinstance(fn, nn.BCELoss) and (out_lo < 0.0 or out_hi > 1.0):
        raise ValueError(f"Loss {name!r} expects probabilities in [0, 1] as outputs, but the model's outputs on the "
                         f"first batch range from {out_lo:.4g} to {out_hi:.4g}: they are logits. Use "
                         "loss='bce_with_logits' (it applies the sigmoid itself, more stably), or end the model "
                         "with nn.Sigmoid().")
    if y_lo < 0.0 or y_hi > 1.0:
        raise ValueError(f"Loss {name!r} expects targets in [0, 1]. Received: targets from {y_lo:.4g} to "
                         f"{y_hi:.4g} on the first batch. For class labels 0..C-1 use C output columns and "
                         "loss='cross_entropy'; map -1/+1 labels to 0/1 with (y + 1) / 2.")


def is_integer(tensor: torch.Tensor) -> bool:
    """Integer dtype (not float, complex or bool): class indices, if a class-index loss receives them."""
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


def is_index_column(y_pred: torch.Tensor, y_true: torch.Tensor) -> bool:
    """Integer targets (N, 1, ...) against outputs (N, C, ...) with C > 1: a column of class indices, as a
    pandas Series or a Keras (N, 1) label array gives them (Keras's sparse losses read them as (N, ...)).

    Example:
        >>> is_index_column(torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.int32))
        True
    """
    return (is_integer(y_true) and y_true.dim() == y_pred.dim() >= 2 and y_true.shape[1] == 1
            and y_pred.shape[1] > 1 and y_true.shape[0] == y_pred.shape[0] and y_true.shape[2:] == y_pred.shape[2:])


def check_class_indices(fn: Any, name: str, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
    """cross_entropy / nll with integer targets: every index within the output's classes."""
    if y_true.is_floating_point() or y_true.numel() == 0 or y_pred.dim() < 2:
        return
    classes = y_pred.shape[1]
    ignore = getattr(fn, "ignore_index", -100)
    lo, hi = _extremes(y_true)
    if hi >= classes or (lo < 0 and lo != ignore):
        bad = int(hi) if hi >= classes else int(lo)
        raise ValueError(f"Loss {name!r} got class index {bad}, but the model outputs {classes} classes (indices 0 "
                         f"to {classes - 1}). Received: targets from {int(lo)} to {int(hi)}, output shape "
                         f"{tuple(y_pred.shape)}. Give the last layer {max(int(hi) + 1, classes)} outputs, or "
                         "map the labels to 0..C-1 (e.g. sklearn's LabelEncoder).")


def warn_if_probabilities(name: str, y_pred: torch.Tensor) -> None:
    """cross_entropy applies log_softmax itself: outputs whose rows are already distributions are a double softmax."""
    if y_pred.dim() != 2 or y_pred.shape[1] < 2 or y_pred.numel() == 0:
        return
    detached = y_pred.detach().float()
    stats = torch.stack([detached.min(), (detached.sum(1) - 1).abs().max()])
    low, off = stats.tolist()  # host-sync: once per call, on its first batch
    if low >= 0.0 and off < 1e-4:
        warnings.warn(f"Loss {name!r} expects logits (it applies log_softmax itself), but every row of the model's "
                      "outputs on the first batch sums to 1: they look like probabilities, so the softmax is "
                      "applied twice and training is slow and weak. Remove the final softmax, or end the model "
                      "with nn.LogSoftmax(dim=1) and use loss='nll'.", UserWarning, stacklevel=2)


def check_class_weight(class_weight: dict[int, float], y_pred: torch.Tensor) -> int:
    """``class_weight`` names only classes of the output; a class left out weighs 1 (Keras's rule).

    Returns the number of classes of the output.
    """
    classes = y_pred.shape[1] if y_pred.dim() >= 2 and y_pred.shape[1] > 1 else 2
    extra = sorted(k for k in class_weight if k >= classes)
    if not extra:
        return classes
    raise ValueError(f"`class_weight` keys must be classes of the output: 0 to {classes - 1} ({classes} classes for "
                     f"output shape {tuple(y_pred.shape)}). Received keys {sorted(class_weight)}: key(s) {extra} are "
                     "not classes of this output. A class left out weighs 1.")
