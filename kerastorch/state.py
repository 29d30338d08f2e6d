"""TrainState: where a fit is (epoch, step, logs), kept apart from the network."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    """Progress of the current ``fit`` (epochs 0-based, steps counted from the first fit).

    Attributes:
        epoch: index of the epoch being run (0-based).
        global_step: optimizer-facing training batches seen over all fits.
        batch: index of the batch within the epoch.
        epochs: total epochs requested (the ``epochs`` argument of fit).
        logs: the last finished epoch's logs (floats).
    """

    epoch: int = 0
    global_step: int = 0
    batch: int = 0
    epochs: int = 0
    logs: dict[str, Any] = field(default_factory=dict)
