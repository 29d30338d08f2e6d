"""Metrics from elsewhere: a plain function ``fn(y_pred, y_true)``, or a ``torchmetrics.Metric``."""
from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch

from ..checks import align_target, describe
from .base import Metric


class FunctionMetric(Metric):
    """A plain ``fn(y_pred, y_true) -> tensor``, averaged over samples.

    Each batch value is weighted by the batch's number of samples, so the epoch
    value is the sample-weighted mean, exact with an uneven last batch.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn
        self._first: tuple[Any, Any] | None = None  # (output, value) computed by check(), used by the next update

    def check(self, y_pred, y_true):
        """Call the function once on the first batch: it must return a tensor (or a number)."""
        value = self.fn(y_pred.detach(), align_target(y_pred, y_true))
        if not isinstance(value, (torch.Tensor, numbers.Number)):
            name = getattr(self.fn, "__name__", type(self.fn).__name__)
            raise TypeError(f"The metric function {name!r} must return a tensor (a scalar, or one value per "
                            f"sample). Received: {describe(value)}. Return e.g. (y_pred - y_true).abs().mean(); "
                            "a function without `return` gives None.")
        self._first = (y_pred, value)  # update() gets this batch's output next: not computed twice

    def update(self, y_pred, y_true, sample_weight=None):
        first = self._first
        if first is not None and first[0] is y_pred:
            value, self._first = first[1], None
        else:
            self._first = None
            if type(y_true) is not torch.Tensor or y_pred.shape != y_true.shape:  # equal shapes: nothing to align
                y_true = align_target(y_pred, y_true)
            value = self.fn(y_pred.detach(), y_true)
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, device=y_pred.device)
        if value.requires_grad:  # the function used something trainable besides y_pred (an aten op less if not)
            value = value.detach()
        n = y_pred.shape[0]
        total = self._states.get("total")
        if total is None:  # the first batch since reset
            total = self._state("total", value)
        total.add_(value if value.dim() == 0 else value.mean(), alpha=n)
        self._host_count += n

    def result(self):
        return self._mean()


class TorchmetricsAdapter(Metric):
    """Wraps a ``torchmetrics.Metric`` (its own state, update, compute, reset)."""

    cheap_result = False

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self.metric = metric

    def update(self, y_pred, y_true, sample_weight=None):
        self.metric.update(y_pred.detach(), align_target(y_pred, y_true))

    def result(self):
        return self.metric.compute()

    def has_values(self):
        return bool(getattr(self.metric, "update_called", True))

    def reset(self):
        self.metric.reset()

    def to(self, device):
        self.metric.to(device)
        return self

    def sync(self):
        pass  # torchmetrics synchronises itself inside compute()

    def state_dict(self):
        # torchmetrics states are lists or tensors; their own API has no portable form.
        return {}

