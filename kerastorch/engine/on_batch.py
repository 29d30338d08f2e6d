"""Keras's one-batch calls: ``train_on_batch``, ``test_on_batch``, ``predict_on_batch``, and the list form of
``evaluate``'s result.

Each runs the model's own step (the routed one: wrappers and autocast as in fit) on one batch made from
in-memory data, with no callbacks and nothing added to the history. Metrics start afresh at each call, so
a call's metrics are that batch's (Keras 3 keeps accumulating them until ``reset_metrics``; a fresh start
per call is what its users expect from the names). The results are read back once per call.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..checks import compiled
from ..data import TensorBatcher, adapt, batch_size_of, floating_dtype, move_to_device, tree_map
from .logs import LogAccumulator, epoch_logs
from .reentry import guarded
from .session import FitRecord, Session

if TYPE_CHECKING:
    from ..compiling import CompileConfig


def keras_result(logs: dict[str, float], return_dict: bool) -> Any:
    """``logs`` as Keras returns them: the dict, or the loss alone, or ``[loss, *metrics]`` in order.

    Example:
        >>> keras_result({"loss": 0.5}, False), keras_result({"loss": 0.5, "acc": 1.0}, False)
        (0.5, [0.5, 1.0])
    """
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def _one_batch(x: Any, y: Any, sample_weight: Any, model: Any, call: str) -> Any:
    """The whole of ``x`` (and ``y``, ``sample_weight``) as one batch, converted as fit converts data."""
    if isinstance(x, (DataLoader, Dataset)) or hasattr(x, "__next__"):
        raise TypeError(f"`{call}` takes one batch of in-memory data (tensors, arrays, frames). Received: "
                        f"x={type(x).__name__}. Use fit / evaluate / predict for a Dataset, DataLoader or generator.")
    source = adapt(x, y, sample_weight, batch_size=sys.maxsize, shuffle=False, float_dtype=floating_dtype(model))
    if not isinstance(source, TensorBatcher):
        raise TypeError(f"`{call}` takes one batch of in-memory data. Received: x={type(x).__name__}")
    return next(iter(source))


def _run(model: Any, config: CompileConfig, record: FitRecord, kind: str, batch: Any) -> dict[str, float]:
    session = Session(config, record, None)
    for metric in config.metrics.values():
        metric.reset()
    outer, model._session = model._session, session
    try:
        batch = move_to_device(batch, config.device)
        logs = model._step_runner(kind, session)(batch)
    finally:
        model._session = outer
    accumulator = LogAccumulator(1)
    accumulator.add(0, logs, batch_size_of(batch))
    return epoch_logs(config, accumulator)


@guarded("train_on_batch")
def train_on_batch(model: Any, config: CompileConfig, record: FitRecord, x: Any, y: Any, sample_weight: Any,
                   class_weight: Any) -> dict[str, float]:
    """One training step on ``x`` as one batch: see :meth:`kerastorch.Model.train_on_batch`."""
    batch = _one_batch(x, y, sample_weight, model, "train_on_batch")
    undo = config.loss.use_class_weight(class_weight) if class_weight is not None and config.loss else None
    was_training = model.training
    model.train()
    try:
        logs = _run(model, config, record, "train", batch)
    finally:
        model.train(was_training)
        if undo is not None:
            undo()
    record.global_step += 1
    return logs


@guarded("test_on_batch")
def test_on_batch(model: Any, config: CompileConfig, record: FitRecord, x: Any, y: Any,
                  sample_weight: Any) -> dict[str, float]:
    """Loss and metrics on ``x`` as one batch (eval mode, inference mode)."""
    batch = _one_batch(x, y, sample_weight, model, "test_on_batch")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _run(model, config, record, "test", batch)
    finally:
        model.train(was_training)


@guarded("predict_on_batch")
def predict_on_batch(model: Any, config: CompileConfig | None, record: FitRecord, x: Any) -> Any:
    """The model's output for ``x`` as one batch, on the CPU (eval mode, inference mode)."""
    batch = _one_batch(x, None, None, model, "predict_on_batch")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            output = model._step_runner("predict")(move_to_device(batch, model.device))
    finally:
        model.train(was_training)
    # host-sync: once, the call's result
    return tree_map(lambda value: value.cpu() if isinstance(value, torch.Tensor) else value, output)


class OnBatchSurface:
    """Keras's ``train_on_batch`` / ``test_on_batch`` / ``predict_on_batch``; a mixin of ``Model``."""

    _config: Any
    _record: FitRecord

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, class_weight: Any = None,
                       return_dict: bool = False) -> Any:
        """One optimizer step on ``x`` (and ``y``) as one batch; the loss, or ``[loss, *metrics]``, or a dict.

        No callbacks run and the history is unchanged; metrics are this batch's.

        Example:
            >>> import torch; from torch import nn; from kerastorch import Model
            >>> net = Model.wrap(nn.Linear(2, 1)); net.compile("sgd", "mse", ["mae"], device="cpu")
            >>> loss, mae = net.train_on_batch(torch.ones(4, 2), torch.zeros(4, 1))
            >>> sorted(net.train_on_batch(torch.ones(4, 2), torch.zeros(4, 1), return_dict=True))
            ['loss', 'mae']
        """
        config = compiled(self._config, "train_on_batch")
        logs = train_on_batch(self, config, self._record, x, y, sample_weight, class_weight)
        return keras_result(logs, return_dict)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, return_dict: bool = False) -> Any:
        """Loss and metrics on ``x`` as one batch, as :meth:`train_on_batch` returns them (no step)."""
        config = compiled(self._config, "test_on_batch")
        return keras_result(test_on_batch(self, config, self._record, x, y, sample_weight), return_dict)

    def predict_on_batch(self, x: Any) -> Any:
        """The model's output for ``x`` as one batch, on the CPU (works before ``compile``)."""
        return predict_on_batch(self, self._config, self._record, x)
