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
from __future__ import annotations

from typing import Any, Callable

import torch

from .distributed import all_gather_cat, all_reduce_sum
from .validation import check_target_shape, describe


def _acc_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps long epochs exact; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _align(y_pred: Any, y_true: Any) -> Any:
    """Keras's one alignment: a (N,) target against an (N, 1) output becomes (N, 1)."""
    if isinstance(y_pred, torch.Tensor) and isinstance(y_true, torch.Tensor) and y_pred.dim() == 2 \
            and y_pred.shape[1] == 1 and y_true.dim() == 1 and y_true.shape[0] == y_pred.shape[0]:
        return y_true.view_as(y_pred)
    return y_true


def _per_sample(sample_weight: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape (N,) sample weights to broadcast over ``like``'s trailing dims."""
    return sample_weight.reshape(sample_weight.shape[0], *([1] * (like.dim() - 1)))


class Metric:
    """Base class: accumulate with :meth:`update`, read with :meth:`result`.

    Subclasses keep their state in tensors created by :meth:`_zeros` so that
    :meth:`reset` zeroes them in place instead of allocating each epoch.
    """

    from_logits: bool | None = None

    def __init__(self) -> None:
        self._states: dict[str, torch.Tensor] = {}

    def _state(self, name: str, like: torch.Tensor, size: int = 1) -> torch.Tensor:
        state = self._states.get(name)
        if state is None or state.numel() != size:
            state = torch.zeros(size if size > 1 else (), dtype=_acc_dtype(like.device), device=like.device)
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

    def to(self, device: torch.device) -> "Metric":
        self._states = {k: v.to(device) for k, v in self._states.items()}
        return self

    def sync(self) -> None:
        """Sum the states over ranks (every built-in state is a sum), before result()."""
        for state in self._states.values():
            all_reduce_sum(state)

    def state_dict(self) -> dict[str, Any]:
        """Accumulated state (for mid-epoch checkpoints), as CPU tensors."""
        return {k: v.detach().cpu().clone() for k, v in self._states.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = next(iter(self._states.values())).device if self._states else torch.device("cpu")
        self._states = {k: v.to(device) for k, v in state.items()}


class _Mean(Metric):
    """Weighted mean of per-element values: sum(v * w) / sum(w)."""

    def _values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, y_pred, y_true, sample_weight=None):
        if check_target_shape(y_pred, y_true, f"metric {type(self).__name__}"):
            y_true = y_true.view_as(y_pred)
        values = self._values(y_pred.detach(), y_true)
        total, count = self._state("total", values), self._state("count", values)
        if sample_weight is None:
            total.add_(values.sum())
            count.add_(values.numel())
        else:
            weights = _per_sample(sample_weight, values).expand_as(values)
            total.add_((values * weights).sum())
            count.add_(weights.sum())

    def result(self):
        return self._states["total"] / self._states["count"]


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
        return ((y_pred > threshold) == (y_true > 0.5)).to(y_pred.dtype if y_pred.is_floating_point() else torch.float32)


class _ClassMean(Metric):
    """Mean over samples of a per-sample 0/1 value computed from (N, C, ...) outputs."""

    def _hits(self, y_pred, y_true) -> torch.Tensor:
        raise NotImplementedError

    def update(self, y_pred, y_true, sample_weight=None):
        hits = self._hits(y_pred.detach(), y_true).float()
        total, count = self._state("total", hits), self._state("count", hits)
        if sample_weight is None:
            total.add_(hits.sum())
            count.add_(hits.numel())
        else:
            weights = _per_sample(sample_weight, hits).expand_as(hits)
            total.add_((hits * weights).sum())
            count.add_(weights.sum())

    def result(self):
        return self._states["total"] / self._states["count"]


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


class MeanAbsoluteError(_Mean):
    def _values(self, y_pred, y_true):
        return (y_pred.float() - y_true.float()).abs()


class MeanSquaredError(_Mean):
    def _values(self, y_pred, y_true):
        return (y_pred.float() - y_true.float()).square()


class RootMeanSquaredError(MeanSquaredError):
    def result(self):
        return super().result().sqrt()


class _Confusion(Metric):
    """Counts of true/false positives and negatives; exact precision, recall, F1.

    Binary when the output has one column (or matches the target's shape),
    otherwise multiclass with integer targets and a macro average over the
    classes that occur (in the targets or the predictions).
    """

    def __init__(self, threshold: float | None = None, from_logits: bool | None = None) -> None:
        super().__init__()
        self.threshold, self.from_logits = threshold, from_logits

    def update(self, y_pred, y_true, sample_weight=None):
        y_pred = y_pred.detach()
        binary = y_pred.dim() == 1 or y_pred.shape[1] == 1 or y_pred.shape == y_true.shape
        if binary:
            if check_target_shape(y_pred, y_true, f"metric {type(self).__name__}"):
                y_true = y_true.view_as(y_pred)
            threshold = self.threshold if self.threshold is not None else (0.0 if self.from_logits else 0.5)
            pred, true, classes = (y_pred > threshold).long().flatten(), (y_true > 0.5).long().flatten(), 2
        else:
            classes = y_pred.shape[1]
            pred, true = y_pred.argmax(1).flatten(), y_true.long().flatten()
        n = pred.numel()
        weights = torch.ones(n, dtype=_acc_dtype(y_pred.device), device=y_pred.device) \
            if sample_weight is None else \
            sample_weight.to(_acc_dtype(y_pred.device)).repeat_interleave(n // sample_weight.numel())
        # index_add_ with 0/1 weights instead of boolean masks or bincount:
        # both of those sync with the host on CUDA to size their output.
        self._state("tp", y_pred, classes).index_add_(0, true, weights * (pred == true))
        self._state("pred", y_pred, classes).index_add_(0, pred, weights)
        self._state("true", y_pred, classes).index_add_(0, true, weights)
        self._binary = binary

    def state_dict(self):
        state = super().state_dict()
        if state:
            state["binary"] = torch.tensor(self._binary)
        return state

    def load_state_dict(self, state):
        state = dict(state)
        if "binary" in state:
            self._binary = bool(state.pop("binary"))
        super().load_state_dict(state)

    def _per_class(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tp, pred, true = self._states["tp"], self._states["pred"], self._states["true"]
        if self._binary:  # the positive class only
            return tp[1:], pred[1:], true[1:]
        present = (pred + true) > 0
        return tp[present], pred[present], true[present]

    @staticmethod
    def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        # 0/0 counts as 0, the usual convention (no positives predicted -> precision 0).
        return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num)).mean()


class Precision(_Confusion):
    def result(self):
        tp, pred, _ = self._per_class()
        return self._ratio(tp, pred)


class Recall(_Confusion):
    def result(self):
        tp, _, true = self._per_class()
        return self._ratio(tp, true)


class F1Score(_Confusion):
    def result(self):
        tp, pred, true = self._per_class()
        return self._ratio(2 * tp, pred + true)


def _binary_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ROC AUC by the rank-sum formula, averaging the ranks of tied scores."""
    _, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    last_rank = counts.cumsum(0).to(torch.float64)
    ranks = (last_rank - (counts - 1) / 2.0)[inverse]
    positives = labels.sum().to(torch.float64)
    negatives = labels.numel() - positives
    rank_sum = ranks[labels].sum()
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


class AUC(Metric):
    """Exact ROC AUC over the epoch (binary; one-vs-rest macro for multiclass).

    Keeps the epoch's outputs on the device (one detached tensor per batch) and
    ranks them once in :meth:`result`. Sample weights are ignored.
    """

    def __init__(self, from_logits: bool | None = None) -> None:
        super().__init__()
        self.from_logits = from_logits
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def update(self, y_pred, y_true, sample_weight=None):
        self._scores.append(y_pred.detach())
        self._labels.append(y_true.detach())

    def result(self):
        scores, labels = torch.cat(self._scores).float(), torch.cat(self._labels)
        if scores.dim() == 1 or scores.shape[1] == 1:
            return _binary_auc(scores.flatten(), labels.flatten() > 0.5)
        if self.from_logits:
            scores = scores.softmax(1)
        labels = labels.long().flatten()
        aucs = [_binary_auc(scores[:, c], labels == c) for c in range(scores.shape[1])
                if 0 < int((labels == c).sum()) < labels.numel()]
        return torch.stack(aucs).mean()

    def reset(self):
        self._scores, self._labels = [], []

    def sync(self):
        if self._scores:
            self._scores = [all_gather_cat(torch.cat(self._scores))]
            self._labels = [all_gather_cat(torch.cat(self._labels))]

    def state_dict(self):
        if not self._scores:
            return {}
        return {"scores": torch.cat(self._scores).cpu(), "labels": torch.cat(self._labels).cpu()}

    def load_state_dict(self, state):
        self.reset()
        if state:
            self._scores, self._labels = [state["scores"]], [state["labels"]]


class FunctionMetric(Metric):
    """A plain ``fn(y_pred, y_true) -> tensor``, averaged over samples.

    Each batch value is weighted by the batch's number of samples, so the epoch
    value is the sample-weighted mean, exact with an uneven last batch.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def update(self, y_pred, y_true, sample_weight=None):
        value = self.fn(y_pred.detach(), _align(y_pred, y_true))
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, device=y_pred.device)
        self._state("total", value).add_(value.detach().to(_acc_dtype(value.device)).mean(), alpha=y_pred.shape[0])
        self._state("count", value).add_(y_pred.shape[0])

    def result(self):
        return self._states["total"] / self._states["count"]


class TorchmetricsAdapter(Metric):
    """Wraps a ``torchmetrics.Metric`` (its own state, update, compute, reset)."""

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self.metric = metric

    def update(self, y_pred, y_true, sample_weight=None):
        self.metric.update(y_pred.detach(), _align(y_pred, y_true))

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
