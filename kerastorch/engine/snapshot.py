"""A restore point: everything a trial run of training steps changes, copied, and put back bit for bit.

:class:`RestorePoint` is what :func:`kerastorch.engine.lr_find.lr_find` takes before its sweep
and restores in ``finally``. It copies (``clone``, never a reference: ``state_dict()``
returns the live tensors) every parameter, gradient and buffer of the network (BatchNorm's
running statistics too), the optimizer's state and param groups, the AMP GradScaler, the
model's :class:`~kerastorch.engine.session.FitRecord` (history, epoch, global step, the
shuffling generator), every RNG state (Python, NumPy, torch CPU and CUDA), the generators a
user's DataLoader draws from, ``model.training`` and ``model.stop_training``. Tensors are
restored in place, so the optimizer, the scheduler and the user keep the same objects.

The copies live where the originals do (one more copy of the weights and the optimizer
state in device memory while the restore point exists).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..checkpointing.rng import capture_rng_state, restore_rng_state


def _copy(value: Any) -> Any:
    """A detached clone of a tensor, a deep copy of anything else."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


def _keep(mapping: dict[Any, Any], shared: tuple[str, ...] = ()) -> list[tuple[Any, Any, Any]]:
    """``(key, original object, copy)`` for each entry, in order; ``shared`` keys keep the object itself."""
    return [(key, value, value if key in shared else _copy(value)) for key, value in mapping.items()]


@torch.no_grad()
def _put_back(mapping: dict[Any, Any], kept: list[tuple[Any, Any, Any]]) -> None:
    """Refill ``mapping`` as it was: original tensors refilled in place, other values from their copies."""
    mapping.clear()
    for key, original, saved in kept:
        if isinstance(original, torch.Tensor):
            original.copy_(saved)
            mapping[key] = original
        else:
            mapping[key] = saved


def _loader_generators(data: Any) -> list[torch.Generator]:
    """The generators a user's DataLoader (its sampler, its batch sampler's sampler) draws from."""
    if not isinstance(data, DataLoader):
        return []
    candidates = [data.generator, getattr(data.sampler, "generator", None),
                  getattr(getattr(data.batch_sampler, "sampler", None), "generator", None)]
    found: list[torch.Generator] = []
    for generator in candidates:
        if isinstance(generator, torch.Generator) and all(generator is not seen for seen in found):
            found.append(generator)
    return found


class RestorePoint:
    """Copies of a compiled model's whole training state, restored exactly by :meth:`restore`.

    Args:
        model: the kerastorch Model (its network, ``_record``, ``training``, ``stop_training``).
        config: its CompileConfig (optimizer, GradScaler).
        data: what the trial run iterates; a DataLoader's own generators are saved too.

    Example:
        >>> from torch import nn; from kerastorch import Model
        >>> net = Model.wrap(nn.BatchNorm1d(2)); net.compile("adam", "mse", device="cpu")
        >>> point = RestorePoint(net, net._config, None)
        >>> _ = net.fit(torch.randn(8, 2), torch.randn(8, 2), verbose=0)
        >>> point.restore()
        >>> float(net.running_mean.abs().sum()), net.optimizer.state, net.history.shape
        (0.0, defaultdict(<class 'dict'>, {}), (0, 0))
    """

    def __init__(self, model: Any, config: Any, data: Any) -> None:
        self.model, self.config = model, config
        self.tensors = self._tensors(model)
        optimizer = config.optimizer
        self.groups = [(group, _keep(group, shared=("params",))) for group in optimizer.param_groups]
        self.state = [(param, state, _keep(state)) for param, state in optimizer.state.items()]
        # LRScheduler wraps optimizer.step to set this flag (its "step order" warning reads it).
        self.opt_called = optimizer.__dict__.get("_opt_called", _MISSING)
        self.scaler = _copy(config.precision.scaler.__dict__)
        record = model._record
        self.rows_list = record.history_rows  # the same list object comes back, refilled
        self.record = (record, _copy(record.history_rows), record.epoch, record.global_step, record.generator,
                       None if record.generator is None else record.generator.get_state())
        self.rng = capture_rng_state()
        self.loader_generators = [(g, g.get_state()) for g in _loader_generators(data)]
        self.modes = [(module, module.training) for module in model.modules()]
        self.stop_training = model.stop_training

    @staticmethod
    def _tensors(model: nn.Module) -> list[tuple[dict[str, Any], str, Any, Any, Any]]:
        """``(owner dict, name, tensor, copy, grad copy)`` for every parameter and buffer."""
        kept = []
        for module in model.modules():
            for store in (module._parameters, module._buffers):
                for name, tensor in store.items():
                    grad = None if tensor is None or tensor.grad is None else _copy(tensor.grad)
                    kept.append((store, name, tensor, None if tensor is None else _copy(tensor), grad))
        return kept

    @torch.no_grad()
    def restore(self) -> None:
        """Put everything back as it was when the restore point was made."""
        for store, name, tensor, saved, grad in self.tensors:
            store[name] = tensor
            if tensor is not None:
                tensor.copy_(saved)
                tensor.grad = None if grad is None else grad.clone()
        optimizer = self.config.optimizer
        for group, kept in self.groups:
            _put_back(group, kept)
        optimizer.param_groups[:] = [group for group, _ in self.groups]
        optimizer.state.clear()
        for param, state, kept in self.state:
            _put_back(state, kept)
            optimizer.state[param] = state
        if self.opt_called is _MISSING:
            optimizer.__dict__.pop("_opt_called", None)
        else:
            optimizer._opt_called = self.opt_called
        scaler = self.config.precision.scaler
        scaler.__dict__.clear()
        scaler.__dict__.update(_copy(self.scaler))
        record, rows, epoch, global_step, generator, generator_state = self.record
        self.rows_list[:] = _copy(rows)
        record.history_rows = self.rows_list
        record.epoch, record.global_step, record.generator = epoch, global_step, generator
        if generator is not None:
            generator.set_state(generator_state)
        restore_rng_state(self.rng)
        for loader_generator, state in self.loader_generators:
            loader_generator.set_state(state)
        for module, training in self.modes:  # each submodule's own mode (a frozen BatchNorm stays in eval)
            module.training = training
        self.model.stop_training = self.stop_training


_MISSING = object()
