"""The Metric base class (on-device accumulators read once per epoch) and the weighted-mean base."""
from __future__ import annotations

from typing import Any

import torch

from ..checks import check_target_shape
from ..distributed import all_reduce_sum


def acc_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps long epochs exact; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


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
    #: False when ``result()`` is too costly for a progress bar's running values (AUC ranks the epoch).
    cheap_result: bool = True

    def __init__(self) -> None:
        self._states: dict[str, torch.Tensor] = {}
        self._host_count: int | float = 0  # a float once summed over ranks by sync()

    def _add_mean(self, values: torch.Tensor, sample_weight: torch.Tensor | None) -> None:
        """Add per-element values (weighted by per-sample weights when given) to the running mean."""
        total = self._states.get("total")
        if total is None:  # the first batch since reset (a call a step less once made)
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
            # A normal tensor even when first made in evaluate's inference mode: the next fit's
            # reset() and in-place updates run outside it (an inference tensor would refuse them).
            with torch.inference_mode(False):
                state = torch.zeros(size if size > 1 else (), dtype=acc_dtype(like.device), device=like.device)
            self._states[name] = state
        return state

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor,
               sample_weight: torch.Tensor | None = None) -> None:
        raise NotImplementedError

    def check(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        """Validate a call's first batch before any optimizer step (the compiled loss calls it); raise if unusable.

        Metrics are updated after the optimizer step: without this check a metric's error on the
        first batch would come after the weights changed. The default accepts everything.
        """

    def result(self) -> torch.Tensor:
        raise NotImplementedError

    def has_values(self) -> bool:
        """True once :meth:`update` has run (since the metric was made)."""
        return bool(self._states) or self._host_count > 0

    def reset(self) -> None:
        for state in self._states.values():
            state.zero_()
        self._host_count = 0

    def to(self, device: torch.device) -> Metric:
        self._states = {k: v.to(device) for k, v in self._states.items()}
        return self

    def sync(self) -> None:
        """Sum the states over ranks (every built-in state is a sum), before result()."""
        for state in self._states.values():
            all_reduce_sum(state)
        if self._states:
            count = torch.tensor(float(self._host_count), dtype=torch.float64,
                                 device=next(iter(self._states.values())).device)
            self._host_count = all_reduce_sum(count).item()  # host-sync: once per epoch, under DDP

    def state_dict(self) -> dict[str, Any]:
        """Accumulated state (for mid-epoch checkpoints), as CPU tensors."""
        state = {k: v.detach().cpu().clone() for k, v in self._states.items()}  # host-sync: checkpoint time
        if state:
            state["_host_count"] = torch.tensor(self._host_count)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = next(iter(self._states.values())).device if self._states else torch.device("cpu")
        state = dict(state)
        host_count = state.pop("_host_count", None)
        self._host_count = 0 if host_count is None else host_count.item()
        self._states = {k: v.to(device) for k, v in state.items()}


class MeanMetric(Metric):
    """Weighted mean of per-element values: sum(v * w) / sum(w)."""

    def _values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check(self, y_pred, y_true):
        check_target_shape(y_pred, y_true, f"metric {type(self).__name__}")

    def update(self, y_pred, y_true, sample_weight=None):
        if y_pred.shape != y_true.shape and check_target_shape(y_pred, y_true, f"metric {type(self).__name__}"):
            y_true = y_true.view_as(y_pred)
        self._add_mean(self._values(y_pred.detach(), y_true), sample_weight)

    def result(self):
        return self._mean()

