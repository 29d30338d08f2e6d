"""Devices, parallel wrappers and rank-zero helpers.

Everything that knows about CUDA, DataParallel, DDP and ``torch.compile``
wrappers lives here, so the rest of the package sees plain modules.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch import nn

from .slurm import adopt_slurm_environment

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Resolve ``compile(device=...)``.

    ``"auto"`` (or None) picks CUDA when available (the local rank's GPU under
    torchrun or ``srun``), else CPU. An explicit device is honoured; asking for CUDA on a
    machine without it is an error now rather than at the first batch.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"`device` must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device. "
                         f"Received: device={device!r}") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} was requested but CUDA is not available on "
                               "this machine. Use device='auto' or device='cpu'.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise RuntimeError(f"device={device!r} was requested but only "
                               f"{torch.cuda.device_count()} CUDA device(s) are visible.")
    return resolved


@functools.cache
def adopt_launcher_environment() -> bool:
    """Once per process: in a task of a multi-task ``srun`` step (no torchrun), write torchrun's variables
    from SLURM's (:func:`kerastorch.slurm.adopt_slurm_environment`); True if it did.

    The rank queries below call it first, so ``rank()``, ``local_rank()``, ``resolve_device("auto")`` and
    compile's DDP set-up see the task's place; after the first call it costs a cached function call.

    Example:
        >>> adopt_launcher_environment() is adopt_launcher_environment()  # decided once
        True
    """
    return adopt_slurm_environment()


def local_rank() -> int:
    adopt_launcher_environment()
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank() -> int:
    """Global rank: from the process group when initialised, else the torchrun env, else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    adopt_launcher_environment()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    adopt_launcher_environment()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_rank_zero() -> bool:
    return rank() == 0


def unwrap(module: nn.Module) -> nn.Module:
    """Strip DataParallel / DDP / torch.compile wrappers."""
    while True:
        if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


def strip_prefixes(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Remove ``module.`` and ``_orig_mod.`` prefixes from state_dict keys."""
    cleaned = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        cleaned[key] = value
    return cleaned


# ---------------------------------------------------------------- torchrun / DDP
def launched_distributed() -> bool:
    """True under torchrun or ``srun`` with more than one process (or an initialised multi-rank group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size() > 1
    adopt_launcher_environment()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def ensure_process_group(device: torch.device) -> None:
    """Initialise the default process group from torchrun's environment unless the user did.

    nccl on CUDA, gloo on CPU. Multi-node works the same way: ``torchrun --nnodes=N
    --node-rank=i --rdzv-endpoint=host:port`` sets the environment this reads, and so does
    ``srun`` through :func:`adopt_launcher_environment` (one task per GPU, no torchrun).
    """
    if torch.distributed.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def wrap_data_parallel(model: nn.Module, device_ids: Any) -> nn.Module:
    """``nn.DataParallel`` over the visible GPUs, or the bare model (with a warning) if fewer than 2."""
    import warnings
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    ids = list(range(count)) if device_ids is True else list(device_ids)
    if count < 2:
        warnings.warn(f"data_parallel was requested but {count} CUDA device(s) are visible; "
                      "training on a single device. (DistributedDataParallel under torchrun is "
                      "the faster multi-GPU path.)", RuntimeWarning, stacklevel=3)
        return model
    if len(ids) < 2:
        warnings.warn(f"data_parallel={device_ids!r} names one GPU: training on it without "
                      "nn.DataParallel.", RuntimeWarning, stacklevel=3)
        return model
    return nn.DataParallel(model, device_ids=ids)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (no-op when not distributed)."""
    if launched_distributed():
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (used to stop all ranks together)."""
    if not launched_distributed():
        return flag
    value = torch.tensor(int(flag), device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's value on every rank (e.g. the shuffling seed, so all ranks permute alike)."""
    if not launched_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    torch.distributed.broadcast(tensor, src=0)
    return int(tensor.item())


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a dim-0 variable-length tensor from all ranks (padding handled here)."""
    if not launched_distributed():
        return tensor
    world = torch.distributed.get_world_size()
    length = torch.tensor([tensor.shape[0]], device=tensor.device)
    lengths = [torch.zeros_like(length) for _ in range(world)]
    torch.distributed.all_gather(lengths, length)
    longest = int(max(int(n) for n in lengths))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[:tensor.shape[0]] = tensor
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    torch.distributed.all_gather(gathered, padded)
    return torch.cat([g[:int(n)] for g, n in zip(gathered, lengths, strict=True)])
