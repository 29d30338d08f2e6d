"""Metrics as on-device accumulators, read once per epoch.

Every metric keeps running sums (and counts) as device tensors and updates
them without a host sync; ``result()`` returns a 0-dim device tensor. Epoch
values therefore equal the value computed on all the data at once, also when
the last batch is smaller, and AUC/precision/recall/F1 are exact over the
epoch, not means of per-batch values.

**Logits or probabilities.** Threshold metrics need to know what the model
outputs. The rule: a metric with ``from_logits=None`` (the default) takes it
from the compiled loss: ``"bce_with_logits"``, ``"cross_entropy"``, and loss
objects with ``from_logits=True`` (e.g. ``FocalLoss``) mean logits, so binary
predictions are ``output > 0``; anything else means probabilities, so
``output > 0.5``. Pass ``BinaryAccuracy(from_logits=True)`` (etc.) to override.
Argmax-based metrics and AUC are unaffected by the rule, except multiclass AUC,
which applies softmax to logits. Without a compiled loss (a model that computes its
own, :mod:`kerastorch.losses.model_loss`) the rule reads probabilities: give binary
metrics on a single logit ``from_logits=True``.

**Language models.** ``"perplexity"`` (:class:`Perplexity`) is exp of the epoch's mean
token cross-entropy from logits ``(N, T, V)`` and labels ``(N, T)``, shifted by one
position as a causal language model's loss is (``Perplexity(shift=False)`` otherwise),
labels -100 left out.

Example:
    >>> import torch
    >>> m = get("binary_accuracy")
    >>> m.update(torch.tensor([[0.9], [0.2]]), torch.tensor([1.0, 1.0]))
    >>> float(m.result())
    0.5
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..checks import describe
from .accuracy import Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKAccuracy
from .adapters import FunctionMetric, TorchmetricsAdapter
from .auc import AUC
from .base import MeanMetric, Metric
from .confusion import F1Score, Precision, Recall
from .perplexity import Perplexity
from .regression import MeanAbsoluteError, MeanSquaredError, RootMeanSquaredError

__all__ = ["AUC", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "F1Score", "FunctionMetric",
           "MeanAbsoluteError", "MeanMetric", "MeanSquaredError", "Metric", "Perplexity", "Precision", "Recall",
           "RootMeanSquaredError", "SparseCategoricalAccuracy", "TopKAccuracy", "TorchmetricsAdapter", "available",
           "build", "get"]


_REGISTRY: dict[str, Callable[[], Metric]] = {
    "accuracy": Accuracy, "acc": Accuracy,
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_accuracy": TopKAccuracy,
    "mae": MeanAbsoluteError, "mse": MeanSquaredError, "rmse": RootMeanSquaredError,
    "auc": AUC, "precision": Precision, "recall": Recall, "f1": F1Score,
    "perplexity": Perplexity,
}


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(spec: Any) -> Metric:
    """Build a metric from a name, a Metric, a torchmetrics.Metric or a function.

    Example:
        >>> type(get("auc")).__name__
        'AUC'
    """
    if isinstance(spec, str):
        if spec not in _REGISTRY:
            raise ValueError(f"Unknown metric name {spec!r}. Known names: {', '.join(available())}. "
                             "Or pass a function fn(y_pred, y_true) or a torchmetrics.Metric.")
        return _REGISTRY[spec]()
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, type):
        raise TypeError(f"A metric must be an object, not a class: pass {spec.__name__}() (with parentheses). "
                        f"Received: {spec!r}")
    if type(spec).__module__.startswith("torchmetrics") or hasattr(spec, "compute") and hasattr(spec, "update"):
        return TorchmetricsAdapter(spec)
    if callable(spec):
        return FunctionMetric(spec)
    raise TypeError(f"A metric must be a name, a function fn(y_pred, y_true), a kerastorch "
                    f"Metric or a torchmetrics.Metric. Received: {describe(spec)}")


def build(metrics: Any, from_logits: bool) -> dict[str, Metric]:
    """Resolve ``compile(metrics=...)``: a dict ``{name: spec}`` or a list of specs."""
    if metrics is None:
        return {}
    if isinstance(metrics, dict):
        named = list(metrics.items())
    elif isinstance(metrics, (list, tuple)):
        named = [(_default_name(spec), spec) for spec in metrics]
    else:
        raise TypeError(f"`metrics` must be a dict {{name: metric}} or a list. Received: metrics={metrics!r}")
    built = {}
    for name, spec in named:
        if name in ("loss", "lr") or name in built:
            raise ValueError(f"Metric name {name!r} is reserved or duplicated; choose another name.")
        metric = get(spec)
        if getattr(metric, "from_logits", False) is None:
            metric.from_logits = from_logits
        built[name] = metric
    return built


def _default_name(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    return getattr(spec, "__name__", None) or type(spec).__name__.lower()
