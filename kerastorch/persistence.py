"""The persistence surface of Model: ``save`` (a full training checkpoint), ``save_weights``, ``load_weights``.

A mixin so that :mod:`kerastorch.model` stays the training API; the work is in :mod:`kerastorch.checkpointing`.
Under ``strategy="fsdp"`` every rank calls them (gathering the shards is a collective) and rank 0 alone
writes; the files hold full state dicts that a single-process model loads.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from .checkpointing import atomic_save, compatibility
from .checkpointing.training_state import capture
from .checks import require_compiled
from .distributed import is_rank_zero
from .engine.session import Session
from .fsdp import full_model_state, is_sharded


class PersistenceSurface:
    """``model.save(path)``, ``model.save_weights(path)`` and ``model.load_weights(path)``."""

    _config: Any
    _record: Any

    def save(self: Any, path: str | os.PathLike) -> None:
        """Write a full training checkpoint atomically (weights, optimizer, history, RNG...).

        ``fit(resume_from=path)`` continues from it; ``load_weights(path)`` takes its weights.

        Example:
            >>> from torch import nn; from kerastorch import Model
            >>> net = Model.wrap(nn.Linear(2, 1)); net.compile("sgd", "mse", device="cpu")
            >>> import tempfile, os; d = tempfile.mkdtemp(); net.save(os.path.join(d, "full.pt"))
        """
        require_compiled(self._config, "save")
        _write(self, capture(self, Session(self._config, self._record, None), mid_epoch=False), path)

    def save_weights(self: Any, path: str | os.PathLike) -> None:
        """Write the plain state_dict (no wrapper prefixes) atomically; loadable in bare PyTorch."""
        _write(self, full_model_state(self), path)

    def load_weights(self: Any, path: str | os.PathLike, strict: bool = True, trust_checkpoint: bool = False) -> Any:
        """Load weights (weights file or training checkpoint; torchkeras ``net.*`` keys too), checking them first.

        A key or shape mismatch raises ``CheckpointMismatchError`` (a ValueError) and loads nothing; ``strict=False``
        skips missing/unexpected keys with a warning. Returns torch's incompatible-keys result.

        Example:
            >>> from torch import nn; from kerastorch import Model
            >>> net = Model.wrap(nn.Linear(2, 1)); import tempfile, os; p = os.path.join(tempfile.mkdtemp(), "w.pt")
            >>> net.save_weights(p); net.load_weights(p).missing_keys
            []
        """
        return compatibility.load_weights(self, path, strict=strict, trust_checkpoint=trust_checkpoint)


def _write(model: Any, state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` atomically; under FSDP rank 0 writes and every rank returns once the file is there."""
    if not is_sharded(model):
        atomic_save(state, path)
        return
    if is_rank_zero():
        atomic_save(state, path)
    torch.distributed.barrier()  # so that a rank may read the file as soon as save returns
