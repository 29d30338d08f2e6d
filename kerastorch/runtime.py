"""Runtime: the per-model training machinery that is not the network.

A :class:`kerastorch.Model` keeps one ``Runtime`` in ``model._kt``: the
compiled configuration, the callbacks of the running call, the history rows,
the train state and the gradient-accumulation plan. It is a plain object so
the hot loop reads and writes its attributes without ``nn.Module``'s
attribute machinery, and nothing here shows up in ``state_dict()``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .callbacks.base import CallbackList
from .config import CompileConfig
from .state import TrainState


class Runtime:
    """Training machinery attached to one model (see module docstring)."""

    def __init__(self) -> None:
        self.config: CompileConfig | None = None
        self.hooks: CallbackList = CallbackList()
        self.history_rows: list[dict[str, Any]] = []
        self.state = TrainState()
        self.accumulator: Any = None
        self.forward_fn: Callable[..., Any] | None = None  # the module or its DP/DDP/compiled wrapper
        self.generator: torch.Generator | None = None      # shuffling order, saved in checkpoints
        self.accum_divisor = 1
        self.update_now = True

    def plan_micro_step(self, index: int, steps: int) -> None:
        """Set the loss divisor and whether to step the optimizer for batch ``index``.

        The divisor is the real size of the accumulation window, so a short last
        window (steps not divisible by k) is averaged over its own batches.
        """
        k = self.config.grad_accum_steps
        window_start = (index // k) * k
        self.accum_divisor = min(k, steps - window_start)
        self.update_now = (index + 1) % k == 0 or index + 1 >= steps

    def prepare_epoch(self, epoch: int, source: Any) -> None:
        """Per-epoch set-up of the data: DistributedSampler.set_epoch where present."""
        self.accum_divisor, self.update_now = 1, True
        sampler = getattr(getattr(source, "loader", None), "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def step_epoch_scheduler(self, logs: dict[str, float]) -> None:
        scheduler = self.config.lr_scheduler
        if scheduler is None or self.config.scheduler_interval != "epoch":
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitor = self.config.extra.get("scheduler_monitor", "val_loss")
            if monitor not in logs:
                raise ValueError(f"The ReduceLROnPlateau scheduler monitors {monitor!r}, which is not "
                                 f"logged. Available: {sorted(logs)}")
            scheduler.step(logs[monitor])
        else:
            scheduler.step()
