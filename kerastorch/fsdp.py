"""FSDP2 for ``compile(strategy="fsdp")``: the sharding plan, full state dicts, gradient sync, memory accounting.

Under torchrun, ``strategy="fsdp"`` (or ``strategy=FSDP(...)``) shards the model with
``torch.distributed.fsdp.fully_shard``: each planned submodule becomes one unit whose parameters are
all-gathered for its forward and backward and whose gradients are reduce-scattered, then the root
takes the rest. Parameters, gradients and optimizer state then live as ``DTensor`` shards, about
1/world_size of them per rank. The plan (:func:`sharding_plan`):

* ``FSDP(modules=(Block,))``: every submodule of those classes (inner ones first), then the root;
* the default: each direct child holding at least ``min_params`` parameters, looking inside
  ``nn.ModuleList`` / ``nn.ModuleDict`` (containers without a forward of their own), then the root.

``compile(precision=...)``: "bf16-mixed" / "16-mixed" become FSDP2's ``MixedPrecisionPolicy``
(:func:`mixed_precision_policy`): each unit all-gathers bf16/fp16 copies of its float32 shards and
computes with them, and gradients are reduce-scattered in float32 into float32 shards, which the
optimizer steps. The step still runs under ``torch.autocast`` as without FSDP, so the operations on
autocast's float32 list (losses, softmax, norms) compute in float32 from the low-precision
activations. BatchNorm layers are float32 units of their own (their running statistics are float32).

State leaves a sharded model only as full state dicts: :func:`full_model_state` and
:func:`full_optimizer_state` gather them to rank 0 (CPU tensors; the other ranks get ``{}``), in the
format a single-process model and optimizer use (optimizer state keyed by parameter index), so a
file written under FSDP loads anywhere; :func:`load_full_model_state` and
:func:`load_full_optimizer_state` give every rank its shard of a full state dict. Gathering is a
collective: under FSDP every rank takes part in a save (:func:`takes_part_in_saves`) and rank 0 writes.
Without FSDP these functions are the plain ``state_dict`` / ``load_state_dict`` calls.

``torch.distributed.fsdp`` takes seconds to import, so it is imported only when a model is sharded.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .distributed import is_rank_zero, strip_prefixes, unwrap

#: The default ``FSDP(min_params=...)``: a child this large is worth its own all-gather.
DEFAULT_MIN_PARAMS = 1_000_000


@dataclass(frozen=True)
class FSDP:
    """``compile(strategy=FSDP(...))``: how FSDP2 shards the model under torchrun.

    Args:
        modules: submodule classes that each become one FSDP unit (e.g. the transformer block);
            empty: the default plan, the direct children with at least ``min_params`` parameters.
        min_params: the default plan's threshold (ignored when ``modules`` is given).
        reshard_after_forward: free each unit's gathered parameters after its forward and gather
            them again in backward (least memory; ZeRO-3). False keeps them until the backward
            (one all-gather fewer per step; ZeRO-2-like memory).

    Example:
        >>> FSDP(modules=(nn.Linear,))
        FSDP(modules=(<class 'torch.nn.modules.linear.Linear'>,), min_params=1000000, reshard_after_forward=True)
        >>> FSDP(min_params=0)
        Traceback (most recent call last):
        ...
        ValueError: `min_params` must be a positive int. Received: min_params=0. E.g. FSDP(min_params=1_000_000).
    """

    modules: tuple[type[nn.Module], ...] = ()
    min_params: int = DEFAULT_MIN_PARAMS
    reshard_after_forward: bool = True

    def __post_init__(self) -> None:
        modules = self.modules
        if isinstance(modules, type):
            modules = (modules,)
        if not isinstance(modules, Sequence) or not all(isinstance(m, type) and issubclass(m, nn.Module)
                                                        for m in modules):
            raise TypeError(f"`modules` must be a tuple of nn.Module classes. Received: modules={self.modules!r}. "
                            "E.g. FSDP(modules=(TransformerBlock,)).")
        object.__setattr__(self, "modules", tuple(modules))
        if isinstance(self.min_params, bool) or not isinstance(self.min_params, int) or self.min_params < 1:
            raise ValueError(f"`min_params` must be a positive int. Received: min_params={self.min_params!r}. "
                             "E.g. FSDP(min_params=1_000_000).")
        if not isinstance(self.reshard_after_forward, bool):
            raise TypeError(f"`reshard_after_forward` must be True or False. Received: "
                            f"reshard_after_forward={self.reshard_after_forward!r}")


def sharding_plan(model: nn.Module, options: FSDP) -> list[str]:
    """The names of the submodules ``fully_shard`` is applied to, in order; ``""`` (the root) is last.

    Raises:
        ValueError: ``options.modules`` names classes of which ``model`` has no submodule.

    Example:
        >>> net = nn.Sequential(nn.Linear(100, 100), nn.ReLU(), nn.ModuleList([nn.Linear(100, 2)]))
        >>> sharding_plan(net, FSDP(min_params=200))
        ['0', '2.0', '']
        >>> sharding_plan(net, FSDP(modules=(nn.Linear,)))
        ['2.0', '0', '']
    """
    if not options.modules:
        return [*_large_children(model, "", options.min_params), ""]
    named = [name for name, module in model.named_modules() if name and isinstance(module, options.modules)]
    if not named:
        kinds = sorted({type(m).__name__ for name, m in model.named_modules() if name})
        raise ValueError(f"FSDP(modules={tuple(m.__name__ for m in options.modules)}) matches no submodule of "
                         f"{type(model).__name__}; its submodule classes are: {', '.join(kinds) or 'none'}. "
                         "Name the class of its repeated block, e.g. FSDP(modules=(TransformerBlock,)).")
    # fully_shard goes bottom-up: a unit nested in another is sharded first (stable: model order otherwise)
    return [*sorted(named, key=lambda name: -name.count(".")), ""]


def _large_children(module: nn.Module, prefix: str, min_params: int) -> Iterator[str]:
    for name, child in module.named_children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):  # no forward to hook: its items are the units
            yield from _large_children(child, f"{prefix}{name}.", min_params)
        elif sum(p.numel() for p in child.parameters()) >= min_params:
            yield f"{prefix}{name}"


def mixed_precision_policy(precision: str) -> Any:
    """FSDP2's ``MixedPrecisionPolicy`` for a resolved ``compile(precision=...)``.

    Mixed modes gather parameters and compute in the low dtype and reduce gradients in float32
    (the sharded parameters and the optimizer stay float32); "32" changes nothing.

    Example:
        >>> mixed_precision_policy("bf16-mixed").param_dtype, mixed_precision_policy("32").param_dtype
        (torch.bfloat16, None)
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32 if dtype is not None else None)


def shard(model: nn.Module, options: FSDP, precision: str, optimizer: torch.optim.Optimizer) -> None:
    """Apply ``fully_shard`` along :func:`sharding_plan` (the process group must exist), in place.

    FSDP replaces the parameters with sharded ones (each unit's full parameters are moved to the
    process's device one unit at a time); ``optimizer``'s parameter groups are pointed at them.
    Under a mixed precision each BatchNorm layer is a unit of its own that computes in float32:
    its running statistics are float32 buffers, which ``batch_norm`` cannot mix with bf16 weights.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    before = dict(model.named_parameters())
    policy = mixed_precision_policy(precision)
    float32 = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
    plan = sharding_plan(model, options)
    if policy.param_dtype is not None:
        plan = [name for name, m in model.named_modules() if name and isinstance(m, _BatchNorm) and name not in plan] \
            + plan
    for name in plan:
        module = model.get_submodule(name)
        fully_shard(module, reshard_after_forward=options.reshard_after_forward,
                    mp_policy=float32 if policy.param_dtype is not None and isinstance(module, _BatchNorm) else policy)
    after = dict(model.named_parameters())
    replaced = {id(old): after[name] for name, old in before.items()}
    for group in optimizer.param_groups:
        group["params"] = [replaced.get(id(p), p) for p in group["params"]]


def check_shardable(model: nn.Module, options: FSDP, optimizer: torch.optim.Optimizer) -> None:
    """Raise before anything changes when ``model`` cannot be sharded as asked.

    Example:
        >>> net = nn.Linear(2, 1); check_shardable(net, FSDP(), torch.optim.SGD(net.parameters()))
    """
    sharding_plan(model, options)
    if optimizer.state:
        raise ValueError("strategy='fsdp' needs an optimizer without state: FSDP replaces the parameters with "
                         f"shards, and the state of {type(optimizer).__name__} is for the full ones. Pass a new "
                         "optimizer, or a name: compile(optimizer='adam', optimizer_kwargs={...}).")


def is_sharded(model: nn.Module) -> bool:
    """True when ``model`` (its root) is sharded with FSDP2.

    Example:
        >>> is_sharded(nn.Linear(2, 1))
        False
    """
    fsdp = sys.modules.get("torch.distributed.fsdp")  # not imported yet: nothing can be sharded
    return fsdp is not None and isinstance(unwrap(model), fsdp.FSDPModule)


def takes_part_in_saves(model: nn.Module) -> bool:
    """Whether this rank takes part in writing a checkpoint: rank 0; every rank when ``model`` is
    sharded (gathering its state is a collective; rank 0 still writes alone).

    Example:
        >>> takes_part_in_saves(nn.Linear(2, 1))  # one process: rank 0
        True
    """
    return is_rank_zero() or is_sharded(model)


def _options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(**kwargs)


def _resharded(model: nn.Module) -> nn.Module:
    """The root, every unit holding its sharded parameters (a forward under ``reshard_after_forward=False``,
    e.g. evaluation, leaves them gathered, and the state-dict functions expect shards)."""
    root = unwrap(model)
    if not is_sharded(root):
        return root
    from torch.distributed.fsdp import FSDPModule
    for module in root.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
    return root


def full_model_state(model: nn.Module) -> dict[str, Any]:
    """The model's full state_dict without wrapper prefixes; under FSDP a collective whose
    result is on rank 0 (CPU tensors) while the other ranks get ``{}``.

    Example:
        >>> list(full_model_state(nn.Linear(2, 1)))
        ['weight', 'bias']
    """
    if not is_sharded(model):
        return strip_prefixes(unwrap(model).state_dict())
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    return get_model_state_dict(_resharded(model), options=_options(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()``; under FSDP gathered to rank 0 (``{}`` elsewhere) in that same format.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> full_optimizer_state(net, torch.optim.SGD(net.parameters(), lr=0.1))["param_groups"][0]["params"]
        [0, 1]
    """
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    state: Any = get_optimizer_state_dict(_resharded(model), optimizer,
                                          options=_options(full_state_dict=True, cpu_offload=True))
    if not state:
        return {}
    # torch.distributed.checkpoint keys parameters by name; Optimizer.state_dict numbers them over the groups
    index = {name: i for i, name in enumerate(n for group in state["param_groups"] for n in group["params"])}
    return {"state": {index[name]: value for name, value in state["state"].items()},
            "param_groups": [{**group, "params": [index[n] for n in group["params"]]}
                             for group in state["param_groups"]]}


def load_full_model_state(model: nn.Module, state: dict[str, Any], strict: bool = True) -> Any:
    """Load a full state_dict (every rank holds it); under FSDP each rank keeps its shard.

    Returns torch's ``(missing_keys, unexpected_keys)`` result.

    Example:
        >>> net = nn.Linear(2, 1); load_full_model_state(net, nn.Linear(2, 1).state_dict()).missing_keys
        []
    """
    if not is_sharded(model):
        return unwrap(model).load_state_dict(state, strict=strict)
    from torch.distributed.checkpoint.state_dict import set_model_state_dict
    # set_model_state_dict puts the shards in the dict it is given: the caller's stays as it was
    return set_model_state_dict(_resharded(model), dict(state), options=_options(full_state_dict=True, strict=strict))


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a full ``optimizer.state_dict()`` (every rank holds it); under FSDP each rank keeps its shard.

    Example:
        >>> net = nn.Linear(2, 1); opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> load_full_optimizer_state(net, opt, opt.state_dict())
    """
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
    root = _resharded(model)
    names_of = {id(p): name for name, p in root.named_parameters()}
    names = [names_of[id(p)] for group in optimizer.param_groups for p in group["params"]]
    by_name: Any = {"state": {names[i]: dict(value) for i, value in state["state"].items()},
               "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                                for group in state["param_groups"]]}
    set_optimizer_state_dict(root, optimizer, by_name, options=_options(full_state_dict=True))


def all_finite(model: nn.Module) -> bool:
    """True when every floating parameter and buffer of a sharded ``model`` is finite on every rank
    (a collective: one all-reduce).

    Example:
        >>> all_finite(nn.Linear(2, 1))
        True
    """
    tensors = [_local(t).detach().float() for t in _resharded(model).state_dict().values() if t.is_floating_point()]
    norms = torch._foreach_norm(tensors, 1) if tensors else [torch.zeros(())]
    flag = torch.stack(norms).isfinite().all().to(torch.int32).reshape(1)
    if is_sharded(model):
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())  # host-sync: once per checkpoint


@contextlib.contextmanager
def no_gradient_sync(model: nn.Module) -> Iterator[None]:
    """Backward without reduce-scatter (gradients accumulate unsharded), for the batches of an accumulation
    window that do not step: FSDP2's counterpart of DDP's ``no_sync``."""
    model.set_requires_gradient_sync(False)  # type: ignore[operator]  # an FSDPModule method
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's shard on this rank, or the tensor itself."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor


def _nbytes(tensors: Any) -> int:
    return sum(_local(t).numel() * _local(t).element_size() for t in tensors if isinstance(t, torch.Tensor))


def sharded_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes this rank holds now for parameters, gradients and optimizer state (and their total).

    Under FSDP each is this rank's shards; without, the full tensors. Gradients count when they
    exist (after a backward, before ``zero_grad``); optimizer state after the first step.

    Example:
        >>> net = nn.Linear(3, 2); opt = torch.optim.Adam(net.parameters())
        >>> net(torch.ones(1, 3)).sum().backward(); opt.step()
        >>> sharded_bytes(net, opt)
        {'parameters': 32, 'gradients': 32, 'optimizer_state': 72, 'total': 136}
    """
    params = list(unwrap(model).parameters())
    counts = {"parameters": _nbytes(params), "gradients": _nbytes(p.grad for p in params),
              "optimizer_state": _nbytes(v for state in optimizer.state.values() for v in state.values())}
    return {**counts, "total": sum(counts.values())}
