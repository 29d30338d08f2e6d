"""The Metric base class: on-device accumulators read once per epoch (see kerastorch.metrics)."""
from __future__ import annotations

from typing import Any

import torch

from .distributed import all_reduce_sum


def acc_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps long epochs exact; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def align(y_pred: Any, y_true: Any) -> Any:
    """Keras's one alignment: a (N,) target against an (N, 1) output becomes (N, 1)."""
    if isinstance(y_pred, torch.Tensor) and isinstance(y_true, torch.Tensor) and y_pred.dim() == 2 \
            and y_pred.shape[1] == 1 and y_true.dim() == 1 and y_true.shape[0] == y_pred.shape[0]:
        return y_true.view_as(y_pred)
    return y_true


def per_sample(sample_weight: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape (N,) sample weights to broadcast over ``like``'s trailing dims."""
    return sample_weight.reshape(sample_weight.shape[0], *([1] * (like.dim() - 1)))


class Metric:
    """Base class: accumulate with :meth:`update`, read with :meth:`result`.

    Subclasses keep their state in tensors created by :meth:`_state` so that
    :meth:`reset` zeroes them in place instead of allocating each epoch. Mean
    metrics use :meth:`_add_mean` / :meth:`_mean`: unweighted element counts
    are known on the host, so they are kept as a Python int (no device op).
    """

    from_logits: bool | None = None

    def __init__(self) -> None:
        self._states: dict[str, torch.Tensor] = {}
        self._host_count = 0

    def _add_mean(self, values: torch.Tensor, sample_weight: torch.Tensor | None) -> None:
        """Add per-element values (weighted by per-sample weights when given) to the running mean."""
        total = self._state("total", values)
        if sample_weight is None:
            total.add_(values.sum())
            self._host_count += values.numel()
        else:
            weights = per_sample(sample_weight, values).expand_as(values)
            total.add_((values * weights).sum())
            self._state("count", values).add_(weights.sum())

    def _mean(self) -> torch.Tensor:
        count = self._states.get("count")
        return self._states["total"] / (self._host_count if count is None else count + self._host_count)

    def _state(self, name: str, like: torch.Tensor, size: int = 1) -> torch.Tensor:
        state = self._states.get(name)
        if state is None or state.numel() != size:
            state = torch.zeros(size if size > 1 else (), dtype=acc_dtype(like.device), device=like.device)
            self._states[name] = state
        return state

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor,
               sample_weight: torch.Tensor | None = None) -> None:
        raise NotImplementedError

    def result(self) -> torch.Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        for state in self._states.values():
            state.zero_()
        self._host_count = 0

    def to(self, device: torch.device) -> "Metric":
        self._states = {k: v.to(device) for k, v in self._states.items()}
        return self

    def sync(self) -> None:
        """Sum the states over ranks (every built-in state is a sum), before result()."""
        for state in self._states.values():
            all_reduce_sum(state)
        if self._states:
            count = torch.tensor(float(self._host_count), dtype=torch.float64,
                                 device=next(iter(self._states.values())).device)
            self._host_count = all_reduce_sum(count).item()

    def state_dict(self) -> dict[str, Any]:
        """Accumulated state (for mid-epoch checkpoints), as CPU tensors."""
        state = {k: v.detach().cpu().clone() for k, v in self._states.items()}
        if state:
            state["_host_count"] = torch.tensor(self._host_count)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = next(iter(self._states.values())).device if self._states else torch.device("cpu")
        state = dict(state)
        host_count = state.pop("_host_count", None)
        self._host_count = 0 if host_count is None else host_count.item()
        self._states = {k: v.to(device) for k, v in state.items()}


