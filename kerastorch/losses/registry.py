"""The loss name registry: ``compile(loss="mse")`` and friends.

``compile(loss=...)`` accepts a registered name, an ``nn.Module`` or any
callable ``fn(y_pred, y_true)`` returning a scalar tensor (or a dict of named
scalar tensors with a ``"loss"`` key).
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .focal import FocalLoss

# Names map to factories so every compile gets a fresh module.
_REGISTRY: dict[str, Callable[[], nn.Module]] = {
    "mse": nn.MSELoss,
    "mean_squared_error": nn.MSELoss,
    "mae": nn.L1Loss,
    "mean_absolute_error": nn.L1Loss,
    "bce": nn.BCELoss,
    "binary_crossentropy": nn.BCELoss,
    "bce_with_logits": nn.BCEWithLogitsLoss,
    "cross_entropy": nn.CrossEntropyLoss,
    "sparse_categorical_crossentropy": nn.CrossEntropyLoss,
    "nll": nn.NLLLoss,
    "huber": nn.HuberLoss,
    "smooth_l1": nn.SmoothL1Loss,
    "focal": FocalLoss,
}

#: Loss names whose model outputs are logits (metrics threshold at 0, not 0.5).
LOGIT_LOSSES = frozenset({"bce_with_logits", "cross_entropy", "sparse_categorical_crossentropy"})


def register(name: str, factory: Callable[[], nn.Module]) -> None:
    """Register a loss factory under ``name`` for ``compile(loss=name)``."""
    _REGISTRY[name] = factory


def available() -> list[str]:
    """Sorted list of registered loss names."""
    return sorted(_REGISTRY)


def get(name: str) -> nn.Module:
    """Build the registered loss ``name``.

    Example:
        >>> get("mse")
        MSELoss()
    """
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(
            f"Unknown loss name {name!r}. Known names: {', '.join(available())}. "
            "Or pass an nn.Module or a function fn(y_pred, y_true).") from None
