"""Loads that never half-apply: compare a file with the model before anything is loaded.

* :func:`load_weights`: ``Model.load_weights`` (keys and shapes checked first; ``strict=False``
  warns about what it skipped and returns torch's incompatible-keys result);
* :func:`check_weights`: the missing / unexpected / shape-mismatched keys of a state_dict;
* :func:`check_resumable`: a training checkpoint against the compiled model: weights, the
  optimizer's type and parameter groups, the scheduler's type and, for a mid-epoch
  checkpoint, the batch size and sample count it was written with.

Every mismatch is a :class:`CheckpointMismatchError` raised before the model, the optimizer,
the history or any callback is touched.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from ..distributed import unwrap
from ..fsdp import load_full_model_state
from .files import CheckpointError, safe_load
from .training_state import require_training_checkpoint, weights_of

#: Keys listed by name in a message; the rest are counted.
SHOWN = 5


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint does not fit the model it is loaded into (nothing was loaded)."""


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return f"{shown} (and {len(keys) - SHOWN} more)" if len(keys) > SHOWN else shown


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def key_differences(expected: Mapping[str, Any], loaded: Mapping[str, Any]) -> tuple[list, list, list]:
    """``(missing, unexpected, mismatched)`` keys of ``loaded`` against ``expected`` (state_dicts).

    ``mismatched`` holds ``(key, loaded shape, expected shape)`` for tensors present in both.

    Example:
        >>> key_differences({"w": torch.zeros(2), "b": torch.zeros(1)}, {"w": torch.zeros(3), "c": torch.zeros(1)})
        (['b'], ['c'], [('w', (3,), (2,))])
    """
    missing = [key for key in expected if key not in loaded]
    unexpected = [key for key in loaded if key not in expected]
    mismatched = [(key, _shape(loaded[key]), _shape(expected[key])) for key in expected
                  if key in loaded and _shape(expected[key]) is not None and _shape(loaded[key]) is not None
                  and _shape(expected[key]) != _shape(loaded[key])]
    return missing, unexpected, mismatched


def check_weights(network: torch.nn.Module, state: Mapping[str, Any], source: str,
                  strict: bool = True) -> tuple[list[str], list[str]]:
    """Raise unless ``state`` loads into ``network``; return the (missing, unexpected) keys it may skip.

    Shape mismatches are an error even with ``strict=False`` (torch would load the other
    keys first, then raise).

    Example:
        >>> check_weights(torch.nn.Linear(2, 1), {"weight": torch.zeros(1, 2)}, "w.pt", strict=False)
        (['bias'], [])
    """
    expected = network.state_dict()
    missing, unexpected, mismatched = key_differences(expected, state)
    problems = []
    if strict and missing:
        problems.append(f"missing from the file ({len(missing)} of the model's {len(expected)}): {_listed(missing)}")
    if strict and unexpected:
        problems.append(f"in the file but not in the model ({len(unexpected)}): {_listed(unexpected)}")
    if mismatched:
        shapes = [f"{key}: file {file_shape}, model {model_shape}" for key, file_shape, model_shape in mismatched]
        problems.append(f"shape mismatches ({len(mismatched)}): {_listed(shapes)}")
    if problems:
        advice = ("Load a file saved from the same architecture" if mismatched else
                  "Load a file saved from the same architecture, or pass strict=False to load the matching "
                  "keys and skip the others")
        raise CheckpointMismatchError(
            f"The weights in {source!r} do not fit {type(network).__name__}: {'; '.join(problems)}. "
            f"Nothing was loaded. {advice}.")
    return missing, unexpected


def load_weights(model: Any, path: str | os.PathLike, strict: bool = True, trust_checkpoint: bool = False) -> Any:
    """``Model.load_weights``: check, then load; return torch's ``(missing_keys, unexpected_keys)`` result.

    Args:
        model: the Model (its unwrapped network gets the weights).
        path: a weights file or a training checkpoint.
        strict: False loads the matching keys and warns naming the missing and unexpected ones.
        trust_checkpoint: allow files that need full unpickling.

    Example:
        >>> import tempfile; p = os.path.join(tempfile.mkdtemp(), "w.pt")
        >>> torch.save({"weight": torch.ones(1, 2)}, p)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     result = load_weights(torch.nn.Linear(2, 1), p, strict=False)
        >>> result.missing_keys, "bias" in str(caught[0].message)
        (['bias'], True)
    """
    source = os.fspath(path)
    if os.path.isdir(source):
        raise IsADirectoryError(f"`load_weights` needs a file. Received: path={source!r}, which is a directory. "
                                "Pass the weights file inside it (e.g. a ModelCheckpoint file).")
    network = unwrap(model)
    loaded = safe_load(source, map_location=model.device if hasattr(model, "device") else "cpu",
                       trust_checkpoint=trust_checkpoint)
    state = weights_of(loaded, source, network.state_dict().keys())
    missing, unexpected = check_weights(network, state, source, strict=strict)
    result = load_full_model_state(network, state, strict=strict)  # under FSDP each rank keeps its shard
    if missing or unexpected:
        warnings.warn(f"load_weights({source!r}, strict=False) skipped {len(missing)} missing key(s)"
                      f"{': ' + _listed(missing) if missing else ''} and {len(unexpected)} unexpected key(s)"
                      f"{': ' + _listed(unexpected) if unexpected else ''}. The missing ones keep their "
                      "current values.", UserWarning, stacklevel=3)
    return result


def check_resumable(model: Any, session: Any, checkpoint: Mapping[str, Any], source: str) -> None:
    """Raise unless the training ``checkpoint`` can resume ``session``'s fit of ``model``; change nothing.

    Args:
        model: the Model being fitted.
        session: the fit's Session (``config``, and ``batches.sizes``: ``(batch_size, samples)``).
        checkpoint: a training checkpoint dict (``training_state.capture``).
        source: the file name, for the messages.
    """
    require_training_checkpoint(checkpoint, source)
    check_weights(unwrap(model), checkpoint["model"], source)
    _check_optimizer(session.config.optimizer, checkpoint, source)
    saved_scheduler, scheduler = checkpoint.get("lr_scheduler_type"), session.config.lr_scheduler
    if saved_scheduler is not None and scheduler is not None and type(scheduler).__name__ != saved_scheduler:
        raise CheckpointMismatchError(
            f"{source!r} was saved with the learning-rate scheduler {saved_scheduler}; this model is compiled "
            f"with {type(scheduler).__name__}. Nothing was loaded. Compile with the scheduler of the run that "
            "wrote the checkpoint, or start a new run from its weights with load_weights().")
    saved_state = checkpoint.get("lr_scheduler")
    if isinstance(saved_state, dict) and "schedule" in saved_state and scheduler is not None and \
            saved_state["schedule"] != repr(getattr(scheduler, "schedule", None)):
        raise CheckpointMismatchError(
            f"{source!r} was saved with the learning-rate schedule {saved_state['schedule']}; this model is compiled "
            f"with {getattr(scheduler, 'schedule', scheduler)!r}. Nothing was loaded. Compile with the schedule of "
            "the run that wrote the checkpoint, or start a new run from its weights with load_weights().")
    check_replay_data(checkpoint, session.batches.sizes if session.batches is not None else None, source)


def _check_optimizer(optimizer: torch.optim.Optimizer, checkpoint: Mapping[str, Any], source: str) -> None:
    saved_type = checkpoint.get("optimizer_type")
    if saved_type is not None and saved_type != type(optimizer).__name__:
        raise CheckpointMismatchError(
            f"{source!r} was saved with the optimizer {saved_type}; this model is compiled with "
            f"{type(optimizer).__name__}. Nothing was loaded. Compile with the optimizer of the run that wrote "
            f"the checkpoint (e.g. compile(optimizer={saved_type.lower()!r}, ...)), or start a new run from its "
            "weights with load_weights().")
    saved = checkpoint["optimizer"]
    saved_sizes = [len(group["params"]) for group in saved["param_groups"]]
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    if saved_sizes != sizes:
        raise CheckpointMismatchError(
            f"The optimizer state in {source!r} has parameter groups of sizes {saved_sizes}; the compiled "
            f"optimizer has {sizes}. Nothing was loaded. Compile the optimizer over the same parameters "
            "(and groups) as the run that wrote the checkpoint.")
    states = saved.get("state", {})
    for saved_group, group in zip(saved["param_groups"], optimizer.param_groups, strict=True):
        for saved_id, parameter in zip(saved_group["params"], group["params"], strict=True):
            for name, value in states.get(saved_id, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != parameter.shape:
                    raise CheckpointMismatchError(
                        f"The optimizer state {name!r} in {source!r} has shape {tuple(value.shape)} for a "
                        f"parameter of shape {tuple(parameter.shape)}. Nothing was loaded. The optimizer "
                        "was built over the parameters in another order: compile as the run that wrote it did.")


def check_replay_data(checkpoint: Mapping[str, Any], sizes: tuple[int | None, int | None] | None,
                      source: str) -> None:
    """A mid-epoch checkpoint resumes only with the batch size and sample count it was written with.

    Skipping its trained batches with other sizes would skip other samples (some trained
    twice, some never), so that is refused.

    Example:
        >>> check_replay_data({"batch": 2, "batch_size": 4, "num_samples": 10}, (4, 10), "b.pt")
    """
    batch = checkpoint.get("batch", 0) + checkpoint.get("pass_offset", 0)  # batches a resume skips
    if not batch or sizes is None:
        return
    saved = (checkpoint.get("batch_size"), checkpoint.get("num_samples"))
    if all(old is None or new is None or old == new for old, new in zip(saved, sizes, strict=True)):
        return
    raise CheckpointMismatchError(
        f"{source!r} was written in the middle of epoch {checkpoint.get('epoch', 0) + 1}, after {batch} "
        f"batches, with batch_size={saved[0]} and {saved[1]} training samples; this fit has batch_size="
        f"{sizes[0]} and {sizes[1]} samples. Skipping the {batch} trained batches now would skip other "
        "samples. Nothing was loaded. Resume with the batch_size and training data of the interrupted run, "
        "or resume from a checkpoint written at an epoch end (save_freq='epoch').")


def train_sizes(source: Any) -> tuple[int | None, int | None]:
    """``(batch_size, samples)`` of a training batch source, all ranks' samples (None where it cannot tell).

    Example:
        >>> class Source: batch_size, num_samples = 4, 10
        >>> train_sizes(Source())
        (4, 10)
    """
    batch_size = getattr(source, "batch_size", None)
    if batch_size is None:
        batch_size = getattr(getattr(source, "loader", None), "batch_size", None)
    # The whole data's count, not this rank's share: rank 0 writes the checkpoint every rank resumes from.
    return batch_size, getattr(source, "total_samples", getattr(source, "num_samples", None))
