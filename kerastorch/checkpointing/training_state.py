"""Full training state: capture it into a checkpoint dict, and resume from one.

A training checkpoint holds everything needed to continue bit-identically:
the unwrapped model state_dict (no ``module.`` / ``_orig_mod.`` prefixes),
optimizer, lr scheduler and AMP scaler states, epoch / batch / global step,
history rows, callback states, all RNG states (Python, numpy, torch CPU and
CUDA, the shuffling generator) and library versions, and the optimizer's and
scheduler's class names (checked on resume). Every entry loads with
``torch.load(weights_only=True)``.

Where training stands in its data comes from fit's epoch iterator
(``session.batches.state_dict()``): the batches run in the epoch and in the open
data pass before it, the RNG and shuffling-generator states of the pass's start
(to redraw the same batch order and skip the batches already trained) and the
batch size and sample count those batches were counted in. Mid-epoch checkpoints
also hold the epoch's partial logs and metric states.
"""
from __future__ import annotations

import platform
from collections.abc import Collection
from typing import Any

import torch

from .._version import __version__
from ..distributed import strip_prefixes
from ..fsdp import full_model_state, full_optimizer_state, load_full_model_state, load_full_optimizer_state
from .files import CheckpointError
from .rng import capture_rng_state, restore_rng_state

FORMAT = "kerastorch.training_checkpoint"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    return {"kerastorch": str(__version__), "torch": str(torch.__version__), "python": platform.python_version()}


def keyed_callbacks(callbacks: list[Any]) -> list[tuple[str, Any]]:
    """``(ClassName_i, callback)`` pairs: the i-th callback of its class, stable across runs."""
    counts: dict[str, int] = {}
    keyed = []
    for cb in callbacks:
        name = type(cb).__name__
        counts[name] = counts.get(name, -1) + 1
        keyed.append((f"{name}_{counts[name]}", cb))
    return keyed


def callback_states(callbacks: list[Any]) -> dict[str, Any]:
    states = {key: cb.state_dict() for key, cb in keyed_callbacks(callbacks)}
    return {key: state for key, state in states.items() if state}


def capture(model: Any, session: Any, mid_epoch: bool) -> dict[str, Any]:
    """The full training state of ``model`` now (epoch end, or mid-epoch).

    Args:
        model: the network (wrappers are stripped from the state_dict keys).
        session: the running call's Session (its config, record and callbacks).
        mid_epoch: also save the epoch's partial logs, metric states and the RNG
            states of its start, so a resume continues inside the epoch.
    """
    config, record = session.config, session.record
    checkpoint = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "versions": versions(),
        # Full state dicts; under FSDP gathered to rank 0 (a collective: every rank captures, rank 0 writes)
        "model": full_model_state(model),
        "optimizer": full_optimizer_state(model, config.optimizer), "optimizer_type": type(config.optimizer).__name__,
        "lr_scheduler": config.lr_scheduler.state_dict() if config.lr_scheduler is not None else None,
        "lr_scheduler_type": type(config.lr_scheduler).__name__ if config.lr_scheduler is not None else None,
        "scaler": config.precision.scaler.state_dict(),
        "global_step": record.global_step,
        "history": [dict(row) for row in record.history_rows],
        "validation_history": [dict(row) for row in record.validation_rows],
        "callbacks": callback_states(list(session.callbacks.callbacks) if session.callbacks is not None else []),
        "rng": capture_rng_state(),
        "generator": record.generator.get_state() if record.generator is not None else None,
    }
    # Where fit's epoch iterator stands (batch, open pass, its RNG); outside fit (model.save): between epochs.
    position = session.batches.state_dict() if session.batches is not None else {"batch": 0}
    if mid_epoch:
        checkpoint.update({"epoch": record.epoch, **position, "partial_logs": session.accumulator.state_dict(),
                           "metrics": {name: m.state_dict() for name, m in config.metrics.items()}})
    else:  # an epoch end: the next epoch starts at batch 0 (of a data pass that may go on: steps_per_epoch)
        checkpoint.update({"epoch": record.epoch + 1, **position})
    return checkpoint


def is_training_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def weights_of(obj: Any, source: str, expected: Collection[str] | None = None) -> dict[str, torch.Tensor]:
    """The model state_dict inside a training checkpoint or a plain weights file.

    With ``expected`` (the loading model's keys), a torchkeras ``Model(net)`` file (keys
    ``net.*``) loads into the bare network and the other way round.

    Example:
        >>> weights_of({"net.weight": torch.ones(1)}, "w.pt", expected=["weight"])
        {'weight': tensor([1.])}
    """
    if is_training_checkpoint(obj):
        return _match_net_prefix(obj["model"], expected)
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _match_net_prefix(strip_prefixes(obj), expected)
    raise CheckpointError(f"{source!r} holds neither model weights nor a kerastorch training checkpoint.")


def _match_net_prefix(state: dict[str, Any], expected: Collection[str] | None) -> dict[str, Any]:
    """Add or remove torchkeras's ``net.`` prefix when that, and only that, makes the keys match."""
    if expected is None or set(state) == set(expected):
        return state
    wanted = set(expected)
    stripped = {key.removeprefix("net."): value for key, value in state.items()}
    if all(key.startswith("net.") for key in state) and set(stripped) == wanted:
        return stripped
    prefixed = {f"net.{key}": value for key, value in state.items()}
    return prefixed if set(prefixed) == wanted else state


def require_training_checkpoint(checkpoint: Any, source: str) -> None:
    """Raise CheckpointError unless ``checkpoint`` is a training checkpoint (a weights file cannot resume)."""
    if not is_training_checkpoint(checkpoint):
        raise CheckpointError(f"{source!r} is a weights-only file: it cannot resume training "
                              "(no optimizer state). Load it with model.load_weights(), or save "
                              "resumable checkpoints with ModelCheckpoint(save_weights_only=False).")


def restore(model: Any, session: Any, checkpoint: dict[str, Any], source: str) -> int:
    """Load a training checkpoint into ``model`` and ``session``; return the epoch to start from.

    At an epoch boundary the RNG states are restored now; a checkpoint written inside a
    data pass leaves them to fit's epoch iterator (``session.batches``), which redraws the
    pass's batch order first. The caller checks the checkpoint first
    (:func:`kerastorch.checkpointing.compatibility.check_resumable`), so nothing is half-applied.
    """
    require_training_checkpoint(checkpoint, source)
    config, record = session.config, session.record
    load_full_model_state(model, checkpoint["model"])  # under FSDP each rank keeps its shard
    load_full_optimizer_state(model, config.optimizer, checkpoint["optimizer"])
    if checkpoint["lr_scheduler"] is not None and config.lr_scheduler is not None:
        config.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
    config.precision.scaler.load_state_dict(checkpoint["scaler"])
    record.global_step = checkpoint["global_step"]
    record.history_rows = [dict(row) for row in checkpoint["history"]]
    record.validation_rows = [dict(row) for row in checkpoint.get("validation_history", [])]
    _restore_callbacks(list(session.callbacks.callbacks), checkpoint["callbacks"])
    if checkpoint["generator"] is not None and record.generator is not None:
        record.generator.set_state(checkpoint["generator"])
    if not session.batches.load_state_dict(checkpoint):  # else the RNG follows the redrawn batch order
        restore_rng_state(checkpoint["rng"])
    record.epoch = checkpoint["epoch"]
    return checkpoint["epoch"]


def _restore_callbacks(callbacks: list[Any], states: dict[str, Any]) -> None:
    for key, cb in keyed_callbacks(callbacks):
        if key in states:
            cb.load_state_dict(states[key])
