"""Metrics from elsewhere: a plain function ``fn(y_pred, y_true)``, or a ``torchmetrics.Metric``."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..checks import align_target
from .base import Metric


class FunctionMetric(Metric):
    """A plain ``fn(y_pred, y_true) -> tensor``, averaged over samples.

    Each batch value is weighted by the batch's number of samples, so the epoch
    value is the sample-weighted mean, exact with an uneven last batch.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def update(self, y_pred, y_true, sample_weight=None):
        value = self.fn(y_pred.detach(), align_target(y_pred, y_true))
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, device=y_pred.device)
        value = value.detach()
        n = y_pred.shape[0]
        self._state("total", value).add_(value if value.dim() == 0 else value.mean(), alpha=n)
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

