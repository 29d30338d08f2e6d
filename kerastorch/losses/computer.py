"""LossComputer: one compiled loss -> (total loss, logged components).

Handles what sits between the model output and the optimizer: name
resolution, the first-batch shape check, Keras's (N,) -> (N, 1) target
alignment, per-sample and per-class weights, loss functions that return a
dict of components, and multi-output losses with weights.
"""
from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import nn

from ..checks import check_class_targets, check_target_shape, describe, is_int
from . import first_batch
from . import registry as losses_module

# Losses whose target holds class indices rather than values shaped like the output.
_CLASS_INDEX_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)


def _resolve_one(spec: Any) -> Callable:
    if isinstance(spec, str):
        return losses_module.get(spec)
    if isinstance(spec, type) and issubclass(spec, nn.Module):
        raise TypeError(f"`loss` must be a loss object, not a class: pass {spec.__name__}() (with parentheses). "
                        f"Received: loss={spec!r}")
    if isinstance(spec, nn.Module) or callable(spec):
        return spec
    raise TypeError("`loss` must be a name, an nn.Module or a function fn(y_pred, y_true). "
                    f"Received: loss={describe(spec)}")


# The functions the built-in loss modules call with their default settings.
_FUNCTIONAL: dict[type, Callable[..., torch.Tensor]] = {
    nn.MSELoss: nn.functional.mse_loss, nn.L1Loss: nn.functional.l1_loss,
    nn.BCELoss: nn.functional.binary_cross_entropy,
    nn.BCEWithLogitsLoss: nn.functional.binary_cross_entropy_with_logits,
    nn.CrossEntropyLoss: nn.functional.cross_entropy, nn.NLLLoss: nn.functional.nll_loss,
}


def _direct(loss: Callable) -> Callable:
    """What a loss built from its name computes, called without the module machinery (no hooks can be on it):
    torch's function for a default-configured built-in loss, else the module's forward. Three frames less a step.

    Example:
        >>> _direct(nn.MSELoss()) is nn.functional.mse_loss
        True
    """
    if not isinstance(loss, nn.Module):
        return loss
    function = _FUNCTIONAL.get(type(loss))
    defaults = getattr(loss, "reduction", None) == "mean" and getattr(loss, "weight", None) is None and \
        getattr(loss, "pos_weight", None) is None and getattr(loss, "ignore_index", -100) == -100 and \
        getattr(loss, "label_smoothing", 0.0) == 0.0
    return function if function is not None and defaults else loss.forward


def normalize_class_weight(class_weight: Any) -> dict[int, float] | None:
    """``{class_index: weight}`` with int keys and float values; Keras's "0" and 0.0 keys too.

    Example:
        >>> normalize_class_weight({"0": 1, 1.0: 2.5})
        {0: 1.0, 1: 2.5}
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, Mapping):
        normalized = {}
        for key, value in class_weight.items():
            index = _class_index(key)
            if index is None:
                break
            normalized[index] = float(value)
        else:
            return normalized
    raise ValueError("`class_weight` must be a dict {class_index: weight} with integer keys >= 0 (\"0\" and 0.0 "
                     f"are read as 0). Received: class_weight={class_weight!r}")


def _class_index(key: Any) -> int | None:
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    if isinstance(key, float) and key.is_integer() and key >= 0:
        return int(key)
    if is_int(key) and key >= 0:
        return int(key)  # NumPy integers (sklearn's compute_class_weight) as Python ints
    return None


class _SingleLoss:
    """One loss function with its checks, alignment and weighting."""

    def __init__(self, spec: Any, class_weight: dict | None) -> None:
        self.fn = _resolve_one(spec)
        self.name = spec if isinstance(spec, str) else type(self.fn).__name__
        self._compute = _direct(self.fn) if isinstance(spec, str) else self.fn
        self.class_weight = class_weight
        self.unreduced = self._unreduced_twin(self.fn)
        self.checked = False
        self.align = False
        self.one_hot = False
        self.index_column = False  # (N, 1, ...) integer class indices, read as (N, ...) (Keras's sparse losses)
        self.widen_indices = False  # int32 (etc.) class indices, which torch's class-index losses need as int64
        self._class_weight_table: torch.Tensor | None = None
        self._classes = 0  # classes of the output, known from the first batch

    def set_class_weight(self, class_weight: dict[int, float] | None) -> None:
        """Use these class weights from the next batch on (``fit(class_weight=...)``); checked again."""
        self.class_weight, self._class_weight_table, self.checked = class_weight, None, False

    @staticmethod
    def _unreduced_twin(fn: Callable) -> nn.Module | None:
        # Weighted losses need per-sample values: a copy of the loss with reduction="none".
        if isinstance(fn, nn.Module) and hasattr(fn, "reduction"):
            twin = copy.copy(fn)
            twin.reduction = "none"  # type: ignore[assignment]  # torch types Module attributes as Tensor | Module
            return twin
        return None

    def check(self, y_pred: Any, y_true: Any) -> None:
        """Validate shapes, dtypes and (once) values on the first batch of a call, before any optimizer step."""
        self.align = self.one_hot = self.index_column = self.widen_indices = False
        first_batch.check_output(self.fn, self.name, y_pred, y_true)
        if not isinstance(y_pred, torch.Tensor) or not isinstance(y_true, torch.Tensor):
            self.checked = True
            return  # custom structured losses validate themselves
        self.index_column = (isinstance(self.fn, _CLASS_INDEX_LOSSES) or type(self.fn).__name__ == "FocalLoss") \
            and first_batch.is_index_column(y_pred, y_true)
        if self.index_column:
            y_true = y_true.squeeze(1)
        if isinstance(self.fn, _CLASS_INDEX_LOSSES) or _is_multiclass_focal(self.fn, y_pred, y_true):
            # The data keeps its integer dtype (Keras's rule); torch's cross_entropy / nll need int64 indices.
            self.widen_indices = isinstance(self.fn, _CLASS_INDEX_LOSSES) \
                and first_batch.is_integer(y_true) and y_true.dtype != torch.long
            check_class_targets(y_pred, y_true, f"loss {self.name!r}")
            first_batch.check_class_indices(self.fn, self.name, y_pred, y_true)
            if isinstance(self.fn, nn.CrossEntropyLoss):
                first_batch.warn_if_probabilities(self.name, y_pred)
        else:
            self.align = check_target_shape(y_pred, y_true, f"loss {self.name!r}")
            if isinstance(self.fn, first_batch.BINARY_LOSSES):
                first_batch.check_binary(self.fn, self.name, y_pred, y_true)
        if self.class_weight is not None:
            self._classes = first_batch.check_class_weight(self.class_weight, y_pred)
            # one-hot (or soft) targets, float or integer: the class of a sample is its target's argmax (Keras)
            self.one_hot = y_true.shape == y_pred.shape and y_pred.dim() >= 2 and y_pred.shape[1] > 1
        self.checked = True

    def __call__(self, y_pred: Any, y_true: Any, sample_weight: torch.Tensor | None) -> Any:
        if not self.checked:
            self.check(y_pred, y_true)
        if self.align:
            y_true = y_true.view_as(y_pred)
        elif self.index_column or self.widen_indices:
            y_true = self._class_indices(y_true)
        if sample_weight is None and self.class_weight is None:
            return self._compute(y_pred, y_true)
        return self._weighted(y_pred, y_true, sample_weight)

    def _class_indices(self, y_true: torch.Tensor) -> torch.Tensor:
        """Integer class indices as torch's class-index losses take them: (N, ...) int64."""
        if self.index_column:
            y_true = y_true.squeeze(1)
        return y_true.long() if self.widen_indices else y_true

    def state(self) -> tuple[bool, ...]:
        """What the first-batch check decided (an evaluation inside fit restores training's with set_state)."""
        return self.checked, self.align, self.one_hot, self.index_column, self.widen_indices

    def set_state(self, state: tuple[bool, ...]) -> None:
        self.checked, self.align, self.one_hot, self.index_column, self.widen_indices = state

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
            size = max(max(class_weight, default=-1) + 1, self._classes)  # a class left out weighs 1, as in Keras
            table = torch.ones(size, dtype=like.dtype, device=like.device)
            for cls, weight in class_weight.items():
                table[cls] = weight
            self._class_weight_table = table
        labels = y_true.argmax(1) if self.one_hot else y_true.reshape(y_true.shape[0], -1)[:, 0]
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
        class_weight = normalize_class_weight(class_weight)
        self.structure = "dict" if isinstance(loss, Mapping) else "list" if isinstance(loss, (list, tuple)) else None
        # A None in a list or dict of losses leaves that output untrained (Keras's rule).
        specs = {k: v for k, v in loss.items() if v is not None} if self.structure == "dict" else \
            {i: spec for i, spec in enumerate(loss) if spec is not None} if self.structure == "list" else {None: loss}
        self.outputs = len(loss) if self.structure is not None else 1
        keys = loss if self.structure == "dict" else range(self.outputs) if self.structure else ()
        untrained = set(keys) - set(specs)
        if not specs:
            raise ValueError(f"`loss` must name at least one loss. Received: loss={loss!r}")
        self.losses = {key: _SingleLoss(spec, class_weight) for key, spec in specs.items()}
        self.weights = self._resolve_weights(loss_weights, untrained)
        self.unweighted = self.structure is not None or self.weights[None] == 1.0  # a single loss's scalar weight
        first = next(iter(self.losses.values()))
        self.spec = loss if self.structure is None else None
        self.fn = first.fn
        self.checked = False
        #: checks run with the first batch's (output, target) too, e.g. the compiled metrics' (see compile)
        self.first_batch_checks: list[Callable[[Any, Any], None]] = []

    def use_class_weight(self, class_weight: Any) -> Callable[[], None]:
        """``fit(class_weight=...)``: these weights for one fit (Keras's place for them); returns the undo.

        Example:
            >>> lc = LossComputer("cross_entropy", class_weight={0: 1.0, 1: 3.0})
            >>> undo = lc.use_class_weight({"1": 2}); lc.losses[None].class_weight
            {1: 2.0}
            >>> undo(); lc.losses[None].class_weight
            {0: 1.0, 1: 3.0}
        """
        weights = normalize_class_weight(class_weight)
        saved = [(single, single.class_weight) for single in self.losses.values()]
        for single in self.losses.values():
            single.set_class_weight(weights)

        def undo() -> None:
            for single, previous in saved:
                single.set_class_weight(previous)

        return undo

    def recheck(self) -> list[tuple[bool, ...]]:
        """Check the next batch again (a new call brings new data); returns the state for :meth:`restore_checks`.

        Example:
            >>> lc = LossComputer("mse"); _ = lc(torch.zeros(2, 1), torch.zeros(2), None)
            >>> state = lc.recheck(); lc(torch.zeros(2, 1), torch.zeros(2, 3), None)
            Traceback (most recent call last):
            ...
            ValueError: The model output and the target must have the same shape for loss 'mse'. Received: output shape (2, 1), target shape (2, 3). Reshape the target or change the model's last layer.
        """  # noqa: E501 (a doctest's expected message is one line)
        state = [single.state() for single in self.losses.values()]
        state.append((self.checked,))
        for single in self.losses.values():
            single.checked = False
        self.checked = False
        return state

    def restore_checks(self, state: list[tuple[bool, ...]]) -> None:
        """Back to the check state :meth:`recheck` returned (an evaluation inside fit leaves training's as it was)."""
        for single, saved in zip(self.losses.values(), state, strict=False):
            single.set_state(saved)
        self.checked = state[-1][0]

    def _check_first_batch(self, y_pred: Any, y_true: Any) -> None:
        self.checked = True
        if self.structure is not None:
            _check_output_count(self.structure, self.outputs, y_pred)
        elif isinstance(y_pred, torch.Tensor) and isinstance(y_true, torch.Tensor):
            for check in self.first_batch_checks:
                check(y_pred, y_true)

    def _resolve_weights(self, loss_weights: Any, untrained: set) -> dict[Any, float]:
        if loss_weights is None:
            return {key: 1.0 for key in self.losses}
        if self.structure is None:
            if isinstance(loss_weights, numbers.Real) and not isinstance(loss_weights, bool):
                return {None: float(loss_weights)}  # a scalar weight of the single output's loss, as in Keras
            raise ValueError("`loss_weights` for a single loss must be a number (its weight). Received: "
                             f"loss_weights={loss_weights!r}")
        weights = dict(loss_weights) if isinstance(loss_weights, Mapping) else dict(enumerate(loss_weights))
        weights = {key: value for key, value in weights.items() if key not in untrained}  # no loss: no weight
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
            if self.checked and self.unweighted:
                value = self.losses[None](y_pred, y_true, sample_weight)
                if type(value) is torch.Tensor and value.dim() == 0:  # the common case, without a call to _split
                    return value, _NO_COMPONENTS
                return _split(value)
            loss, parts = _split(self.losses[None](y_pred, y_true, sample_weight))  # checks the loss's inputs first
            if not self.checked:
                self._check_first_batch(y_pred, y_true)
            return (loss if self.unweighted else loss * self.weights[None]), parts
        if not self.checked:
            self._check_first_batch(y_pred, y_true)
        total, components = None, {}
        # One trained output of several (the others' losses None): a single target is that output's (Keras).
        whole_target = len(self.losses) == 1 and isinstance(y_true, torch.Tensor)
        for key, single in self.losses.items():
            target = y_true if whole_target else _pick(y_true, key, "target")
            value, parts = _split(single(_pick(y_pred, key, "output"), target, sample_weight))
            name = key if self.structure == "dict" else f"output_{key}"
            components[f"{name}_loss"] = value.detach()
            components.update({f"{name}_{k}": v for k, v in parts.items()})
            weighted = value * self.weights[key]
            total = weighted if total is None else total + weighted
        return cast(torch.Tensor, total), components  # a structure has at least one loss


def _check_output_count(structure: str, outputs: int, y_pred: Any) -> None:
    """A list of losses needs a tuple/list output with exactly that many entries (an output without a loss is
    an error: it would never be trained); a dict of losses needs its keys in the output (other keys are allowed,
    as in Keras: outputs without a loss)."""
    if y_pred is None:
        first_batch.check_output(None, "per output", None, None)
    if structure == "list" and isinstance(y_pred, (tuple, list)) and len(y_pred) != outputs:
        raise ValueError(f"The model returned {len(y_pred)} outputs but {outputs} losses were compiled. "
                         f"Received: output {first_batch.describe_structure(y_pred)}. Compile one loss per "
                         "output (loss=[...] in the order forward returns them), or return fewer outputs.")


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

