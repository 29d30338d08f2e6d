"""ROC AUC, exact over the epoch: the epoch's outputs are kept on the device and ranked once."""
from __future__ import annotations

import torch

from ..distributed import all_gather_cat
from .base import Metric


def _binary_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ROC AUC by the rank-sum formula, averaging the ranks of tied scores."""
    _, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    last_rank = counts.cumsum(0).to(torch.float64)
    ranks = (last_rank - (counts - 1) / 2.0)[inverse]
    positives = labels.sum().to(torch.float64)
    negatives = labels.numel() - positives
    rank_sum = ranks[labels].sum()
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


class AUC(Metric):
    """Exact ROC AUC over the epoch (binary; one-vs-rest macro for multiclass, class-index or one-hot targets).

    Keeps the epoch's outputs on the device (one detached tensor per batch) and
    ranks them once in :meth:`result`. Sample weights are ignored.
    """

    cheap_result = False

    def __init__(self, from_logits: bool | None = None) -> None:
        super().__init__()
        self.from_logits = from_logits
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def update(self, y_pred, y_true, sample_weight=None):
        self._scores.append(y_pred.detach())
        self._labels.append(y_true.detach())

    def result(self):
        scores, labels = torch.cat(self._scores).float(), torch.cat(self._labels)
        if scores.dim() == 1 or scores.shape[1] == 1:
            return _binary_auc(scores.flatten(), labels.flatten() > 0.5)
        if self.from_logits:
            scores = scores.softmax(1)
        if labels.dim() == 2 and labels.shape == scores.shape:  # one-hot (or soft) targets: their class
            labels = labels.argmax(1)
        labels = labels.long().flatten()
        aucs = [_binary_auc(scores[:, c], labels == c) for c in range(scores.shape[1])
                if 0 < int((labels == c).sum()) < labels.numel()]
        return torch.stack(aucs).mean()

    def has_values(self):
        return bool(self._scores)

    def reset(self):
        self._scores, self._labels = [], []

    def sync(self):
        if self._scores:
            self._scores = [all_gather_cat(torch.cat(self._scores))]
            self._labels = [all_gather_cat(torch.cat(self._labels))]

    def state_dict(self):
        if not self._scores:
            return {}
        return {"scores": torch.cat(self._scores).cpu(),  # host-sync: once per checkpoint, never per step
                "labels": torch.cat(self._labels).cpu()}

    def load_state_dict(self, state):
        self.reset()
        if state:
            self._scores, self._labels = [state["scores"]], [state["labels"]]

