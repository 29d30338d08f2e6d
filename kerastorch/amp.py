"""Mixed precision (AMP) as no-op-able objects: the hot loop never branches on precision.

``MixedPrecision.autocast()`` is ``torch.autocast`` or a ``nullcontext``; the scaler
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


class MixedPrecision:
    """Autocast context and gradient scaler for one precision mode.

    Example:
        >>> p = MixedPrecision("32", torch.device("cpu"))
        >>> with p.autocast():
        ...     pass
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        self.mode = mode
        self.device = device
        self.dtype = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[mode]
        self.scales = mode == "16-mixed"  # fp16: the loss is scaled and the scaler steps (else the optimizer does)
        # fp32's context, shared (a null context nests); mixed modes need a fresh autocast per use: autocast()
        self.context: contextlib.AbstractContextManager | None = _NULL_CONTEXT if self.dtype is None else None
        self.scaler = SkipCountingGradScaler(device.type) if self.scales else _NoScaler()

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context that forward and loss run under (a fresh one each call: it may be nested)."""
        if self.dtype is None:
            return _NULL_CONTEXT
        return torch.autocast(self.device.type, dtype=self.dtype)


class SkipCountingGradScaler(torch.amp.GradScaler):
    """``torch.amp.GradScaler`` that also counts, on the device, the steps it skipped.

    fp16 gradients overflow now and then; the scaler then skips the optimizer
    step and halves its scale. That is normal, not a failure: ``fit`` logs the
    epoch's count as ``amp_skipped_steps`` and trains on. The count is summed
    on the device (no host sync) and read with the other epoch logs; it is part
    of ``state_dict()``, so a mid-epoch checkpoint resumes it. Under DDP every
    rank counts the same steps (the check sees the all-reduced gradients).

    Example:
        >>> scaler = SkipCountingGradScaler("cpu")
        >>> float(scaler.skip_count())  # nothing skipped yet
        0.0
    """

    def __init__(self, device: str = "cuda", **kwargs: Any) -> None:
        super().__init__(device, **kwargs)
        self._skipped: torch.Tensor | None = None  # shape (1,), made on the gradients' device
        self._carried = 0.0  # a count loaded from a checkpoint before the first step
        self._last_found: list[torch.Tensor] = []

    def step(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        result = super().step(optimizer, *args, **kwargs)
        # This step's per-device inf flags (device tensors, cleared by update()): a private
        # GradScaler method, there since torch 1.6. Reading them costs no sync.
        found = self._last_found = list(self._found_inf_per_device(optimizer).values())
        if self._skipped is None:
            self._skipped = torch.full((1,), self._carried, dtype=torch.float32, device=found[0].device)
        if len(found) == 1:
            self._skipped.add_(found[0])
        else:  # a model split over devices: one skipped step, however many devices saw an inf
            self._skipped.add_(torch.stack([f.to(self._skipped.device) for f in found]).amax(0))
        return result

    def skipped_last_step(self) -> bool:
        """Whether the last :meth:`step` skipped the optimizer (an inf/NaN gradient): a per-step schedule then waits.

        GradScaler's own step already waited for these flags (it reads them to decide), except with a fused
        optimizer; this read of the same flags adds no other wait.
        """
        return any(bool(flag.item()) for flag in self._last_found)  # host-sync: see above; per-step schedules only

    def skip_count(self) -> torch.Tensor:
        """Steps skipped since the last :meth:`reset_skip_count` (a device tensor; read it once)."""
        if self._skipped is None:  # no step yet: the carried count, on the scaler's device
            return torch.tensor([self._carried], device=self._device)
        return self._skipped

    def reset_skip_count(self) -> None:
        """Start a new count (each training epoch)."""
        self._carried = 0.0
        if self._skipped is not None:
            self._skipped.zero_()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["skipped_steps"] = float(self.skip_count().item())  # host-sync: checkpoint time, not per step
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self._carried = float(state.pop("skipped_steps", 0.0))
        self._skipped = None
        super().load_state_dict(state)


class _NoScaler:
    """GradScaler stand-in for full precision and bf16: every method passes through."""

    def skip_count(self) -> None:
        return None  # never skips a step

    def skipped_last_step(self) -> bool:
        return False

    def reset_skip_count(self) -> None:
        pass

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
