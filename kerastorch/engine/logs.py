"""Step logs on the device, epoch logs read once.

Per step, :class:`LogAccumulator` writes each logged scalar into a
preallocated device buffer (no host sync); at the epoch's end
:func:`epoch_logs` turns the buffers and the metrics into floats with one read.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..checks import reraise_with
from ..distributed import all_reduce_sum, launched_distributed
from ..readback import read_scalars

if TYPE_CHECKING:
    from ..compiling import CompileConfig


def _device_of(logs: dict[str, Any]) -> torch.device:
    """The device of the first tensor among a step's logs (the CPU when there is none)."""
    return next((v.device for v in logs.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))


class LogAccumulator:
    """Per-step scalar logs kept on the device; epoch means read once.

    Each key gets a preallocated device buffer with one slot per step; a step
    writes its value into its slot (one in-place copy, no host sync) and the
    host keeps the batch sizes. The epoch value is the sample-weighted mean,
    exact with an uneven last batch, and the buffer doubles as the device-side
    record that finds the first non-finite step at the next sync point.

    Args:
        steps: number of steps this epoch can have (buffer length); None when the data
            has no length (a generator): the buffers then grow, doubling, when full.

    Example:
        >>> acc = LogAccumulator(2)
        >>> acc.add(0, {"loss": torch.tensor(1.0)}, 8); acc.add(1, {"loss": torch.tensor(4.0)}, 2)
        >>> float(acc.means()["loss"])
        1.6
    """

    def __init__(self, steps: int | None) -> None:
        self.growable = steps is None
        self.steps = 64 if steps is None else steps
        self.buffers: dict[str, torch.Tensor] = {}
        self.sizes: list[int] = []  # batch sizes of steps 0..k-1 (a resumed epoch starts with k > 0)

    def add(self, index: int, logs: dict[str, torch.Tensor], n: int) -> None:
        buffers = self.buffers
        for key, value in logs.items():
            buffer = buffers.get(key)
            if buffer is None:  # a Python float (a custom step may log one, as in Keras) joins the tensors' device
                device = value.device if isinstance(value, torch.Tensor) else _device_of(logs)
                buffer = buffers[key] = self._new_buffer(device)
            try:
                buffer[index] = value
            except IndexError:  # only past the end of a growable buffer (no cost until then)
                if not self.growable:
                    raise
                self._grow(index)
                buffer = buffers[key]
                buffer[index] = value
        self.sizes.append(n)

    def _grow(self, index: int) -> None:
        """Double every buffer's length until ``index`` fits (data without a length)."""
        while self.steps <= index:
            self.steps *= 2
        for key, old in self.buffers.items():
            buffer = torch.full((self.steps,), float("nan"), dtype=old.dtype, device=old.device)
            buffer[:old.shape[0]] = old
            self.buffers[key] = buffer

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
            totals[key] = buffer[:k].dot(weights[where])
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
        return None if bad.numel() == 0 else int(bad[0, 0])  # host-sync: once per epoch (with nonzero above)

    def state_dict(self) -> dict[str, Any]:
        k = len(self.sizes)
        buffers = {key: buffer[:k].cpu() for key, buffer in self.buffers.items()}  # host-sync: checkpoint time
        return {"buffers": buffers, "sizes": list(self.sizes)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        """Continue a partial epoch: the earlier steps' values and sizes come back."""
        self.sizes = list(state["sizes"])
        if self.growable:
            while self.steps < len(self.sizes):
                self.steps *= 2
        for key, values in state["buffers"].items():
            buffer = self._new_buffer(device)
            buffer[:len(values)] = values.to(device)
            self.buffers[key] = buffer


def epoch_logs(config: CompileConfig, accumulator: LogAccumulator, prefix: str = "") -> dict[str, float]:
    """Means of the step logs plus metric results (and, in training, the penalty), read once.

    ``prefix`` is "val_" for validation, which has no penalty and no skipped-step count.
    """
    values = accumulator.global_means()
    ordered = {"loss": values.pop("loss")} if "loss" in values else {}
    if not prefix and config.penalty is not None:
        with torch.no_grad():
            ordered["reg_loss"] = config.penalty()  # of the weights at the epoch's end
    skipped = config.precision.scaler.skip_count() if not prefix else None
    if skipped is not None:  # fp16: optimizer steps the GradScaler skipped for inf gradients
        ordered["amp_skipped_steps"] = skipped
    ordered.update(values)
    for name, metric in config.metrics.items():
        if not metric.has_values():
            continue  # a custom step that never calls update_metrics (it may log the name itself), as in Keras
        if launched_distributed():
            metric.sync()
        try:
            ordered[name] = metric.result()
        except Exception as err:
            reraise_with(err, f"(computing the metric {name!r} of compile(metrics=...) at the epoch's end)")
    return {prefix + key: value for key, value in read_scalars(ordered).items()}


def running_logs(config: CompileConfig, accumulator: LogAccumulator | None) -> dict[str, float]:
    """The epoch's running means and metrics so far (one host sync; for progress displays).

    AUC and torchmetrics metrics are left out: recomputing them on every
    refresh would cost more than the step itself.
    """
    if accumulator is None or not accumulator.count:
        return {}
    values = accumulator.means()
    values.update({name: m.result() for name, m in config.metrics.items() if m.cheap_result and m.has_values()})
    return read_scalars(values)
