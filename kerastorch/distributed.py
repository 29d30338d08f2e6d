"""Devices, parallel wrappers and rank-zero helpers.

Everything that knows about CUDA, DataParallel, DDP and ``torch.compile``
wrappers lives here, so the rest of the package sees plain modules.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Resolve ``compile(device=...)``.

    ``"auto"`` (or None) picks CUDA when available (the local rank's GPU under
    torchrun), else CPU. An explicit device is honoured; asking for CUDA on a
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


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank() -> int:
    """Global rank: from the process group when initialised, else the torchrun env, else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
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
