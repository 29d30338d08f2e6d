"""Models that compute their own loss: the loss and the predictions in a model's output.

A Hugging Face model given ``labels`` returns its loss with its logits, in a ``ModelOutput``
(``output.loss``, ``output.logits``). When ``compile`` got no ``loss``, ``fit`` and ``evaluate``
train on and log that loss; the compiled metrics get the predictions and the targets.

Which outputs carry a loss (:func:`split_output`), and what the predictions are:

* a mapping with a tensor ``"loss"`` entry (a dict, or a transformers ``ModelOutput``, which is an
  ``OrderedDict`` with attribute access): the predictions are its ``"logits"`` entry, else its
  first entry after the loss. A ``ModelOutput`` without a loss (no labels given) still gives its
  logits as the predictions; any other mapping without a ``"loss"`` entry is left as it is;
* any other object with a tensor ``.loss`` attribute (not a tuple): the predictions are its ``.logits``;
* a tuple or list ``(loss, predictions, ...)`` whose first element is a 0-dim floating tensor, when
  the batch has targets (``return_dict=False`` models given labels): the predictions are its second element.

Anything else (a tensor, other tuples, dicts and objects) carries no loss and is the predictions itself.

**Compiled loss and model loss.** When both exist, the compiled loss wins: it gets the predictions
(the logits, not the whole output; a multi-output compiled loss, a dict or list, gets the output as
it is), it is what training minimises and what ``loss`` logs, and the model's loss is ignored. The
first training batch of each ``fit`` says so with a warning. Compile without ``loss`` to train on
the model's own loss, or give the targets as ``"y"`` instead of ``"labels"`` so that the model
computes none.

**predict** returns the predictions of such an output (:func:`split_output`'s first element): the
logits tensor of a ``ModelOutput`` or of a dict with a ``"loss"`` entry, with or without labels in
the batch. Tensors, tuples and other outputs are returned as the model gives them.

Example:
    >>> out = {"loss": torch.tensor(0.75), "logits": torch.zeros(2, 3)}
    >>> predictions, loss = split_output(out)
    >>> predictions.shape, float(loss)
    (torch.Size([2, 3]), 0.75)
"""
from __future__ import annotations

import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..checks import reraise_with
from .first_batch import describe_structure

NO_LOSS = ("No loss was compiled. Call compile(loss=...) before fit/evaluate, or let the model compute "
           "its own loss: return a dict or ModelOutput with a 'loss' entry (a Hugging Face model does when "
           "it gets labels: give dict batches a 'labels' entry, e.g. {'input_ids': ..., 'labels': ...}).")

# Sessions (one per fit) already told that the compiled loss wins, and whose metrics were checked.
_WARNED: weakref.WeakSet = weakref.WeakSet()
_CHECKED: weakref.WeakSet = weakref.WeakSet()


def _is_loss(value: Any) -> bool:
    return isinstance(value, torch.Tensor)


def _mapping_predictions(output: Mapping) -> Any:
    """The ``"logits"`` entry, else the first entry after ``"loss"`` (None when there is none)."""
    logits = output.get("logits")
    if logits is not None:
        return logits
    return next((value for key, value in output.items() if key != "loss" and value is not None), None)


def split_output(output: Any, y: Any = None) -> tuple[Any, torch.Tensor | None]:
    """``(predictions, model_loss)`` of a model's output; ``model_loss`` is None when it carries none.

    ``y`` is the batch's target: a ``(loss, logits, ...)`` tuple is read as one only when it is given.

    Example:
        >>> from collections import OrderedDict
        >>> plain = OrderedDict(out=torch.ones(1))  # a mapping without a loss is left as it is
        >>> split_output(plain) == (plain, None)
        True
        >>> predictions, loss = split_output((torch.tensor(0.5), torch.ones(2, 2)), y=torch.zeros(2))
        >>> predictions.shape, float(loss)
        (torch.Size([2, 2]), 0.5)
        >>> split_output((torch.tensor(0.5), torch.ones(2, 2)))[1] is None  # no targets: a plain tuple
        True
    """
    if isinstance(output, Mapping):
        loss = output.get("loss")
        if _is_loss(loss):
            return _mapping_predictions(output), loss
        if callable(getattr(output, "to_tuple", None)):  # a transformers ModelOutput without a loss
            return _mapping_predictions(output), None
        return output, None
    if isinstance(output, (tuple, list)):
        first = output[0] if len(output) >= 2 else None
        if y is not None and isinstance(first, torch.Tensor) and first.dim() == 0 and first.is_floating_point():
            return output[1], first
        return output, None
    loss = getattr(output, "loss", None)
    if _is_loss(loss):
        return getattr(output, "logits", None), loss
    return output, None


def model_predictions(output: Any, y: Any = None) -> Any:
    """What the compiled metrics (and predict) get from ``output``: see :func:`split_output`.

    Example:
        >>> model_predictions({"loss": torch.tensor(1.0), "logits": torch.ones(1, 2)})
        tensor([[1., 1.]])
    """
    predicted = split_output(output, y)[0]
    return output if predicted is None else predicted


def carries_loss(output: Any, y: Any) -> bool:
    """True when ``output`` holds the model's own loss (:func:`split_output`).

    Example:
        >>> carries_loss({"loss": torch.tensor(1.0)}, None), carries_loss({"logits": torch.ones(1)}, None)
        (True, False)
    """
    return split_output(output, y)[1] is not None


def loss_and_logs(output: Any, y: Any, sample_weight: torch.Tensor | None, config: Any,
                  session: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``Model.compute_loss`` without a compiled loss or for an output that is not a tensor: ``(objective, logs)``.

    The compiled loss when there is one (see the module docstring), else the model's own loss (a
    RuntimeError when there is none either). On the first training batch of a fit, before any
    optimizer step, the compiled metrics check the predictions and targets they will get.

    Args:
        output: the model's output for the batch.
        y, sample_weight: the batch's targets and sample weights.
        config: the model's ``CompileConfig`` (or None).
        session: the running fit's session (None outside fit): the warning and the metric checks run once per fit.

    Example:
        >>> loss, logs = loss_and_logs({"loss": torch.tensor(0.25), "logits": torch.ones(2, 2)}, torch.ones(2),
        ...                            None, None, None)
        >>> float(loss), sorted(logs)
        (0.25, ['loss'])
    """
    predicted, own = split_output(output, y)
    compiled = None if config is None else config.loss
    if compiled is not None:
        if own is not None and not compiled.checked and session is not None and session not in _WARNED:
            _warn_compiled_wins(compiled, output)
            _WARNED.add(session)
        loss, components = compiled(output if compiled.structure is not None else predicted, y, sample_weight)
        return loss, {"loss": loss.detach(), **components}
    if own is None:
        received = "" if isinstance(output, torch.Tensor) else f" Received: output {_describe(output)}."
        raise RuntimeError(NO_LOSS + received)
    if own.dim() != 0:
        own = _scalar(own, config)
    if sample_weight is not None:
        raise ValueError("`sample_weight` needs a compiled loss: the model's own loss is already reduced over the "
                         "batch, so it cannot weight samples. Compile a loss (e.g. compile(loss='cross_entropy')), "
                         "which gets the model's logits, or drop the sample weights.")
    if session is not None and session not in _CHECKED and config is not None and config.metrics:
        _check_metrics(config.metrics, predicted, y, output)
        _CHECKED.add(session)
    return own, {"loss": own.detach()}


def _describe(output: Any) -> str:
    """``SequenceClassifierOutput {'logits': tensor (8, 2)}``: the type and the shapes of a model's output."""
    return f"{type(output).__name__} {describe_structure(output)}"


def _scalar(loss: torch.Tensor, config: Any) -> torch.Tensor:
    """The model's loss as a scalar: DataParallel gathers one loss per GPU (their mean, as Trainer takes)."""
    if loss.dim() == 1 and config is not None and isinstance(config.forward_fn, nn.DataParallel):
        return loss.mean()
    raise ValueError(f"The model's own loss must be a scalar (0-dim) tensor. Received: loss of shape "
                     f"{tuple(loss.shape)}. Reduce it in forward (e.g. loss.mean()), or compile a loss.")


def _check_metrics(metrics: dict, predicted: Any, y: Any, output: Any) -> None:
    """The compiled metrics' first-batch checks (before the first optimizer step), as the compiled loss runs them."""
    if predicted is None:
        raise ValueError(f"The model's output has a loss but no predictions for the compiled metrics "
                         f"{sorted(metrics)}. Received: output {_describe(output)}. Return the logits too (a "
                         "'logits' entry), or compile without metrics.")
    if not isinstance(predicted, torch.Tensor) or not isinstance(y, torch.Tensor):
        return
    for name, metric in metrics.items():
        try:
            metric.check(predicted, y)
        except Exception as err:
            reraise_with(err, f"(in the metric {name!r} of compile(metrics=...))")


def _warn_compiled_wins(compiled: Any, output: Any) -> None:
    spec = compiled.spec if compiled.spec is not None else "a multi-output loss"
    warnings.warn(f"The model returned its own loss (in its output {type(output).__name__}) and a loss was "
                  f"compiled ({spec!r}): the compiled loss wins. It is what training minimises and what "
                  "'loss' logs; the model's loss is ignored. To train on the model's loss, compile without "
                  "`loss`; to compute only the compiled one, give the targets as 'y' instead of 'labels'.",
                  UserWarning, stacklevel=4)


def item_counter(model: nn.Module, compiled_loss: Any) -> Any:
    """What a training batch counts for gradient accumulation (``kerastorch.engine.window``): a function of a batch.

    A model computing its own token-level loss from a dict batch's integer ``labels`` (a Hugging Face model)
    averages over the labels that are not ``-100``; a causal language model (``loss_type`` "ForCausalLM", or
    none) over those of ``labels[..., 1:]`` (it predicts each next token). Anything else counts samples.

    Example:
        >>> from kerastorch.data import batch_size_of
        >>> item_counter(nn.Linear(2, 1), compiled_loss=None) is batch_size_of
        True
    """
    from ..data import batch_size_of

    if compiled_loss is not None or not hasattr(model, "loss_type"):
        return batch_size_of
    causal = getattr(model, "loss_type", None) in (None, "ForCausalLM")

    def tokens(batch: Any) -> Any:
        labels = batch.get("labels") if isinstance(batch, Mapping) else None
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point():
            return batch_size_of(batch)
        counted = labels[..., 1:] if causal and labels.dim() > 1 else labels
        return (counted != -100).sum()

    return tokens
