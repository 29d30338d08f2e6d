"""Mixed precision as no-op-able objects: the hot loop never branches on precision.

``Precision.autocast()`` is ``torch.autocast`` or a ``nullcontext``; the scaler
is ``torch.amp.GradScaler`` (fp16 only) or a disabled one whose methods are
pass-throughs. The loop calls the same methods either way.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
_ALIASES = {"32": "32", "fp32": "32", "32-true": "32", "float32": "32",
            "bf16-mixed": "bf16-mixed", "bf16": "bf16-mixed",
            "16-mixed": "16-mixed", "fp16": "16-mixed", "16": "16-mixed"}


def resolve_precision(precision: str | int | None, amp: bool, device: torch.device) -> str:
    """Turn ``compile(precision=..., amp=...)`` into one of :data:`PRECISIONS`.

    ``amp=True`` (the seed-style switch) means the best mixed mode for the
    device: bf16 where supported (CPU, Ampere+ GPUs), fp16 otherwise.
    """
    if amp and precision not in (None, "32", 32):
        raise ValueError("Pass either `amp=True` or `precision=`, not both. "
                         f"Received: amp={amp!r}, precision={precision!r}")
    if amp:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return "16-mixed"
        return "bf16-mixed"
    key = "32" if precision is None else str(precision)
    if key not in _ALIASES:
        raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={precision!r}")
    resolved = _ALIASES[key]
    if resolved == "16-mixed" and device.type == "cpu":
        raise ValueError("precision='16-mixed' needs a CUDA device (fp16 autocast on CPU is "
                         "slow and lossy). Use precision='bf16-mixed' on CPU.")
    return resolved


_NULL_CONTEXT = contextlib.nullcontext()  # stateless, so one instance serves every step


class Precision:
    """Autocast context and gradient scaler for one precision mode.

    Example:
        >>> p = Precision("32", torch.device("cpu"))
        >>> with p.autocast():
        ...     pass
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        self.mode = mode
        self.device = device
        self.dtype = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[mode]
        self.scaler = torch.amp.GradScaler(device.type, enabled=(mode == "16-mixed")) \
            if mode == "16-mixed" else _NoScaler()

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context that forward and loss run under (a fresh one each call: it may be nested)."""
        if self.dtype is None:
            return _NULL_CONTEXT
        return torch.autocast(self.device.type, dtype=self.dtype)


class _NoScaler:
    """GradScaler stand-in for full precision and bf16: every method passes through."""

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def unscale_(self, optimizer: Any) -> None:
        pass

    def step(self, optimizer: Any) -> None:
        optimizer.step()

    def update(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            warnings.warn("Ignoring a GradScaler state: this model is not compiled with "
                          "precision='16-mixed'.", stacklevel=2)
