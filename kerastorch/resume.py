"""Full training state: capture it into a checkpoint dict, and resume from one.

A training checkpoint holds everything needed to continue bit-identically:
the unwrapped model state_dict (no ``module.`` / ``_orig_mod.`` prefixes),
optimizer, lr scheduler and AMP scaler states, epoch / batch / global step,
history rows, callback states, all RNG states (Python, numpy, torch CPU and
CUDA, the shuffling generator) and library versions. Every entry loads with
``torch.load(weights_only=True)``.

Mid-epoch checkpoints also hold the RNG and shuffling-generator states from the
start of the epoch (to redraw the same batch order and skip the batches
already trained) and the epoch's partial logs and metric states.
"""
from __future__ import annotations

import platform
from typing import Any

import torch

from .checkpoint import CheckpointError, capture_rng_state
from .distributed import strip_prefixes, unwrap

FORMAT = "kerastorch.training_checkpoint"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    from . import __version__
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


def capture(model: Any, mid_epoch: bool) -> dict[str, Any]:
    """The full training state of ``model`` now (epoch end, or mid-epoch)."""
    runtime = model._kt
    config, state = runtime.config, runtime.state
    checkpoint = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "versions": versions(),
        "model": strip_prefixes(unwrap(model).state_dict()),
        "optimizer": config.optimizer.state_dict(),
        "lr_scheduler": config.lr_scheduler.state_dict() if config.lr_scheduler is not None else None,
        "scaler": config.precision.scaler.state_dict(),
        "global_step": state.global_step,
        "history": [dict(row) for row in runtime.history_rows],
        "callbacks": callback_states(list(runtime.hooks.callbacks)),
        "rng": capture_rng_state(),
        "generator": runtime.generator.get_state() if runtime.generator is not None else None,
    }
    if mid_epoch:
        checkpoint.update({
            "epoch": state.epoch, "batch": len(runtime.accumulator.sizes),
            "epoch_start_rng": runtime.epoch_start_rng,
            "epoch_start_generator": runtime.epoch_start_generator,
            "partial_logs": runtime.accumulator.state_dict(),
            "metrics": {name: m.state_dict() for name, m in config.metrics.items()},
        })
    else:
        checkpoint.update({"epoch": state.epoch + 1, "batch": 0})
    return checkpoint


def is_training_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def weights_of(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The model state_dict inside a training checkpoint or a plain weights file."""
    if is_training_checkpoint(obj):
        return obj["model"]
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return strip_prefixes(obj)
    raise CheckpointError(f"{source!r} holds neither model weights nor a kerastorch training checkpoint.")


def restore(model: Any, checkpoint: dict[str, Any], source: str) -> None:
    """Load everything but the RNG states (their timing is the loop's business)."""
    if not is_training_checkpoint(checkpoint):
        raise CheckpointError(f"{source!r} is a weights-only file: it cannot resume training "
                              "(no optimizer state). Load it with model.load_weights(), or save "
                              "resumable checkpoints with ModelCheckpoint(save_weights_only=False).")
    runtime = model._kt
    config = runtime.config
    unwrap(model).load_state_dict(checkpoint["model"])
    config.optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint["lr_scheduler"] is not None and config.lr_scheduler is not None:
        config.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
    config.precision.scaler.load_state_dict(checkpoint["scaler"])
    runtime.state.global_step = checkpoint["global_step"]
    runtime.history_rows = [dict(row) for row in checkpoint["history"]]
    _restore_callbacks(list(runtime.hooks.callbacks), checkpoint["callbacks"])
    if checkpoint["generator"] is not None and runtime.generator is not None:
        runtime.generator.set_state(checkpoint["generator"])


def _restore_callbacks(callbacks: list[Any], states: dict[str, Any]) -> None:
    for key, cb in keyed_callbacks(callbacks):
        if key in states:
            cb.load_state_dict(states[key])
