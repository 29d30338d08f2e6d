"""The gradient-accumulation window: which batches step the optimizer, and how each batch's loss is weighted.

With ``grad_accum_steps=k`` the k batches of a window are weighted by how many items each holds
(its samples, or the tokens a token-level loss averaged over), so the accumulated gradient is the
gradient of the window's concatenated batch even when batches differ in size: a short last batch,
a sampler without ``drop_last``, padded token batches. Each batch's mean loss is multiplied by its
item count; when the window closes the gradients are divided by the window's total (summed over
ranks under torchrun, where DDP's average is undone by the world size). The counts stay where
they are (host ints, or device tensors for tokens): no host read.
"""
from __future__ import annotations

from typing import Any

import torch


class AccumulationWindow:
    """Which batches step the optimizer, and what each batch's loss is weighted by (``grad_accum_steps``).

    Owned by fit's :class:`~kerastorch.engine.epoch_iterator.EpochIterator` (lr_find keeps its own);
    read by :func:`~kerastorch.engine.step.optimizer_step`.

    Attributes:
        size: batches per optimizer step.
        steps: batches in the running epoch (-1: unknown; the window then never ends early).
        update_now: True when the batch being run ends a window (the optimizer steps).
        items: what the batch being run counts (its samples, or tokens; an int or a device tensor; set by the
            batch loop before the step when ``size > 1``).
        total: the items of the window so far (the gradients are divided by it when it closes).
        ranks: the processes whose windows make one global window (DDP/FSDP averaged their gradients); 1: this
            one alone (one process, or ranks with unequal batch counts, whose joined ranks run no collective).

    Example:
        >>> window = AccumulationWindow(2); window.steps = 5
        >>> [(window.plan(i), window.update_now)[1] for i in range(5)]
        [False, True, False, True, True]
    """

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self.steps = -1
        self.update_now = True
        self.items: Any = 1
        self.total: Any = 0
        self.ranks = 1

    def reset(self) -> None:
        """A new epoch: no batch of a window is pending."""
        self.update_now, self.total = True, 0

    def plan(self, index: int) -> None:
        """Batch ``index`` of the epoch is next: whether it closes its window (a new window starts its count)."""
        size, steps = self.size, self.steps
        if index % size == 0:
            self.total = 0
        self.update_now = (index + 1) % size == 0 or 0 <= steps <= index + 1

    def weigh(self, loss: torch.Tensor, items: Any = None) -> torch.Tensor:
        """``loss`` (a mean over ``items``, default :attr:`items`) times its count, added to the window's total."""
        count = self.items if items is None else items
        self.total = self.total + count
        return loss * count

    def unweigh(self, gradients: list[torch.Tensor]) -> None:
        """Divide the window's gradients by its total items (of all :attr:`ranks`' windows).

        Example:
            >>> window = AccumulationWindow(2); window.steps = 2
            >>> grads = [torch.zeros(1)]
            >>> for index, (mean, n) in enumerate([(torch.tensor(2.0), 3), (torch.tensor(4.0), 1)]):
            ...     window.plan(index); grads[0] += window.weigh(mean, n)
            >>> window.unweigh(grads); grads[0]  # (2 * 3 + 4 * 1) / 4 samples
            tensor([2.5000])
        """
        if not gradients:
            return
        total = self.total
        if self.ranks > 1:  # DDP averaged the ranks' sums: times the world size, over all ranks' items
            count = torch.as_tensor(total, dtype=torch.float64, device=gradients[0].device).reshape(())
            torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.SUM)
            torch._foreach_mul_(gradients, self.ranks / count)
        elif isinstance(total, torch.Tensor):
            torch._foreach_mul_(gradients, total.reciprocal().reshape(()).to(gradients[0].device))
        else:
            torch._foreach_mul_(gradients, 1.0 / total)
