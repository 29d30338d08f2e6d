"""kt.interpret: where a classifier goes wrong (fastai's ClassificationInterpretation, the kerastorch way).

One pass over the data, as ``model.evaluate`` takes it (tensors or arrays with ``y``, a Dataset
or DataLoader of ``(x, y)`` batches), in eval mode under ``torch.inference_mode`` on the model's
device. Per batch the predicted class, the target class and the per-sample loss stay on the
device; they are concatenated and moved to the CPU once, at the end (the train/eval mode is
restored in ``finally``). :class:`Interpretation` then answers from those three vectors.

How outputs are read (the rules kerastorch's accuracy metric uses):

* **binary**, one output column or a 1-D output: the predicted class is ``output > 0`` for
  logits and ``output > 0.5`` for probabilities. Logits when the compiled loss says so (a name
  in ``LOGIT_LOSSES``, ``nn.BCEWithLogitsLoss``, a loss with ``from_logits=True``, "focal") and
  for an uncompiled model; ``from_logits=`` overrides. Targets are 0/1 (any dtype).
* **multiclass**, ``C > 1`` columns: the predicted class is the argmax. Targets are class
  indices, shape (N,) or (N, 1), or one-hot rows of shape (N, C) (soft labels too: rows of
  non-negative values summing to 1; their argmax is the class). The outputs are taken as
  probabilities when every row of every batch is non-negative and sums to 1 (within 1e-3,
  1e-2 for float16/bfloat16 outputs), else as logits (log-probabilities read as logits give the
  same loss); ``from_logits=`` overrides.

The per-sample loss is computed by interpret itself, whatever loss was compiled, with
``reduction="none"`` against the target class: binary cross-entropy (with logits, or on the
probabilities), cross-entropy on logits, or the negative log of the target's probability. The
log of a probability is floored at -100, as in ``nn.BCELoss``.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .checks import describe, require_positive_int
from .compiling import outputs_are_logits
from .data import adapt, floating_dtype, move_to_device, unpack_batch
from .engine.reentry import entered

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

_LOG_FLOOR = -100.0  # nn.BCELoss's floor of log(p)
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def interpret(model: nn.Module, x: Any, y: Any = None, batch_size: int | None = None,
              class_names: Sequence[Any] | None = None, *, from_logits: bool | None = None) -> Interpretation:
    """Predict over labelled data once and return an :class:`Interpretation` of the mistakes.

    Args:
        model: a kerastorch Model (its ``predict_step``, compiled device and precision) or any
            ``nn.Module`` returning class scores: shape (N,) or (N, 1) for binary, (N, C) for C classes.
        x, y: the data, as ``model.evaluate`` takes it: tensors / arrays / DataFrames with ``y``,
            or a Dataset / DataLoader / generator of ``(x, y)`` batches in ``x`` alone (a sample
            weight in the batch is ignored). Positions in the result are the iteration order.
        batch_size: samples per batch for in-memory data (default 32).
        class_names: one name per class (default "0" .. "C-1"; binary: 2 classes).
        from_logits: whether the outputs are logits; default: see the module docstring.

    Returns:
        An :class:`Interpretation` with ``preds``, ``targets`` and ``losses`` on the CPU.

    Raises:
        ValueError: no targets, targets that are not class labels (e.g. regression), an output
            that is not (N,) / (N, C), or ``class_names`` of the wrong length.

    Example:
        >>> import torch; from torch import nn; import kerastorch as kt
        >>> net = kt.Model.wrap(nn.Linear(2, 2, bias=False)); _ = nn.init.eye_(net.weight)
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [3.0, 1.0]])
        >>> interp = kt.interpret(net, x, torch.tensor([0, 1, 0, 0]), class_names=["cat", "dog"])
        >>> interp.preds.tolist(), interp
        ([0, 1, 1, 0], Interpretation(n=4, classes=2, accuracy=0.7500))
    """
    if y is None and not _is_batch_source(x):
        raise ValueError("`y` must be given when `x` is in-memory data (tensors, arrays): interpret compares "
                         f"predictions with the targets. Received: y=None with x={describe(x)}. Pass "
                         "interpret(model, x, y), or a Dataset / DataLoader of (x, y) batches.")
    received = f"y={describe(y)}" if y is not None else f"the targets of x={type(x).__name__}"
    source = adapt(x, y, batch_size=batch_size, shuffle=False, float_dtype=floating_dtype(model))
    config = getattr(model, "_config", None)
    binary_logits = from_logits if from_logits is not None else (
        config is None or config.loss_spec is None or outputs_are_logits(config.loss_spec))
    collector = _Collector(binary_logits, from_logits)
    with entered(model, "interpret"):
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                _collect(model, source, collector, bool(getattr(config, "channels_last", False)))
        finally:
            model.train(was_training)
    return collector.finish(class_names, received)


def _is_batch_source(x: Any) -> bool:
    """True for what brings its own targets: a Dataset, a DataLoader, a generator or another batch iterable."""
    if isinstance(x, (DataLoader, Dataset, Iterator)):
        return True
    in_memory = isinstance(x, (torch.Tensor, np.ndarray, tuple, list, dict)) or hasattr(x, "to_numpy")
    return not in_memory and hasattr(x, "__iter__")


def _device(model: nn.Module) -> torch.device:
    """A kerastorch Model's device; else the first parameter's (CPU if none)."""
    first = next(model.parameters(), None)
    device = getattr(model, "device", first.device if first is not None else None)
    return device if isinstance(device, torch.device) else torch.device("cpu")


def _collect(model: nn.Module, source: Any, collector: _Collector, channels_last: bool) -> None:
    """Run the model over ``source`` and hand each batch's output and targets to ``collector``."""
    device = _device(model)
    step_runner = getattr(model, "_step_runner", None)  # a kerastorch Model: its step, through its wrappers
    predict_step = step_runner("predict") if step_runner is not None else None
    for batch in source:
        batch = move_to_device(batch, device, channels_last=channels_last)
        inputs, targets, _ = unpack_batch(batch)
        if targets is None:
            raise ValueError("The batches of `x` must hold targets, (x, y) pairs, for interpret. Received: a "
                             f"batch without y ({describe(batch)}). Yield (x, y) from the Dataset or generator.")
        if predict_step is not None:
            output = predict_step(batch)
        elif isinstance(inputs, (tuple, list)):
            output = model(*inputs)
        else:
            output = model(**inputs) if isinstance(inputs, dict) else model(inputs)
        collector.add(output, targets)


class _Collector:
    """Per-batch predictions, targets and losses, kept on the device until :meth:`finish`."""

    def __init__(self, binary_logits: bool, from_logits: bool | None) -> None:
        self.binary_logits, self.from_logits = binary_logits, from_logits
        self.classes: int | None = None
        self.preds: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.losses: list[torch.Tensor] = []       # logits' (or binary) losses
        self.prob_losses: list[torch.Tensor] = []  # multiclass, read as probabilities
        self.valid: list[torch.Tensor] = []        # per batch: the targets are class labels
        self.probabilities: list[torch.Tensor] = []  # per batch: every row a distribution

    def add(self, output: Any, y: Any) -> None:
        if not isinstance(output, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("interpret needs one tensor of class scores from the model and one tensor of targets "
                            f"per batch. Received: output={describe(output)}, y={describe(y)}")
        if output.dim() not in (1, 2) or output.dim() == 2 and output.shape[1] == 0:
            raise ValueError("The model's output must be class scores of shape (N,) or (N, 1) for binary, (N, C) "
                             f"for C classes. Received: output={describe(output)}")
        classes = 2 if output.dim() == 1 or output.shape[1] == 1 else output.shape[1]
        if self.classes is not None and classes != self.classes:
            raise ValueError(f"The model's output must have the same number of classes in every batch. Received: "
                             f"{self.classes} classes, then output={describe(output)}")
        self.classes = classes
        scores = output if output.dtype in (torch.float32, torch.float64) else output.float()
        y = y.float() if y.dtype == torch.bool else y
        if classes == 2 and (output.dim() == 1 or output.shape[1] == 1):
            self._add_binary(scores.reshape(-1), _label_column(y, output))
        else:
            self._add_multiclass(scores, y, output.dtype in _LOW_PRECISION)

    def _add_binary(self, scores: torch.Tensor, y: torch.Tensor) -> None:
        self.valid.append(((y == 0) | (y == 1)).all())
        target = (y > 0.5).long()
        if self.binary_logits:
            loss = F.binary_cross_entropy_with_logits(scores, target.to(scores.dtype), reduction="none")
            pred = scores > 0
        else:
            loss = F.binary_cross_entropy(scores.clamp(0, 1), target.to(scores.dtype), reduction="none")
            pred = scores > 0.5
        self.preds.append(pred.long())
        self.targets.append(target)
        self.losses.append(loss)

    def _add_multiclass(self, scores: torch.Tensor, y: torch.Tensor, low_precision: bool) -> None:
        classes = scores.shape[1]
        if y.shape == scores.shape:  # one-hot (or soft) rows
            rows = y.to(scores.dtype)
            self.valid.append((rows >= 0).all() & ((rows.sum(1) - 1).abs() <= 1e-3).all())
            target = rows.argmax(1)
        else:
            indices = _label_column(y, scores)
            self.valid.append(((indices == indices.round()) & (indices >= 0) & (indices < classes)).all()
                              if indices.is_floating_point() else ((indices >= 0) & (indices < classes)).all())
            target = indices.long().clamp(0, classes - 1)  # out of range: reported at the end, no device assert
        self.preds.append(scores.argmax(1))
        self.targets.append(target)
        self.losses.append(F.cross_entropy(scores, target, reduction="none"))
        log_probabilities = scores.clamp_min(0).log().clamp_min(_LOG_FLOOR)
        self.prob_losses.append(F.nll_loss(log_probabilities, target, reduction="none"))
        tolerance = 1e-2 if low_precision else 1e-3
        self.probabilities.append((scores >= 0).all() & ((scores.sum(1) - 1).abs() <= tolerance).all())

    def finish(self, class_names: Sequence[Any] | None, received: str) -> Interpretation:
        """Concatenate, read the two flags and move the results to the CPU, once, after the pass."""
        if self.classes is None:
            raise ValueError("`x` must hold at least one sample for interpret. Received: no batches.")
        names = _class_names(class_names, self.classes)
        flags = torch.stack([torch.stack(self.valid).all(), torch.stack(self.probabilities or self.valid).all()])
        valid, probabilities = flags.tolist()  # host-sync: once, after the pass
        if not valid:
            raise ValueError(
                f"`y` must hold class labels: class indices in [0, {self.classes}) or one-hot rows of "
                f"{self.classes} columns (binary: 0/1). interpret is for single-label classification. Received: "
                f"{received} with other values (regression targets?). For a regression model use evaluate().")
        logits = self.binary_logits if not self.prob_losses else \
            self.from_logits if self.from_logits is not None else not probabilities
        losses = torch.cat(self.prob_losses if self.prob_losses and not logits else self.losses)
        preds, targets = torch.cat(self.preds).cpu(), torch.cat(self.targets).cpu()  # host-sync: the one copy
        return Interpretation(preds, targets, losses.cpu(), names, from_logits=logits)


def _label_column(y: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """One label per sample: ``y`` of shape (N,) or (N, 1) as (N,)."""
    if y.dim() in (1, 2) and y.shape[0] == output.shape[0] and (y.dim() == 1 or y.shape[1] == 1):
        return y.reshape(-1)
    expected = "(N,) or (N, 1)" if output.dim() == 1 or output.shape[1] == 1 else \
        f"(N,) class indices or (N, {output.shape[1]}) one-hot rows"
    raise ValueError(f"`y` must have shape {expected} for an output of shape {tuple(output.shape)}. "
                     f"Received: y={describe(y)}")


def _class_names(class_names: Sequence[Any] | None, classes: int) -> list[str]:
    if class_names is None:
        return [str(index) for index in range(classes)]
    names = [str(name) for name in class_names]
    if len(names) != classes or len(set(names)) != classes:
        raise ValueError(f"`class_names` must hold {classes} different names, one per class of the model's "
                         f"output. Received: class_names={list(class_names)!r}")
    return names


class Interpretation:
    """Predictions, targets and per-sample losses of a classifier; built by :func:`interpret`.

    Attributes:
        preds, targets: int64 CPU tensors of class indices, one per sample (in the data's order).
        losses: the per-sample loss (see :mod:`kerastorch.interpret`), a float CPU tensor.
        class_names: the name of each class, a list of str.
        from_logits: whether the losses were computed from logits (else from probabilities).

    Example:
        >>> interp = Interpretation(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]),
        ...                         torch.tensor([0.1, 0.2, 1.5]), ["a", "b"])
        >>> interp.most_confused()
        [('a', 'b', 1)]
    """

    def __init__(self, preds: torch.Tensor, targets: torch.Tensor, losses: torch.Tensor, class_names: Sequence[str],
                 from_logits: bool = True) -> None:
        self.preds, self.targets, self.losses = preds, targets, losses
        self.class_names = list(class_names)
        self.from_logits = from_logits

    @property
    def accuracy(self) -> float:
        """The share of samples whose predicted class is the target."""
        return float((self.preds == self.targets).double().mean())

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        return f"Interpretation(n={len(self)}, classes={len(self.class_names)}, accuracy={self.accuracy:.4f})"

    def _repr_html_(self) -> str:
        return (f"<b>Interpretation</b>: {len(self)} samples, {len(self.class_names)} classes, "
                f"accuracy {self.accuracy:.4f}")

    def _counts(self) -> np.ndarray:
        classes = len(self.class_names)
        pairs = self.targets.numpy().astype(np.int64) * classes + self.preds.numpy()
        return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)

    def confusion_matrix(self, plot: bool = False) -> pd.DataFrame | Figure:
        """Counts of (true class, predicted class): rows are true classes, columns predicted ones.

        Args:
            plot: return a matplotlib figure of the matrix (counts in the cells) instead of the table.

        Returns:
            A DataFrame labelled with the class names (what ``sklearn.metrics.confusion_matrix``
            gives with ``labels=range(C)``), or a pyplot-free Figure that Jupyter shows as one PNG.

        Example:
            >>> Interpretation(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.zeros(3),
            ...                ["a", "b"]).confusion_matrix().to_numpy().tolist()
            [[1, 1], [0, 1]]
        """
        if plot:
            from .interpret_plots import plot_confusion_matrix
            return plot_confusion_matrix(self._counts(), self.class_names)
        import pandas as pd

        return pd.DataFrame(self._counts(), index=pd.Index(self.class_names, name="actual"),
                            columns=pd.Index(self.class_names, name="predicted"))

    def classification_report(self) -> pd.DataFrame:
        """Precision, recall, F1 and support per class, then accuracy, macro and weighted averages.

        The numbers of ``sklearn.metrics.classification_report(targets, preds, labels=range(C),
        output_dict=True, zero_division=0)``, computed here from the confusion matrix. As in
        sklearn's printed report, the "accuracy" row holds the accuracy under "f1-score" (precision
        and recall are NaN) and the number of samples as support.

        Example:
            >>> report = Interpretation(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.zeros(3),
            ...                         ["a", "b"]).classification_report()
            >>> float(report.loc["a", "recall"]), round(float(report.loc["accuracy", "f1-score"]), 4)
            (0.5, 0.6667)
        """
        import pandas as pd

        counts = self._counts().astype(np.float64)
        hits, support, predicted = np.diag(counts), counts.sum(1), counts.sum(0)
        precision, recall, f1 = (np.divide(top, bottom, out=np.zeros_like(hits), where=bottom > 0)
                                 for top, bottom in ((hits, predicted), (hits, support),
                                                     (2 * hits, support + predicted)))
        total = support.sum()
        frame = pd.DataFrame({"precision": precision, "recall": recall, "f1-score": f1, "support": support},
                             index=self.class_names)
        frame.loc["accuracy"] = [np.nan, np.nan, hits.sum() / total, total]
        frame.loc["macro avg"] = [precision.mean(), recall.mean(), f1.mean(), total]
        frame.loc["weighted avg"] = [*(np.average(v, weights=support) for v in (precision, recall, f1)), total]
        return frame.astype({"support": np.int64})

    def top_losses(self, k: int | None = 9) -> pd.DataFrame:
        """The ``k`` samples with the largest loss (all of them for ``k=None``; at most all).

        Returns:
            A DataFrame with columns ``index`` (the sample's position in the data), ``loss``,
            ``pred`` and ``target`` (class indices; names in ``class_names``), sorted by loss,
            largest first, equal losses by index.

        Example:
            >>> Interpretation(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.tensor([0.1, 0.2, 1.5]),
            ...                ["a", "b"]).top_losses(2)["index"].tolist()
            [2, 1]
        """
        import pandas as pd

        if k is not None:
            require_positive_int("k", k)
        order = torch.sort(self.losses, descending=True, stable=True).indices[:k]
        return pd.DataFrame({"index": order.numpy(), "loss": self.losses[order].numpy(),
                             "pred": self.preds[order].numpy(), "target": self.targets[order].numpy()})

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """``(true class, predicted class, count)`` of the mistakes made at least ``min_count`` times.

        Sorted by count, largest first; equal counts in class order.

        Example:
            >>> Interpretation(torch.tensor([1, 1, 0]), torch.tensor([0, 0, 1]), torch.zeros(3),
            ...                ["a", "b"]).most_confused()
            [('a', 'b', 2), ('b', 'a', 1)]
        """
        require_positive_int("min_count", min_count)
        counts = self._counts()
        pairs = [(int(counts[t, p]), t, p) for t in range(len(counts)) for p in range(len(counts))
                 if t != p and counts[t, p] >= min_count]
        pairs.sort(key=lambda pair: (-pair[0], pair[1], pair[2]))
        return [(self.class_names[t], self.class_names[p], count) for count, t, p in pairs]

    def plot_top_losses(self, x: Any, k: int = 9) -> Figure:
        """A grid of the ``k`` images with the largest loss, each titled "pred/target/loss".

        Args:
            x: the inputs, in the order given to :func:`interpret`: a tensor or array of images,
                (N, C, H, W) with 1 or 3 channels or (N, H, W). Colour images are scaled to [0, 1]
                each; grey ones are drawn with a grey colour map over their own range.
            k: how many images (at most all).

        Returns:
            A pyplot-free matplotlib Figure (one PNG in Jupyter), one axes per image.

        Example:
            >>> interp = Interpretation(torch.tensor([0, 1]), torch.tensor([1, 1]), torch.tensor([2.0, 0.1]),
            ...                         ["a", "b"])
            >>> interp.plot_top_losses(torch.rand(2, 3, 4, 4), k=1).axes[0].get_title()
            'a/b/2.00'
        """
        from .interpret_plots import plot_top_losses

        require_positive_int("k", k)
        return plot_top_losses(x, self.top_losses(k), self.class_names, len(self))
