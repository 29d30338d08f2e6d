"""Perplexity of a language model: exp of the mean token cross-entropy over the epoch, from logits and labels."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from .base import Metric, per_sample


class Perplexity(Metric):
    """``exp(sum of token cross-entropies / number of tokens)`` over the epoch ("perplexity").

    The predictions are the logits, shape ``(N, T, V)`` (V: the vocabulary), the targets the token
    labels, shape ``(N, T)``; labels equal to ``ignore_index`` (-100: what Hugging Face's collators
    put at padding) are left out. The epoch value weighs every token the same (it is not a mean of
    per-batch perplexities), so it is ``exp`` of the epoch's token-mean loss, exact over uneven
    batches. Sample weights weigh every token of their sample.

    Args:
        shift: True (the default, for causal language models such as GPT-2): the logits at position
            ``t`` predict the label at ``t + 1``, the shift the model's own loss makes, so that
            ``exp(loss)`` of a batch equals this metric on it; False: logits and labels are aligned
            already (masked language models, sequence-to-sequence decoders).
        ignore_index: the label value of tokens to leave out.

    Example:
        >>> logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens: perplexity 4
        >>> metric = Perplexity()
        >>> metric.update(logits, torch.tensor([[2, 1, -100]]))  # one counted token: the 1 predicted at t=0
        >>> round(float(metric.result()), 4)
        4.0
    """

    def __init__(self, shift: bool = True, ignore_index: int = -100) -> None:
        super().__init__()
        self.shift, self.ignore_index = shift, ignore_index

    def check(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        if y_true.is_floating_point() or y_pred.dim() != y_true.dim() + 1 or y_pred.shape[:-1] != y_true.shape \
                or (self.shift and (y_true.dim() < 2 or y_true.shape[1] < 2)):
            need = "(N, T, V) logits and (N, T) integer labels, T >= 2" if self.shift else \
                "(N, ..., V) logits and (N, ...) integer labels"
            raise ValueError(f"Perplexity needs {need}. Received: output shape {tuple(y_pred.shape)}, target "
                             f"shape {tuple(y_true.shape)} and dtype {y_true.dtype}. Pass the language model's logits "
                             "and its token labels (a batch's 'labels'); Perplexity(shift=False) for aligned ones.")

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor, sample_weight: torch.Tensor | None = None) -> None:
        logits, labels = y_pred.detach(), y_true
        if self.shift:
            logits, labels = logits[:, :-1], labels[:, 1:]
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).long(),
                                 ignore_index=self.ignore_index, reduction="none").view(labels.shape)
        counted = labels != self.ignore_index
        total, count = self._state("total", losses), self._state("count", losses)
        if sample_weight is None:
            total.add_(losses.sum())
            count.add_(counted.sum())
        else:
            weights = per_sample(sample_weight, labels).to(losses.dtype) * counted
            total.add_((losses * weights).sum())
            count.add_(weights.sum())

    def result(self) -> torch.Tensor:
        return (self._states["total"] / self._states["count"]).exp()
