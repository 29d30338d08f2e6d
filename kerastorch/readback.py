"""Reading device values back to the host: the one deliberate sync point of each epoch.

Every read of a tensor's value on the host waits for the device. The engine
reads an epoch's logs here, once; progress displays read the running values
here on a timer. Nothing else in the training loop reads back.
"""
from __future__ import annotations

import torch


def read_scalars(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Read a dict of 0-dim tensors to Python floats with one host sync.

    Example:
        >>> read_scalars({"loss": torch.tensor(0.5), "acc": torch.tensor(1)})
        {'loss': 0.5, 'acc': 1.0}
    """
    if not values:
        return {}
    keys = list(values)
    stacked = torch.stack([_float64_scalar(values[k]) for k in keys])
    return dict(zip(keys, stacked.tolist(), strict=True))  # host-sync: the one read per epoch / timed progress refresh


def _float64_scalar(value: torch.Tensor) -> torch.Tensor:
    """``value`` as a 0-dim float64 tensor on its device (on the CPU for MPS, which has no float64)."""
    if type(value) is torch.Tensor and value.dtype is torch.float64 and value.dim() == 0 and not value.requires_grad:
        return value  # the epoch's means already are: no op
    value = torch.as_tensor(value)
    return value.detach().to("cpu" if value.device.type == "mps" else value.device, torch.float64).reshape(())
