"""``compile(strategy=...)``: how training spreads over devices and processes.

* ``"auto"`` (the default): DistributedDataParallel under torchrun (or ``srun``), one process otherwise;
* ``"ddp"``: the same, said explicitly (outside torchrun: a warning, one process);
* ``"fsdp"`` or ``kt.FSDP(...)``: FSDP2 shards parameters, gradients and optimizer state over the
  processes (:mod:`kerastorch.fsdp`; outside torchrun: a warning, one process);
* ``"dp"``: ``nn.DataParallel`` over the visible GPUs of one process (the deprecated
  ``compile(data_parallel=True)``; ``data_parallel=[0, 1]`` names the GPUs).
"""
from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import fsdp

STRATEGIES = ("auto", "ddp", "fsdp", "dp")


@dataclass(frozen=True)
class DataParallelIds:
    """``strategy="dp"`` over these GPUs: what the deprecated ``compile(data_parallel=[0, 1])`` asked."""

    device_ids: tuple[int, ...]


def resolve_strategy(strategy: Any) -> tuple[str, Any]:
    """``compile(strategy=...)`` as ``(kind, options)``: kind is one of :data:`STRATEGIES`; options are the
    :class:`~kerastorch.fsdp.FSDP` plan for "fsdp", the GPU ids (or True: all) for "dp", else None.

    Example:
        >>> resolve_strategy("fsdp")
        ('fsdp', FSDP(modules=(), min_params=1000000, reshard_after_forward=True))
        >>> resolve_strategy("fdsp")
        Traceback (most recent call last):
        ...
        ValueError: `strategy` must be one of 'auto', 'ddp', 'fsdp', 'dp' or a kt.FSDP(...). Received: \
strategy='fdsp'. Did you mean 'fsdp'?
    """
    if isinstance(strategy, fsdp.FSDP):
        return "fsdp", strategy
    if isinstance(strategy, DataParallelIds):
        return "dp", list(strategy.device_ids)
    if isinstance(strategy, str) and strategy in STRATEGIES:
        return strategy, fsdp.FSDP() if strategy == "fsdp" else (True if strategy == "dp" else None)
    if not isinstance(strategy, str):
        raise TypeError(f"`strategy` must be one of {', '.join(map(repr, STRATEGIES))} or a kt.FSDP(...). Received: "
                        f"strategy={strategy!r}. E.g. strategy=kt.FSDP(modules=(Block,)) to shard by block.")
    close = difflib.get_close_matches(strategy.lower(), STRATEGIES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else " 'auto' is DDP under torchrun, else one process."
    raise ValueError(f"`strategy` must be one of {', '.join(map(repr, STRATEGIES))} or a kt.FSDP(...). "
                     f"Received: strategy={strategy!r}.{hint}")


def legacy_strategy(strategy: Any, unknown: dict[str, Any]) -> Any:
    """The strategy ``compile`` runs with, taking the deprecated ``data_parallel=`` out of ``unknown``.

    ``data_parallel=True`` is ``strategy="dp"``; a list of GPU ids is "dp" over those GPUs.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     legacy_strategy("auto", {"data_parallel": True}), caught[0].category.__name__
        ('dp', 'DeprecationWarning')
    """
    if "data_parallel" not in unknown:
        return strategy
    data_parallel = unknown.pop("data_parallel")
    warnings.warn(f"compile(data_parallel={data_parallel!r}) is deprecated: pass strategy=\"dp\" (nn.DataParallel "
                  "over the visible GPUs); under torchrun, strategy='ddp' or 'fsdp'.", DeprecationWarning,
                  stacklevel=3)
    if data_parallel is False:
        return strategy
    if strategy != "auto":
        raise ValueError(f"Pass `strategy=` or the deprecated `data_parallel=`, not both. Received: "
                         f"strategy={strategy!r}, data_parallel={data_parallel!r}. Use strategy='dp' alone.")
    if data_parallel is True:
        return "dp"
    if isinstance(data_parallel, Sequence) and not isinstance(data_parallel, str) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in data_parallel):
        return DataParallelIds(tuple(data_parallel))
    raise TypeError(f"`data_parallel` must be True or a list of GPU ids. Received: data_parallel={data_parallel!r}. "
                    "Prefer strategy='dp'.")
