"""When a checkpointing callback saves: every epoch, or every N batches at window ends."""
from __future__ import annotations

from typing import Any


class SaveSchedule:
    """The ``save_freq`` of ModelCheckpoint and BackupAndRestore.

    Args:
        save_freq: "epoch", or a positive number of training batches.

    With a batch count, a save that falls inside a gradient-accumulation window
    waits for the window's optimizer step, so no partial gradients are lost.

    Example:
        >>> SaveSchedule("epoch").per_epoch
        True
    """

    def __init__(self, save_freq: str | int) -> None:
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"`save_freq` must be 'epoch' or a positive integer. Received: save_freq={save_freq!r}")
        self.save_freq = save_freq
        self.per_epoch = save_freq == "epoch"
        self.batches_seen = 0
        self.due = False

    def batch_done(self, runtime: Any) -> bool:
        """Count a finished batch; True when a mid-epoch save should happen now."""
        self.batches_seen += 1
        if self.batches_seen % self.save_freq == 0:
            self.due = True
        if self.due and runtime.update_now:
            self.due = False
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"batches_seen": self.batches_seen, "due": self.due}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches_seen, self.due = state["batches_seen"], state.get("due", False)
