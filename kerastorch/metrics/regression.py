"""Regression metrics: mean absolute error, mean squared error and its root, exact over the epoch."""
from __future__ import annotations

from .base import MeanMetric


class MeanAbsoluteError(MeanMetric):
    def _values(self, y_pred, y_true):
        return (y_pred.float() - y_true.float()).abs()


class MeanSquaredError(MeanMetric):
    def _values(self, y_pred, y_true):
        return (y_pred.float() - y_true.float()).square()


class RootMeanSquaredError(MeanSquaredError):
    def result(self):
        return super().result().sqrt()

