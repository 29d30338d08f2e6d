"""Precision, recall and F1 from confusion counts, exact over the epoch.

The counts accumulate on the device with ``index_add_`` (no host sync), so the
epoch value is never a mean of per-batch values.
"""
from __future__ import annotations

import torch

from ..checks import check_target_shape
from .base import Metric, acc_dtype


class _Confusion(Metric):
    """Counts of true/false positives and negatives; exact precision, recall, F1.

    Binary when the output has one column (or matches the target's shape),
    otherwise multiclass with integer targets and a macro average over the
    classes that occur (in the targets or the predictions).
    """

    def __init__(self, threshold: float | None = None, from_logits: bool | None = None) -> None:
        super().__init__()
        self.threshold, self.from_logits = threshold, from_logits

    def update(self, y_pred, y_true, sample_weight=None):
        y_pred = y_pred.detach()
        binary = y_pred.dim() == 1 or y_pred.shape[1] == 1 or y_pred.shape == y_true.shape
        if binary:
            if check_target_shape(y_pred, y_true, f"metric {type(self).__name__}"):
                y_true = y_true.view_as(y_pred)
            threshold = self.threshold if self.threshold is not None else (0.0 if self.from_logits else 0.5)
            pred, true, classes = (y_pred > threshold).long().flatten(), (y_true > 0.5).long().flatten(), 2
        else:
            classes = y_pred.shape[1]
            pred, true = y_pred.argmax(1).flatten(), y_true.long().flatten()
        n = pred.numel()
        weights = torch.ones(n, dtype=acc_dtype(y_pred.device), device=y_pred.device) \
            if sample_weight is None else \
            sample_weight.to(acc_dtype(y_pred.device)).repeat_interleave(n // sample_weight.numel())
        # index_add_ with 0/1 weights instead of boolean masks or bincount:
        # both of those sync with the host on CUDA to size their output.
        self._state("tp", y_pred, classes).index_add_(0, true, weights * (pred == true))
        self._state("pred", y_pred, classes).index_add_(0, pred, weights)
        self._state("true", y_pred, classes).index_add_(0, true, weights)
        self._binary = binary

    def state_dict(self):
        state = super().state_dict()
        if state:
            state["binary"] = torch.tensor(self._binary)
        return state

    def load_state_dict(self, state):
        state = dict(state)
        if "binary" in state:
            self._binary = bool(state.pop("binary"))
        super().load_state_dict(state)

    def _per_class(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tp, pred, true = self._states["tp"], self._states["pred"], self._states["true"]
        if self._binary:  # the positive class only
            return tp[1:], pred[1:], true[1:]
        present = (pred + true) > 0
        return tp[present], pred[present], true[present]

    @staticmethod
    def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        # 0/0 counts as 0, the usual convention (no positives predicted -> precision 0).
        return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num)).mean()


class Precision(_Confusion):
    def result(self):
        tp, pred, _ = self._per_class()
        return self._ratio(tp, pred)


class Recall(_Confusion):
    def result(self):
        tp, _, true = self._per_class()
        return self._ratio(tp, true)


class F1Score(_Confusion):
    def result(self):
        tp, pred, true = self._per_class()
        return self._ratio(2 * tp, pred + true)


