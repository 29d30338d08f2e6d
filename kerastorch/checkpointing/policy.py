"""Save policy: when a checkpointing callback saves, and what it refuses to save.

* :class:`SaveSchedule`: every epoch, or every N batches at the end of an
  accumulation window;
* :func:`safe_to_save`: never a checkpoint of non-finite weights or from an epoch
  whose loss went non-finite (the previous file is kept).
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..checks import require_positive_int_or_epoch
from ..distributed import unwrap
from ..fsdp import all_finite, is_sharded


class SaveSchedule:
    """The ``save_freq`` of ModelCheckpoint and BackupAndRestore.

    Args:
        save_freq: "epoch", or a positive number of training batches.
        validation: also accept "validation" (after each validation: epoch-end and step-level).

    With a batch count, a save that falls inside a gradient-accumulation window
    waits for the window's optimizer step, so no partial gradients are lost.

    Example:
        >>> SaveSchedule("epoch").per_epoch
        True
    """

    def __init__(self, save_freq: str | int, validation: bool = False) -> None:
        self.on_validation = validation and save_freq == "validation"  # ModelCheckpoint: after each validation
        if not self.on_validation:
            require_positive_int_or_epoch("save_freq", save_freq)
        self.save_freq = save_freq
        self.per_epoch = save_freq == "epoch"
        self.every_batches = 0 if isinstance(save_freq, str) else save_freq
        self.batches_seen = 0
        self.due = False

    def batch_done(self, session: Any) -> bool:
        """Count a finished batch; True when a mid-epoch save should happen now.

        Args:
            session: the running fit's session (``session.update_now`` is True
                on the last batch of an accumulation window).
        """
        self.batches_seen += 1
        if self.batches_seen % self.every_batches == 0:
            self.due = True
        if self.due and session.update_now:
            self.due = False
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"batches_seen": self.batches_seen, "due": self.due}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches_seen, self.due = state["batches_seen"], state.get("due", False)


def finite_weights(model: nn.Module) -> bool:
    """True when every floating parameter and buffer is finite (one host sync).

    Example:
        >>> finite_weights(nn.Linear(2, 1))
        True
    """
    if is_sharded(model):  # every rank checks its shards, together (a collective)
        return all_finite(model)
    tensors = [t for t in unwrap(model).state_dict().values() if t.is_floating_point()]
    if not tensors:
        return True
    norms = torch._foreach_norm([t.detach().float() for t in tensors], 1)
    return bool(torch.isfinite(torch.stack(norms)).all())  # host-sync: once per checkpoint


def safe_to_save(model: nn.Module, session: Any) -> bool:
    """No non-finite loss recorded this epoch and finite weights; warns when saving is refused.

    Args:
        model: the network about to be saved.
        session: the running fit's session (its ``nonfinite`` flag and epoch
            accumulator), or None outside ``fit``.
    """
    accumulator = getattr(session, "accumulator", None)
    bad = getattr(session, "nonfinite", False) or (
        accumulator is not None and accumulator.first_nonfinite() is not None)
    if bad or not finite_weights(model):
        warnings.warn("Not writing a checkpoint: the loss or the weights are non-finite. "
                      "The previous checkpoint is kept.", RuntimeWarning, stacklevel=3)
        return False
    return True
