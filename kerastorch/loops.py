"""The fit / evaluate / predict loops: iterate batches, fire callbacks, honour stop flags.

The batch loop is the hot path. Per step it moves the batch to the device,
runs the step, adds the step's logged tensors into on-device sums and calls
only the batch hooks some callback overrides. Nothing in it reads a value
back to the host; epoch logs are read once, at the epoch's end.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable

import torch

from .callbacks.base import CallbackList
from .data import batch_size_of, move_to_device, tree_map
from .distributed import all_reduce_sum, any_rank, broadcast_int, launched_distributed
from .state import TrainState


class LogAccumulator:
    """Per-step scalar logs kept on the device; epoch means read once.

    Each key gets a preallocated device buffer with one slot per step; a step
    writes its value into its slot (one in-place copy, no host sync) and the
    host keeps the batch sizes. The epoch value is the sample-weighted mean,
    exact with an uneven last batch, and the buffer doubles as the device-side
    record that finds the first non-finite step at the next sync point.

    Args:
        steps: number of steps this epoch can have (buffer length).

    Example:
        >>> acc = LogAccumulator(2)
        >>> acc.add(0, {"loss": torch.tensor(1.0)}, 8); acc.add(1, {"loss": torch.tensor(4.0)}, 2)
        >>> float(acc.means()["loss"])
        1.6
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.buffers: dict[str, torch.Tensor] = {}
        self.sizes: list[int] = []  # batch sizes of steps 0..k-1 (a resumed epoch starts with k > 0)

    def add(self, index: int, logs: dict[str, torch.Tensor], n: int) -> None:
        buffers = self.buffers
        for key, value in logs.items():
            buffer = buffers.get(key)
            if buffer is None:
                buffer = buffers[key] = self._new_buffer(value.device)
            buffer[index] = value
        self.sizes.append(n)

    def _new_buffer(self, device: torch.device) -> torch.Tensor:
        # float64 keeps long epochs exact (MPS has no float64); NaN marks "no value".
        dtype = torch.float32 if device.type == "mps" else torch.float64
        return torch.full((self.steps,), float("nan"), dtype=dtype, device=device)

    @property
    def count(self) -> int:
        return sum(self.sizes)

    def totals(self) -> dict[str, torch.Tensor]:
        """Sample-weighted sums per key (device tensors)."""
        k = len(self.sizes)
        weights: dict[tuple, torch.Tensor] = {}  # one host-to-device copy per dtype/device, not per key
        totals = {}
        for key, buffer in self.buffers.items():
            where = (buffer.dtype, buffer.device)
            if where not in weights:
                weights[where] = torch.tensor(self.sizes, dtype=buffer.dtype).to(buffer.device, non_blocking=True)
            totals[key] = (buffer[:k] * weights[where]).sum()
        return totals

    def means(self) -> dict[str, torch.Tensor]:
        count = self.count
        return {key: total / count for key, total in self.totals().items()}

    def global_means(self) -> dict[str, torch.Tensor]:
        """Means over all ranks: sums and counts are all-reduced together, exactly."""
        if not launched_distributed() or not self.buffers:
            return self.means()
        totals = self.totals()
        packed = torch.stack([*totals.values(), torch.tensor(float(self.count), dtype=torch.float64,
                                                             device=next(iter(totals.values())).device)])
        all_reduce_sum(packed)
        return {key: packed[i] / packed[-1] for i, key in enumerate(totals)}

    def first_nonfinite(self, key: str = "loss") -> int | None:
        """Index of the first step whose ``key`` is NaN/inf (one host sync), else None."""
        buffer = self.buffers.get(key)
        if buffer is None:
            return None
        bad = (~torch.isfinite(buffer[:len(self.sizes)])).nonzero()
        return None if bad.numel() == 0 else int(bad[0, 0])

    def state_dict(self) -> dict[str, Any]:
        k = len(self.sizes)
        buffers = {key: buffer[:k].cpu() for key, buffer in self.buffers.items()}  # noqa: checkpoint-time sync
        return {"buffers": buffers, "sizes": list(self.sizes)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        """Continue a partial epoch: the earlier steps' values and sizes come back."""
        self.sizes = list(state["sizes"])
        for key, values in state["buffers"].items():
            buffer = self._new_buffer(device)
            buffer[:len(values)] = values.to(device)
            self.buffers[key] = buffer


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
    """Means of the step logs plus metric results (and, in training, the penalty), read once."""
    values = accumulator.global_means()
    ordered = {"loss": values.pop("loss")} if "loss" in values else {}
    config = model._kt.config
    if not prefix and config.penalty is not None:
        with torch.no_grad():
            ordered["reg_loss"] = config.penalty()  # of the weights at the epoch's end
    skipped = config.precision.scaler.skip_count() if not prefix else None
    if skipped is not None:  # fp16: optimizer steps the GradScaler skipped for inf gradients
        ordered["amp_skipped_steps"] = skipped
    ordered.update(values)
    for name, metric in model.compiled_metrics.items():
        if launched_distributed():
            metric.sync()
        ordered[name] = metric.result()
    return {prefix + key: value for key, value in read_scalars(ordered).items()}


def reset_metrics(model: Any) -> None:
    for metric in model.compiled_metrics.values():
        metric.reset()


def run_train_epoch(model: Any, source: Any, hooks: CallbackList, state: TrainState,
                    steps: int) -> LogAccumulator:
    """One pass over ``source`` (at most ``steps`` batches) with train_step."""
    runtime = model._kt
    accumulator = runtime.begin_epoch_accumulator(steps)
    device = runtime.config.device
    batch_begin, batch_end = hooks.on_train_batch_begin, hooks.on_train_batch_end
    plan_accumulation = runtime.config.grad_accum_steps > 1
    channels_last = runtime.channels_last
    first = len(accumulator.sizes)  # > 0 when a mid-epoch checkpoint is resumed
    iterator = runtime.start_epoch_iterator(source)
    for index, batch in enumerate(iterator, start=first):
        state.batch = index
        for hook in batch_begin:
            hook(index, None)
        batch = move_to_device(batch, device, channels_last=channels_last)
        if plan_accumulation:
            runtime.plan_micro_step(index, steps)
            with runtime.sync_context():
                logs = model.train_step(batch)
        else:
            logs = model.train_step(batch)
        accumulator.add(index, logs, batch_size_of(batch))
        state.global_step += 1
        for hook in batch_end:
            hook(index, logs)
        if runtime.deferred:
            runtime.run_deferred()
        # A signal waits for the end of a gradient-accumulation window, so the interrupt
        # checkpoint holds no partial gradients.
        if model.stop_training or index + 1 >= steps or (runtime.pending_signal is not None and runtime.update_now):
            break
    return accumulator


def run_test(model: Any, source: Any, hooks: CallbackList, prefix: str = "") -> dict[str, float]:
    """Evaluate over ``source`` with test_step; returns the epoch's logs (floats)."""
    was_training = model.training
    model.eval()
    accumulator = LogAccumulator(len(source))
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
                accumulator.add(index, logs, batch_size_of(batch))
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
        return torch.cat(outputs).cpu() if first.dim() else torch.stack(outputs).cpu()  # noqa: once, after the loop
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
    """The epoch loop: train, validate, log, call epoch hooks, honour stop flags and signals."""
    runtime = model._kt
    steps = min(steps_per_epoch or len(train_source), len(train_source))
    hooks.call("on_train_begin", None)
    start_epoch = runtime.apply_resume(initial_epoch)
    # Ranks with fewer batches (no padding: each sample counts once) join DDP's collectives.
    uneven = runtime.ddp is not None and any_rank(steps != broadcast_int(steps, runtime.config.device),
                                                  runtime.config.device)
    for epoch in range(start_epoch, epochs):
        state.epoch = epoch
        model.train()
        runtime.prepare_epoch(epoch, train_source)
        hooks.call("on_epoch_begin", epoch, None)
        with runtime.ddp.join() if uneven else contextlib.nullcontext():
            accumulator = run_train_epoch(model, train_source, hooks, state, steps)
        if runtime.pending_signal is not None:
            runtime.handle_signal(hooks)  # saves a mid-epoch checkpoint, then raises
        bad_step = accumulator.first_nonfinite()
        if launched_distributed() and any_rank(bad_step is not None, runtime.config.device):
            bad_step = -1 if bad_step is None else bad_step  # another rank went non-finite: stop together
        if bad_step is not None:
            runtime.stop_for_nonfinite(epoch, bad_step, epoch_logs(model, accumulator))
            break
        logs = epoch_logs(model, accumulator)
        if val_source is not None:
            logs.update(run_test(model, val_source, hooks, prefix="val_"))
        logs["lr"] = current_lr(runtime.config.optimizer)
        runtime.step_epoch_scheduler(logs)
        state.logs = logs
        hooks.call("on_epoch_end", epoch, logs)
        runtime.run_deferred()
        if launched_distributed():  # all ranks stop together (e.g. EarlyStopping on rank-local state)
            model.stop_training = any_rank(model.stop_training, runtime.config.device)
        if model.stop_training:
            break
    hooks.call("on_train_end", state.logs)
