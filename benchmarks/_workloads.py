"""Workloads (model + data + loss) and the contenders every benchmark shares.

* :class:`Workload`: a template model (every contender gets a deep copy, so all
  start from identical weights), in-memory tensors, batch size, task.
* :class:`HandLoop`: the hand-written loop, the speed limit. Per step:
  ``zero_grad(set_to_none=True)``, forward, loss, backward, step; loss and the
  metric are summed *on the device* and read once per epoch (one host sync),
  exactly the discipline kerastorch follows. No per-step ``.item()``.
* :class:`KerastorchFit`: ``kt.Model.wrap(copy).compile(...)`` then
  ``fit(..., verbose=0)``, with the same optimizer, loss and metric.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as kt
from _harness import Contender, Timing, synchronize

# task -> (functional loss for the hand loop, kerastorch loss name, kerastorch metric name)
TASKS: dict[str, tuple[Callable[..., torch.Tensor], str, str]] = {
    "binary": (F.binary_cross_entropy_with_logits, "bce_with_logits", "accuracy"),
    "multiclass": (F.cross_entropy, "cross_entropy", "accuracy"),
    "regression": (F.mse_loss, "mse", "mae"),
}


@dataclass
class Workload:
    """A model template, its data and its training settings."""

    name: str
    template: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    task: str
    lr: float
    epochs: int  # default epochs per timing round

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    @property
    def metric_name(self) -> str:
        return "mae" if self.task == "regression" else "acc"

    def fresh_model(self) -> nn.Module:
        """A deep copy of the template: identical initial weights for every contender."""
        return copy.deepcopy(self.template)

    def loss_fn(self) -> Callable[..., torch.Tensor]:
        return TASKS[self.task][0]

    def loader(self, device: torch.device, seed: int = 0) -> DataLoader:
        """``DataLoader(TensorDataset(x, y), batch_size, shuffle=True)``, as users write it."""
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=True,
                          generator=generator, pin_memory=device.type == "cuda")


# ----------------------------------------------------------------------------- data and models
def two_rings(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed's data: 200 positives on a ring of radius 5, 6000 negatives at 8, N(0, 1) radial noise."""
    generator = torch.Generator().manual_seed(seed)

    def ring(count: int, radius: float) -> torch.Tensor:
        r = radius + torch.randn(count, 1, generator=generator)
        theta = 2 * math.pi * torch.rand(count, 1, generator=generator)
        return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)

    x = torch.cat([ring(200, 5.0), ring(6000, 8.0)])
    y = torch.cat([torch.ones(200, 1), torch.zeros(6000, 1)])
    return x, y


def ring_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def lenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def deep_mlp(width: int = 64, layers: int = 20) -> nn.Module:
    modules: list[nn.Module] = []
    for _ in range(layers - 1):
        modules += [nn.Linear(width, width), nn.ReLU()]
    modules.append(nn.Linear(width, 1))
    return nn.Sequential(*modules)


def images(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 3x32x32 images with 10 random classes (speed only: nothing to learn)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, 32, 32, generator=generator), torch.randint(0, 10, (count,), generator=generator)


def seeded(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build()


def ring_workload(epochs: int = 3) -> Workload:
    x, y = two_rings()
    return Workload("two-ring MLP", seeded(ring_mlp), x, y, batch_size=100, task="binary",
                    lr=0.01, epochs=epochs)


def lenet_workload(samples: int = 2048, epochs: int = 1) -> Workload:
    x, y = images(samples)
    return Workload("LeNet 3x32x32", seeded(lenet), x, y, batch_size=64, task="multiclass",
                    lr=1e-3, epochs=epochs)


def deep_mlp_workload(samples: int = 2048, epochs: int = 2) -> Workload:
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(samples, 64, generator=generator), torch.randn(samples, 1, generator=generator)
    return Workload("20-layer MLP", seeded(deep_mlp), x, y, batch_size=64, task="regression",
                    lr=1e-3, epochs=epochs)


# ----------------------------------------------------------------------------- the hand loop
def metric_sum(output: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """Sum over the batch of the per-sample metric (hits, or absolute errors), on the device."""
    if task == "binary":
        return ((output > 0) == (target > 0.5)).sum()
    if task == "multiclass":
        return (output.argmax(dim=1) == target).sum()
    return (output - target).abs().sum()


def sliced_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int,
                   generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One permutation per epoch, one gather, then contiguous slices: the best hand-written batching."""
    order = torch.randperm(len(x), generator=generator).to(x.device)
    x, y = x[order], y[order]
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size], y[start:start + batch_size]


class HandLoop(Contender):
    """The hand-written loop over ``batches()`` (a DataLoader or sliced in-memory tensors).

    Args:
        precision: None for fp32, or an autocast dtype (bf16/fp16; fp16 adds a GradScaler).
        compiled: train through ``torch.compile(model)``.
        channels_last: convert model and batches to ``torch.channels_last``.
        adam_kwargs: extra ``torch.optim.Adam`` arguments (e.g. ``fused=True``).
        metric_fn: a plain metric function ``fn(output, target) -> batch mean`` instead of the task's
            hit count, summed weighted by batch size (as kerastorch does with a function metric).
    """

    def __init__(self, name: str, workload: Workload, batches: Callable[[], Iterable], device: torch.device,
                 precision: torch.dtype | None = None, compiled: bool = False,
                 channels_last: bool = False, adam_kwargs: dict[str, Any] | None = None,
                 metric_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__(name, workload.steps_per_epoch)
        self.model = workload.fresh_model().to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=workload.lr, **(adam_kwargs or {}))
        self.loss_fn, self.task, self.metric = workload.loss_fn(), workload.task, workload.metric_name
        self.batches, self.device, self.precision = batches, device, precision
        self.memory_format = torch.channels_last if channels_last else torch.preserve_format
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)
        self.metric_fn = metric_fn

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.precision)

    def epoch(self) -> None:
        self.model.train()
        device, optimizer, scaler = self.device, self.optimizer, self.scaler
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        metric_total = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        for x, y in self.batches():
            x = x.to(device, non_blocking=True, memory_format=self.memory_format)
            y = y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                output = self.forward(x)
                loss = self.loss_fn(output, y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach() * len(x)
            if self.metric_fn is None:
                metric_total += metric_sum(output.detach(), y, self.task)
            else:
                metric_total.add_(self.metric_fn(output.detach(), y), alpha=len(x))
            seen += len(x)
        loss_mean, metric_mean = (torch.stack([loss_sum, metric_total]) / seen).tolist()  # the epoch's one sync
        self.final = {"loss": loss_mean, self.metric: metric_mean}

    def run(self, epochs: int) -> Timing:
        start = time.perf_counter()
        times = []
        for _ in range(epochs):
            begin = time.perf_counter()
            self.epoch()
            times.append(time.perf_counter() - begin)
        return Timing(time.perf_counter() - start, times)


def hand_dataloader(workload: Workload, device: torch.device, name: str = "hand(DataLoader)",
                    **options: Any) -> HandLoop:
    loader = workload.loader(device, seed=1)
    return HandLoop(name, workload, lambda: loader, device, **options)


def hand_slicing(workload: Workload, device: torch.device, name: str = "hand(slicing)",
                 **options: Any) -> HandLoop:
    x, y = workload.x.to(device), workload.y.to(device)
    generator = torch.Generator().manual_seed(2)
    return HandLoop(name, workload, lambda: sliced_batches(x, y, workload.batch_size, generator),
                    device, **options)


# ----------------------------------------------------------------------------- kerastorch
class EpochTimer(kt.callbacks.Callback):
    """Wall time from on_epoch_begin to on_epoch_end (epoch logs already read)."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device, self.times, self._begin = device, [], 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._begin = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter() - self._begin)


class KerastorchFit(Contender):
    """``kt.Model.wrap(copy)``, compiled once, then ``fit(data, epochs=E, verbose=0)`` per run.

    Args:
        data: ``"loader"`` for ``fit(DataLoader)``, ``"tensors"`` for ``fit(x, y, shuffle=True)``.
        compile_kwargs: extra ``compile`` arguments (regularizers, precision, ...).
        loss: overrides the workload's loss name (e.g. a function).
        named_optimizer: ``compile(optimizer="adam", optimizer_kwargs={"lr": ...})`` (kerastorch
            picks the implementation) instead of the same ``torch.optim.Adam(params, lr)`` object
            every other contender builds.
        metric: overrides the workload's metric (e.g. a plain function).
        verbose: ``fit``'s verbose; what it prints goes to a discarded stream, as a redirected log's would.
    """

    def __init__(self, name: str, workload: Workload, data: str, device: torch.device,
                 loss: Any = None, compile_kwargs: dict[str, Any] | None = None,
                 named_optimizer: bool = False, metric: Any = None, verbose: int = 0) -> None:
        super().__init__(name, workload.steps_per_epoch)
        self.model = kt.Model.wrap(workload.fresh_model())
        _, loss_name, metric_name = TASKS[workload.task]
        optimizer: dict[str, Any] = {"optimizer": "adam", "optimizer_kwargs": {"lr": workload.lr}} \
            if named_optimizer else {"optimizer": torch.optim.Adam(self.model.parameters(), lr=workload.lr)}
        self.model.compile(**optimizer, loss=loss_name if loss is None else loss,
                           metrics={workload.metric_name: metric_name if metric is None else metric},
                           device=device, **(compile_kwargs or {}))
        self.device, self.verbose = device, verbose
        if data == "loader":
            self.fit_args: dict[str, Any] = {"x": workload.loader(device, seed=1)}
        else:
            self.fit_args = {"x": workload.x.to(device), "y": workload.y.to(device),
                             "batch_size": workload.batch_size, "shuffle": True}

    def run(self, epochs: int) -> Timing:
        timer = EpochTimer(self.device)
        start = time.perf_counter()
        with open(os.devnull, "w") as log, contextlib.redirect_stdout(log):
            history = self.model.fit(**self.fit_args, epochs=epochs, verbose=self.verbose, callbacks=[timer])
        synchronize(self.device)
        total = time.perf_counter() - start
        last = history.iloc[-1]
        self.final = {key: float(last[key]) for key in ("loss", "acc", "mae") if key in last}
        return Timing(total, timer.times)
