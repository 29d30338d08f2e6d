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
which applies softmax to logits.

Example:
    >>> m = get("binary_accuracy")
    >>> m.update(torch.tensor([[0.9], [0.2]]), torch.tensor([1.0, 1.0]))
    >>> float(m.result())
    0.5
"""
from typing import Any, Callable

import torch

from .metric_base import Metric, align
from .metrics_exact import AUC, F1Score, Precision, Recall
from .validation import check_target_shape, describe

__all__ = ["AUC", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "F1Score", "FunctionMetric",
           "MeanAbsoluteError", "MeanSquaredError", "Metric", "Precision", "Recall", "RootMeanSquaredError",
           "SparseCategoricalAccuracy", "TopKAccuracy", "TorchmetricsAdapter", "available", "build", "get"]


class _Mean(Metric):
    """Weighted mean of per-element values: sum(v * w) / sum(w)."""

    def _values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, y_pred, y_true, sample_weight=None):
        if y_pred.shape != y_true.shape and check_target_shape(y_pred, y_true, f"metric {type(self).__name__}"):
            y_true = y_true.view_as(y_pred)
        self._add_mean(self._values(y_pred.detach(), y_true), sample_weight)

    def result(self):
        return self._mean()


class BinaryAccuracy(_Mean):
    """Share of elements where ``output > threshold`` equals ``target > 0.5``.

    Args:
        threshold: decision threshold; default 0.5 for probabilities, 0 for logits.
        from_logits: see the module docstring; None follows the loss.
    """

    def __init__(self, threshold: float | None = None, from_logits: bool | None = None) -> None:
        super().__init__()
        self.threshold, self.from_logits = threshold, from_logits

    def _values(self, y_pred, y_true):
        threshold = self.threshold if self.threshold is not None else (0.0 if self.from_logits else 0.5)
        return (y_pred > threshold) == (y_true > 0.5)  # bool: sums count hits without a cast


class _ClassMean(Metric):
    """Mean over samples of a per-sample 0/1 value computed from (N, C, ...) outputs."""

    def _hits(self, y_pred, y_true) -> torch.Tensor:
        raise NotImplementedError

    def update(self, y_pred, y_true, sample_weight=None):
        self._add_mean(self._hits(y_pred.detach(), y_true), sample_weight)

    def result(self):
        return self._mean()


class SparseCategoricalAccuracy(_ClassMean):
    """argmax over dim 1 equals the integer target."""

    def _hits(self, y_pred, y_true):
        if y_true.dim() == y_pred.dim() and y_true.shape[1] == 1:
            y_true = y_true.squeeze(1)
        return y_pred.argmax(1) == y_true


class CategoricalAccuracy(_ClassMean):
    """argmax of the output equals argmax of a one-hot (or soft) target."""

    def _hits(self, y_pred, y_true):
        return y_pred.argmax(1) == y_true.argmax(1)


class TopKAccuracy(_ClassMean):
    """The integer target is among the ``k`` highest outputs."""

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        self.k = k

    def _hits(self, y_pred, y_true):
        top = y_pred.topk(self.k, dim=1).indices
        return (top == y_true.long().unsqueeze(1)).any(1)


class Accuracy(Metric):
    """Binary accuracy for one output column, multiclass (sparse or one-hot) otherwise."""

    def __init__(self, from_logits: bool | None = None) -> None:
        super().__init__()
        self.from_logits = from_logits
        self._impl: Metric | None = None

    def update(self, y_pred, y_true, sample_weight=None):
        if self._impl is None:
            binary = y_pred.dim() == 1 or y_pred.shape[1] == 1
            if binary:
                self._impl = BinaryAccuracy(from_logits=self.from_logits)
            elif y_true.shape == y_pred.shape and y_true.is_floating_point():
                self._impl = CategoricalAccuracy()
            else:
                self._impl = SparseCategoricalAccuracy()
            self.update = self._impl.update  # later batches go straight to the chosen metric
        self._impl.update(y_pred, y_true, sample_weight)

    def result(self):
        return self._impl.result()

    def reset(self):
        if self._impl is not None:
            self._impl.reset()

    def sync(self):
        if self._impl is not None:
            self._impl.sync()

    def state_dict(self):
        return {} if self._impl is None else {"kind": type(self._impl).__name__, "state": self._impl.state_dict()}

    def load_state_dict(self, state):
        if state:
            kinds = {cls.__name__: cls for cls in (BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy)}
            self._impl = kinds[state["kind"]](**({"from_logits": self.from_logits}
                                                 if state["kind"] == "BinaryAccuracy" else {}))
            self._impl.load_state_dict(state["state"])
            self.update = self._impl.update


class MeanAbsoluteError(_Mean):
    def _values(self, y_pred, y_true):
        return (y_pred.float() - y_true.float()).abs()


class MeanSquaredError(_Mean):
    def _values(self, y_pred, y_true):
        return (y_pred.float() - y_true.float()).square()


class RootMeanSquaredError(MeanSquaredError):
    def result(self):
        return super().result().sqrt()


class FunctionMetric(Metric):
    """A plain ``fn(y_pred, y_true) -> tensor``, averaged over samples.

    Each batch value is weighted by the batch's number of samples, so the epoch
    value is the sample-weighted mean, exact with an uneven last batch.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def update(self, y_pred, y_true, sample_weight=None):
        value = self.fn(y_pred.detach(), align(y_pred, y_true))
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, device=y_pred.device)
        value = value.detach()
        n = y_pred.shape[0]
        self._state("total", value).add_(value if value.dim() == 0 else value.mean(), alpha=n)
        self._host_count += n

    def result(self):
        return self._mean()


class TorchmetricsAdapter(Metric):
    """Wraps a ``torchmetrics.Metric`` (its own state, update, compute, reset)."""

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self.metric = metric

    def update(self, y_pred, y_true, sample_weight=None):
        self.metric.update(y_pred.detach(), align(y_pred, y_true))

    def result(self):
        return self.metric.compute()

    def reset(self):
        self.metric.reset()

    def to(self, device):
        self.metric.to(device)
        return self

    def sync(self):
        pass  # torchmetrics synchronises itself inside compute()

    def state_dict(self):
        # torchmetrics states are lists or tensors; their own API has no portable form.
        return {}


_REGISTRY: dict[str, Callable[[], Metric]] = {
    "accuracy": Accuracy, "acc": Accuracy,
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_accuracy": TopKAccuracy,
    "mae": MeanAbsoluteError, "mse": MeanSquaredError, "rmse": RootMeanSquaredError,
    "auc": AUC, "precision": Precision, "recall": Recall, "f1": F1Score,
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
