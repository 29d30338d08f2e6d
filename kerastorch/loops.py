"""The fit / evaluate / predict loops: iterate batches, fire callbacks, honour stop flags.

The batch loop is the hot path. Per step it moves the batch to the device,
runs the step, adds the step's logged tensors into on-device sums and calls
only the batch hooks some callback overrides. Nothing in it reads a value
back to the host; epoch logs are read once, at the epoch's end.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from .callbacks.base import CallbackList
from .data import batch_size_of, move_to_device, tree_map
from .state import TrainState


class LogAccumulator:
    """Sample-weighted running means of per-batch scalar tensors, kept on the device.

    ``add(logs, n)`` adds ``value * n`` into a per-key sum (in place, no
    allocation after the first batch); the count of samples is a host int,
    so reading means costs one sync for all keys together.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, logs: dict[str, torch.Tensor], n: int) -> None:
        sums = self.sums
        for key, value in logs.items():
            total = sums.get(key)
            if total is None:
                # float64 sums keep long epochs exact (MPS has no float64).
                dtype = torch.float32 if value.device.type == "mps" else torch.float64
                total = sums[key] = torch.zeros((), dtype=dtype, device=value.device)
            total.add_(value.reshape(()), alpha=n)
        self.count += n

    def means(self) -> dict[str, torch.Tensor]:
        return {key: total / self.count for key, total in self.sums.items()}


def read_scalars(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Read a dict of 0-dim tensors to Python floats with one host sync."""
    if not values:
        return {}
    keys = list(values)
    stacked = torch.stack([torch.as_tensor(values[k]).detach().to("cpu" if values[k].device.type == "mps"
                                                                  else values[k].device, torch.float64).reshape(())
                           for k in keys])
    return dict(zip(keys, stacked.tolist()))


def epoch_logs(model: Any, accumulator: LogAccumulator, prefix: str = "") -> dict[str, float]:
    """Means of the step logs plus metric results, read once."""
    values = accumulator.means()
    for name, metric in model.compiled_metrics.items():
        values[name] = metric.result()
    ordered = {"loss": values.pop("loss")} if "loss" in values else {}
    ordered.update(values)
    return {prefix + key: value for key, value in read_scalars(ordered).items()}


def reset_metrics(model: Any) -> None:
    for metric in model.compiled_metrics.values():
        metric.reset()


def run_train_epoch(model: Any, source: Iterable, hooks: CallbackList, state: TrainState,
                    steps: int) -> LogAccumulator:
    """One pass over ``source`` (at most ``steps`` batches) with train_step."""
    runtime = model._kt
    accumulator = LogAccumulator()
    runtime.accumulator = accumulator
    reset_metrics(model)
    device = runtime.config.device
    batch_begin, batch_end = hooks.on_train_batch_begin, hooks.on_train_batch_end
    first = getattr(source, "skip_batches", 0)
    plan_accumulation = runtime.config.grad_accum_steps > 1
    for index, batch in enumerate(source, start=first):
        state.batch = index
        for hook in batch_begin:
            hook(index, None)
        if plan_accumulation:
            runtime.plan_micro_step(index, steps)
        batch = move_to_device(batch, device)
        logs = model.train_step(batch)
        accumulator.add(logs, batch_size_of(batch))
        state.global_step += 1
        for hook in batch_end:
            hook(index, logs)
        if model.stop_training or index + 1 >= steps:
            break
    return accumulator


def run_test(model: Any, source: Iterable, hooks: CallbackList, prefix: str = "") -> dict[str, float]:
    """Evaluate over ``source`` with test_step; returns the epoch's logs (floats)."""
    was_training = model.training
    model.eval()
    accumulator = LogAccumulator()
    reset_metrics(model)
    device = model._kt.config.device
    hooks.call("on_test_begin", None)
    batch_begin, batch_end = hooks.on_test_batch_begin, hooks.on_test_batch_end
    try:
        with torch.inference_mode():
            for index, batch in enumerate(source):
                for hook in batch_begin:
                    hook(index, None)
                batch = move_to_device(batch, device)
                logs = model.test_step(batch)
                accumulator.add(logs, batch_size_of(batch))
                for hook in batch_end:
                    hook(index, logs)
        logs = epoch_logs(model, accumulator, prefix)
    finally:
        model.train(was_training)
    hooks.call("on_test_end", logs)
    return logs


def run_predict(model: Any, source: Iterable, hooks: CallbackList, device: torch.device) -> Any:
    """Run predict_step over ``source`` and concatenate the outputs on the CPU."""
    was_training = model.training
    model.eval()
    outputs: list[Any] = []
    hooks.call("on_predict_begin", None)
    batch_begin, batch_end = hooks.on_predict_batch_begin, hooks.on_predict_batch_end
    try:
        with torch.inference_mode():
            for index, batch in enumerate(source):
                for hook in batch_begin:
                    hook(index, None)
                output = model.predict_step(move_to_device(batch, device))
                outputs.append(output)
                for hook in batch_end:
                    hook(index, {"outputs": output})
    finally:
        model.train(was_training)
    result = concatenate(outputs)
    hooks.call("on_predict_end", None)
    return result


def concatenate(outputs: list[Any]) -> Any:
    """Concatenate per-batch outputs along dim 0, keeping tuple/list/dict structure, on the CPU."""
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        # Outputs stay on the device during the loop; one copy to the host at the end.
        return torch.cat(outputs).cpu() if first.dim() else torch.stack(outputs).cpu()
    if isinstance(first, (tuple, list)):
        return type(first)(concatenate([out[i] for out in outputs]) for i in range(len(first)))
    if isinstance(first, dict):
        return {key: concatenate([out[key] for out in outputs]) for key in first}
    return tree_map(lambda v: v, outputs)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    lr = optimizer.param_groups[0]["lr"]
    return float(lr)


def run_fit(model: Any, train_source: Any, val_source: Any, hooks: CallbackList, state: TrainState,
            epochs: int, initial_epoch: int, steps_per_epoch: int | None) -> None:
    """The epoch loop: train, validate, log, call epoch hooks, honour stop_training."""
    runtime = model._kt
    steps = steps_per_epoch or len(train_source)
    hooks.call("on_train_begin", None)
    for epoch in range(initial_epoch, epochs):
        state.epoch = epoch
        model.train()
        runtime.prepare_epoch(epoch, train_source)
        hooks.call("on_epoch_begin", epoch, None)
        accumulator = run_train_epoch(model, train_source, hooks, state, steps)
        logs = epoch_logs(model, accumulator)
        if val_source is not None:
            logs.update(run_test(model, val_source, hooks, prefix="val_"))
        logs["lr"] = current_lr(runtime.config.optimizer)
        runtime.step_epoch_scheduler(logs)
        state.logs = logs
        hooks.call("on_epoch_end", epoch, logs)
        if model.stop_training:
            break
    hooks.call("on_train_end", state.logs)
