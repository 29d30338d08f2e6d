"""LossComputer: one compiled loss -> (total loss, logged components).

Handles what sits between the model output and the optimizer: name
resolution, the first-batch shape check, Keras's (N,) -> (N, 1) target
alignment, per-sample and per-class weights, loss functions that return a
dict of components, and multi-output losses with weights.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import nn

from ..checks import check_class_targets, check_target_shape, describe
from . import registry as losses_module

# Losses whose target holds class indices rather than values shaped like the output.
_CLASS_INDEX_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)


def _resolve_one(spec: Any) -> Callable:
    if isinstance(spec, str):
        return losses_module.get(spec)
    if isinstance(spec, nn.Module) or callable(spec):
        return spec
    raise TypeError("`loss` must be a name, an nn.Module or a function fn(y_pred, y_true). "
                    f"Received: loss={describe(spec)}")


class _SingleLoss:
    """One loss function with its checks, alignment and weighting."""

    def __init__(self, spec: Any, class_weight: dict | None) -> None:
        self.fn = _resolve_one(spec)
        self.name = spec if isinstance(spec, str) else type(self.fn).__name__
        self.class_weight = class_weight
        self.unreduced = self._unreduced_twin(self.fn)
        self.checked = False
        self.align = False
        self._class_weight_table: torch.Tensor | None = None

    @staticmethod
    def _unreduced_twin(fn: Callable) -> nn.Module | None:
        # Weighted losses need per-sample values: a copy of the loss with reduction="none".
        if isinstance(fn, nn.Module) and hasattr(fn, "reduction"):
            twin = copy.copy(fn)
            twin.reduction = "none"  # type: ignore[assignment]  # torch types Module attributes as Tensor | Module
            return twin
        return None

    def check(self, y_pred: Any, y_true: Any) -> None:
        """Validate shapes and dtypes on the first batch (before any optimizer step)."""
        self.checked = True
        if y_true is None:
            raise ValueError("The loss needs targets, but the batch has no `y`: pass `y`, or "
                             "batches of (x, y).")
        if not isinstance(y_pred, torch.Tensor) or not isinstance(y_true, torch.Tensor):
            return  # custom structured losses validate themselves
        if isinstance(self.fn, _CLASS_INDEX_LOSSES) or _is_multiclass_focal(self.fn, y_pred, y_true):
            check_class_targets(y_pred, y_true, f"loss {self.name!r}")
        else:
            self.align = check_target_shape(y_pred, y_true, f"loss {self.name!r}")

    def __call__(self, y_pred: Any, y_true: Any, sample_weight: torch.Tensor | None) -> Any:
        if not self.checked:
            self.check(y_pred, y_true)
        if self.align:
            y_true = y_true.view_as(y_pred)
        if sample_weight is None and self.class_weight is None:
            return self.fn(y_pred, y_true)
        return self._weighted(y_pred, y_true, sample_weight)

    def _weighted(self, y_pred: torch.Tensor, y_true: torch.Tensor, sample_weight: torch.Tensor | None) -> torch.Tensor:
        if self.unreduced is None:
            raise ValueError(f"Sample or class weights need a built-in loss (an nn.Module with a "
                             f"`reduction` argument); {self.name!r} is a plain function. "
                             "Apply the weights inside your loss instead.")
        per_element = self.unreduced(y_pred, y_true)
        per_sample = per_element.reshape(per_element.shape[0], -1).mean(1)
        weights = torch.ones_like(per_sample) if sample_weight is None else sample_weight.to(per_sample.dtype)
        if self.class_weight is not None:
            weights = weights * self._class_weights(y_true, per_sample)
        # Keras's "sum over batch size": weighted sum divided by the number of samples.
        return (per_sample * weights).sum() / per_sample.shape[0]

    def _class_weights(self, y_true: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self._class_weight_table is None or self._class_weight_table.device != like.device:
            class_weight = cast(dict, self.class_weight)  # only called with class weights
            size = max(class_weight) + 1
            table = torch.ones(size, dtype=like.dtype, device=like.device)
            for cls, weight in class_weight.items():
                table[cls] = weight
            self._class_weight_table = table
        labels = y_true.reshape(y_true.shape[0], -1)[:, 0]
        return self._class_weight_table[labels.round().long() if labels.is_floating_point() else labels]

    def to(self, device: torch.device) -> None:
        for module in (self.fn, self.unreduced):
            if isinstance(module, nn.Module):
                module.to(device)


def _is_multiclass_focal(fn: Any, y_pred: torch.Tensor, y_true: torch.Tensor) -> bool:
    return type(fn).__name__ == "FocalLoss" and y_pred.dim() == y_true.dim() + 1


class LossComputer:
    """Compute the training objective and the values to log.

    Args:
        loss: one loss spec (name, nn.Module, function), or a dict/list of
            specs matching a dict/tuple model output (multi-output).
        loss_weights: scalars matching the dict/list of losses.
        class_weight: ``{class_index: weight}`` for built-in losses.

    Calling it returns ``(loss, components)``: the scalar to minimise and a
    dict of named detached tensors to log (e.g. ``{"focal": ..., "out_a_loss": ...}``).

    Example:
        >>> lc = LossComputer("mse")
        >>> loss, parts = lc(torch.zeros(4, 1), torch.ones(4), None)
        >>> float(loss), parts
        (1.0, {})
    """

    def __init__(self, loss: Any, loss_weights: Any = None, class_weight: dict | None = None) -> None:
        if class_weight is not None and (not isinstance(class_weight, Mapping) or
                                         not all(isinstance(k, int) and k >= 0 for k in class_weight)):
            raise ValueError("`class_weight` must be a dict {class_index: weight} with integer keys >= 0. "
                             f"Received: class_weight={class_weight!r}")
        self.structure = "dict" if isinstance(loss, Mapping) else "list" if isinstance(loss, (list, tuple)) else None
        specs = dict(loss) if self.structure == "dict" else \
            {i: spec for i, spec in enumerate(loss)} if self.structure == "list" else {None: loss}
        self.losses = {key: _SingleLoss(spec, class_weight) for key, spec in specs.items()}
        self.weights = self._resolve_weights(loss_weights)
        first = next(iter(self.losses.values()))
        self.spec = loss if self.structure is None else None
        self.fn = first.fn

    def _resolve_weights(self, loss_weights: Any) -> dict[Any, float]:
        if loss_weights is None:
            return {key: 1.0 for key in self.losses}
        if self.structure is None:
            raise ValueError("`loss_weights` needs a dict or list of losses (one per output).")
        weights = dict(loss_weights) if isinstance(loss_weights, Mapping) else dict(enumerate(loss_weights))
        if set(weights) != set(self.losses):
            raise ValueError(f"`loss_weights` must have the same keys as `loss`. Received: "
                             f"loss keys {sorted(map(str, self.losses))}, weight keys {sorted(map(str, weights))}")
        return {key: float(value) for key, value in weights.items()}

    def to(self, device: torch.device) -> LossComputer:
        for single in self.losses.values():
            single.to(device)
        return self

    def __call__(self, y_pred: Any, y_true: Any,
                 sample_weight: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.structure is None:
            return _split(self.losses[None](y_pred, y_true, sample_weight))
        total, components = None, {}
        for key, single in self.losses.items():
            value, parts = _split(single(_pick(y_pred, key, "output"), _pick(y_true, key, "target"), sample_weight))
            name = key if self.structure == "dict" else f"output_{key}"
            components[f"{name}_loss"] = value.detach()
            components.update({f"{name}_{k}": v for k, v in parts.items()})
            weighted = value * self.weights[key]
            total = weighted if total is None else total + weighted
        return cast(torch.Tensor, total), components  # a structure has at least one loss


def _pick(structure: Any, key: Any, what: str) -> Any:
    try:
        return structure[key]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"A multi-output loss expects the model {what} to have an entry {key!r}. "
                         f"Received: {describe(structure)}") from None


_NO_COMPONENTS: dict[str, torch.Tensor] = {}


def _split(value: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A loss may return a tensor or a dict with a "loss" key plus named components."""
    if type(value) is torch.Tensor and value.dim() == 0:
        return value, _NO_COMPONENTS  # the common case first: no ABC isinstance checks
    if isinstance(value, Mapping):
        if "loss" not in value:
            raise ValueError(f"A loss returning a dict must include a 'loss' key. Received keys: {list(value)}")
        return value["loss"], {k: v.detach() for k, v in value.items() if k != "loss"}
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"A loss must return a tensor or a dict of tensors. Received: {describe(value)}")
    if value.dim() != 0 and value.numel() != 1:
        raise ValueError(f"A loss must return a scalar. Received a tensor of shape {tuple(value.shape)}; "
                         "reduce it (e.g. .mean()).")
    return value, {}

