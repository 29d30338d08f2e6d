"""Accuracy metrics: binary (thresholded), categorical, sparse categorical, top-k, and the "accuracy" that picks one."""
from __future__ import annotations

from typing import cast

import torch

from ..checks import require_positive_int
from .base import MeanMetric, Metric


class BinaryAccuracy(MeanMetric):
    """Share of elements where ``output > threshold`` equals ``target > 0.5``.

    Args:
        threshold: decision threshold; default 0.5 for probabilities, 0 for logits.
        from_logits: see the module docstring; None follows the loss.
    """

    def __init__(self, threshold: float | None = None, from_logits: bool | None = None) -> None:
        super().__init__()
        self.threshold, self.from_logits = threshold, from_logits

    def _values(self, y_pred, y_true):
        threshold = self.threshold if self.threshold is not None else (0.0 if self.from_logits else 0.5)
        return (y_pred > threshold) == (y_true > 0.5)  # bool: sums count hits without a cast


class _ClassMean(Metric):
    """Mean over samples of a per-sample 0/1 value computed from (N, C, ...) outputs."""

    def _hits(self, y_pred, y_true) -> torch.Tensor:
        raise NotImplementedError

    def update(self, y_pred, y_true, sample_weight=None):
        self._add_mean(self._hits(y_pred.detach(), y_true), sample_weight)

    def result(self):
        return self._mean()


class SparseCategoricalAccuracy(_ClassMean):
    """argmax over dim 1 equals the integer target."""

    def _hits(self, y_pred, y_true):
        if y_true.dim() == y_pred.dim() and y_true.shape[1] == 1:
            y_true = y_true.squeeze(1)
        return y_pred.argmax(1) == y_true


class CategoricalAccuracy(_ClassMean):
    """argmax of the output equals argmax of a one-hot (or soft) target."""

    def _hits(self, y_pred, y_true):
        return y_pred.argmax(1) == y_true.argmax(1)


class TopKAccuracy(_ClassMean):
    """The integer target is among the ``k`` highest outputs."""

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        require_positive_int("k", k)
        self.k = int(k)

    def check(self, y_pred, y_true):
        classes = y_pred.shape[1] if y_pred.dim() >= 2 else 1
        if self.k > classes:
            raise ValueError(f"Top-k accuracy with k={self.k} needs at least {self.k} classes, but the model outputs "
                             f"{classes}. Received: output shape {tuple(y_pred.shape)}. Use TopKAccuracy(k=...) "
                             f"with k <= {classes}.")

    def _hits(self, y_pred, y_true):
        top = y_pred.topk(self.k, dim=1).indices
        return (top == y_true.long().unsqueeze(1)).any(1)


class Accuracy(Metric):
    """Binary accuracy for one output column, multiclass (sparse or one-hot) otherwise."""

    def __init__(self, from_logits: bool | None = None) -> None:
        super().__init__()
        self.from_logits = from_logits
        self._impl: Metric | None = None

    def update(self, y_pred, y_true, sample_weight=None):
        if self._impl is None:
            binary = y_pred.dim() == 1 or y_pred.shape[1] == 1
            if binary:
                self._impl = BinaryAccuracy(from_logits=self.from_logits)
            elif y_true.shape == y_pred.shape and y_true.is_floating_point():
                self._impl = CategoricalAccuracy()
            else:
                self._impl = SparseCategoricalAccuracy()
            setattr(self, "update", self._impl.update)  # noqa: B010 (later batches go straight to the chosen metric)
        self._impl.update(y_pred, y_true, sample_weight)

    def result(self):
        return cast(Metric, self._impl).result()  # None before update(): the same AttributeError

    def has_values(self):
        return self._impl is not None and self._impl.has_values()

    def reset(self):
        if self._impl is not None:
            self._impl.reset()

    def sync(self):
        if self._impl is not None:
            self._impl.sync()

    def state_dict(self):
        return {} if self._impl is None else {"kind": type(self._impl).__name__, "state": self._impl.state_dict()}

    def load_state_dict(self, state):
        if state:
            kinds = {cls.__name__: cls for cls in (BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy)}
            self._impl = kinds[state["kind"]](**({"from_logits": self.from_logits}
                                                 if state["kind"] == "BinaryAccuracy" else {}))
            self._impl.load_state_dict(state["state"])
            setattr(self, "update", self._impl.update)  # noqa: B010 (as in update: straight to the chosen metric)

