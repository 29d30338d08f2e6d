"""Averaged weights: running averages of a module's parameters (EMA, SWA) and swapping them in.

The core of the :class:`~kerastorch.callbacks.EMA` and :class:`~kerastorch.callbacks.SWA` callbacks and of
``Model.averaged_weights()``; it knows nothing of fit or callbacks.

* :class:`WeightAverage` holds one averaged copy of each parameter, on the parameter's device, and updates
  it with one fused ``torch._foreach_lerp_`` (no host-device sync). Buffers: an EMA uses the module's own
  (BatchNorm running statistics are not averaged, as in Keras); an SWA average also holds BatchNorm
  statistics, recomputed for the averaged weights by :func:`recompute_batchnorm`.
* :meth:`WeightAverage.swapped_in` writes the averages into the module's tensors in place (their storage,
  the optimizer's references and DDP's buckets stay valid) and writes the module's own values back on exit,
  also when the block raises.
* :func:`averaged_weights` is ``Model.averaged_weights()``: the average of the model's last fit.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .distributed import all_reduce_sum, launched_distributed, unwrap

KINDS = ("ema", "swa")
_NO_AVERAGE = ("model.averaged_weights() needs weights averaged during fit, and no fit of this model has run an "
               "averaging callback. Train with one first, e.g. model.fit(..., callbacks=[kt.callbacks.EMA()]) "
               "or callbacks=[kt.callbacks.SWA(start_epoch=...)].")


def batchnorm_buffers(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The running statistics of ``module``'s BatchNorm layers (what SWA recomputes), by state_dict name.

    Example:
        >>> [name for name, _ in batchnorm_buffers(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))]
        ['1.running_mean', '1.running_var', '1.num_batches_tracked']
    """
    found = []
    for prefix, layer in module.named_modules():
        if isinstance(layer, _BatchNorm) and layer.track_running_stats:
            for name, buffer in layer.named_buffers(prefix=prefix, recurse=False):
                if buffer is not None:
                    found.append((name, buffer))
    return found


class WeightAverage:
    """Averaged copies of a module's parameters (and, for SWA, of its BatchNorm statistics).

    Args:
        module: the network whose parameters are averaged (the unwrapped model: no DDP / compile wrapper).
        kind: "ema" (exponential moving average) or "swa" (equal-weight mean); SWA also keeps a copy of
            the BatchNorm running statistics, to be recomputed for the averaged weights.

    Attributes:
        kind: "ema" or "swa".
        count: updates so far (0: nothing averaged yet; the first update copies the parameters).
        names: the parameters' names, in ``named_parameters()`` order.
        averages: the averaged tensors, one per parameter, on its device and in its dtype.
        buffer_names, buffers: SWA's BatchNorm statistics for the averaged weights (empty for EMA).

    Example:
        >>> layer = nn.Linear(1, 1, bias=False)
        >>> average = WeightAverage(layer, "ema")
        >>> for value in (1.0, 3.0):
        ...     _ = layer.weight.data.fill_(value)
        ...     average.update(0.5)  # weight of the new value: 1 - decay
        >>> average.averages[0]  # the first update copies 1.0, the second moves halfway to 3.0
        tensor([[2.]])
        >>> with average.swapped_in(layer):
        ...     layer.weight.data
        tensor([[2.]])
        >>> layer.weight.data
        tensor([[3.]])
    """

    def __init__(self, module: nn.Module, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
        self.kind = kind
        self.count = 0
        named = list(module.named_parameters())
        self.names = [name for name, _ in named]
        # The Parameters themselves, not detached views: `.data` may be replaced (module.to(...)).
        self._sources: list[torch.Tensor] = [parameter for _, parameter in named]
        self.averages = [parameter.detach().clone() for parameter in self._sources]
        kept = batchnorm_buffers(module) if kind == "swa" else []
        self.buffer_names = [name for name, _ in kept]
        self.buffers = [buffer.detach().clone() for _, buffer in kept]
        self._swapped: nn.Module | None = None

    @torch.no_grad()
    def update(self, weight: float) -> None:
        """Move each average toward its parameter: ``average += weight * (parameter - average)``.

        ``weight`` is ``1 - decay`` for an EMA and ``1 / (count + 1)`` for an equal-weight mean; the first
        update copies the parameters whatever the weight. One fused kernel per device and dtype, no host sync.
        """
        if self._swapped is not None:
            raise RuntimeError("The averaged weights are swapped into the model: updating the average now would "
                               "average the average. Leave the `swapped_in` block first.")
        if self.count == 0:
            torch._foreach_copy_(self.averages, self._sources)
        else:
            torch._foreach_lerp_(self.averages, self._sources, weight)
        self.count += 1

    @contextlib.contextmanager
    def swapped_in(self, module: nn.Module) -> Iterator[nn.Module]:
        """Write the averages into ``module``'s parameters (and SWA's BatchNorm statistics) for the block.

        In place, under ``torch.no_grad``: the module's tensors keep their storage; on exit (also after an
        exception) their own values are copied back, bit for bit. Nested use is a no-op (already swapped in).

        Raises:
            RuntimeError: nothing averaged yet, or ``module`` does not have the averaged parameters.
        """
        if self.count == 0:
            raise RuntimeError(f"The {self.kind.upper()} average holds no weights yet (no update so far): "
                               "train past the point where averaging starts first.")
        if self._swapped is not None:
            if self._swapped is not module:
                raise RuntimeError("The averaged weights are already swapped into another module.")
            yield module
            return
        targets = self._targets(module)
        with torch.no_grad():
            own = [tensor.clone() for tensor in targets]
            torch._foreach_copy_(targets, self.averages + self.buffers)
        self._swapped = module
        try:
            yield module
        finally:
            with torch.no_grad():
                torch._foreach_copy_(targets, own)
            self._swapped = None

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Write the averages into ``module`` for good (fit's ``final_weights="averaged"``)."""
        if self._swapped is not None:
            raise RuntimeError("The averaged weights are swapped in: leave the `swapped_in` block first.")
        torch._foreach_copy_(self._targets(module), self.averages + self.buffers)

    @torch.no_grad()
    def keep_buffers(self, module: nn.Module) -> None:
        """Take ``module``'s BatchNorm statistics as the average's (after :func:`recompute_batchnorm`)."""
        if self.buffers:
            torch._foreach_copy_(self.buffers, self._targets(module)[len(self.averages):])

    def _targets(self, module: nn.Module) -> list[torch.Tensor]:
        parameters, buffers = dict(module.named_parameters()), dict(module.named_buffers())
        if list(parameters) != self.names or any(name not in buffers for name in self.buffer_names):
            raise RuntimeError(f"The averaged weights belong to a module with parameters {self.names}; "
                               f"this one has {list(parameters)}. Swap them into the model they were averaged on.")
        return [parameters[name] for name in self.names] + [buffers[name] for name in self.buffer_names]

    def state_dict(self) -> dict[str, Any]:
        """Kind, count and averaged tensors by name (loads with ``torch.load(weights_only=True)``)."""
        return {"kind": self.kind, "count": self.count, "averages": dict(zip(self.names, self.averages, strict=True)),
                "buffers": dict(zip(self.buffer_names, self.buffers, strict=True))}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (copied into the tensors held, on their devices)."""
        if state["kind"] != self.kind or list(state["averages"]) != self.names or \
                list(state["buffers"]) != self.buffer_names:
            raise RuntimeError(f"The saved {str(state['kind']).upper()} average of parameters "
                               f"{list(state['averages'])} does not fit this {self.kind.upper()} average of "
                               f"{self.names}: resume with the same model and averaging callback.")
        saved = [*state["averages"].values(), *state["buffers"].values()]
        for held, value in zip(self.averages + self.buffers, saved, strict=True):
            held.copy_(value)
        self.count = int(state["count"])


@torch.no_grad()
def recompute_batchnorm(module: nn.Module, inputs: Iterable[Any], forward: Callable[[Any], Any]) -> int:
    """Recompute the BatchNorm running statistics of ``module`` as the equal mean over ``inputs``' batches.

    What ``torch.optim.swa_utils.update_bn`` does: reset the statistics, run every input through
    ``forward`` in training mode with ``momentum=None`` (a cumulative average), then restore momenta and
    each layer's train/eval mode. Under torchrun the ranks' statistics are combined, weighted by their
    batch counts, so every rank holds those of all ranks' batches. Returns the number of batches run.
    """
    layers = [layer for layer in module.modules()
              if isinstance(layer, _BatchNorm) and layer.track_running_stats]
    if not layers:
        return 0
    momenta = {layer: layer.momentum for layer in layers}
    modes = [(layer, layer.training) for layer in module.modules()]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    module.train()
    batches = 0
    try:
        for x in inputs:
            forward(x)
            batches += 1
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        for each, training in modes:
            each.training = training
    if launched_distributed():
        _combine_ranks(layers, batches)
    return batches


def _combine_ranks(layers: list[_BatchNorm], batches: int) -> None:
    """Each rank's statistics are means over its batches: the mean over all batches weighs them by count."""
    stats = [stat for layer in layers for stat in (layer.running_mean, layer.running_var) if stat is not None]
    total = all_reduce_sum(torch.tensor(float(batches), device=stats[0].device))
    for stat in stats:
        stat.copy_(all_reduce_sum(stat * batches) / total)
    for layer in layers:
        if layer.num_batches_tracked is not None:
            layer.num_batches_tracked.copy_(total.to(layer.num_batches_tracked.dtype))


@contextlib.contextmanager
def averaged_weights(model: nn.Module) -> Iterator[nn.Module]:
    """``Model.averaged_weights()``: swap in the average of the model's last fit, and back on exit.

    The average is the one the model's last (or running) fit kept through an EMA or SWA callback
    (``model._weight_average``, written by those callbacks when training begins).

    Raises:
        RuntimeError: no fit of ``model`` has averaged weights, or the average holds nothing yet.

    Example:
        >>> with averaged_weights(nn.Linear(1, 1)):
        ...     pass
        Traceback (most recent call last):
        ...
        RuntimeError: model.averaged_weights() needs weights averaged during fit, ...
    """
    average = model.__dict__.get("_weight_average")
    if average is None:
        raise RuntimeError(_NO_AVERAGE)
    with average.swapped_in(unwrap(model)):  # the callbacks averaged the unwrapped network
        yield model
