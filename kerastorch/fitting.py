"""fit / evaluate / predict orchestration: argument checks, data, callbacks, cleanup.

``Model.fit`` and friends delegate here so that model.py stays the short,
overridable surface; the batch loops themselves are in :mod:`kerastorch.loops`.
"""
from __future__ import annotations

from typing import Any

import os

import pandas as pd
import torch

from . import data as data_module
from . import validation as checks
from .callbacks.base import CallbackList, as_callback_list
from .callbacks.epoch_table import EpochLine, EpochTable
from .callbacks.history import History
from .callbacks.progress import ProgressBar, SeedLogger
from .checkpoint import newest_valid
from .distributed import broadcast_int, is_rank_zero, launched_distributed, rank, world_size
from .loops import run_fit, run_predict, run_test


DEVICE_DATA_LIMIT = 1 << 30  # data_on_device="auto" keeps data under 1 GiB on the GPU


def _seed_arguments(x: Any, y: Any, epochs: int, validation_data: Any, dl_train: Any,
                    dl_val: Any) -> tuple[Any, Any, int, Any, bool]:
    """Map the torchkeras form fit(epochs, dl_train, dl_val=...) onto Keras arguments."""
    seed_form = isinstance(x, int) and not isinstance(x, bool)
    if seed_form:
        if y is not None and dl_train is not None:
            raise ValueError("fit(epochs, dl_train, ...) got the training data twice "
                             "(positionally and as `dl_train`).")
        return (y if y is not None else dl_train), None, x, dl_val, True
    if dl_train is not None or dl_val is not None:
        if x is not None and dl_train is not None:
            raise ValueError("Pass the training data as `x` or as `dl_train`, not both.")
        return (x if dl_train is None else dl_train), y, epochs, \
            (validation_data if dl_val is None else dl_val), True
    return x, y, epochs, validation_data, False


def _check_fit_args(epochs: Any, verbose: Any, initial_epoch: Any, steps_per_epoch: Any,
                    validation_split: Any, log_step_freq: Any) -> None:
    checks.require_positive_int("epochs", epochs)
    checks.require_verbose(verbose)
    checks.require_non_negative_int("initial_epoch", initial_epoch)
    if initial_epoch >= epochs:
        raise ValueError(f"`initial_epoch` must be smaller than `epochs`. "
                         f"Received: initial_epoch={initial_epoch}, epochs={epochs}")
    checks.require_positive_int("steps_per_epoch", steps_per_epoch, allow_none=True)
    checks.require_fraction("validation_split", validation_split)
    checks.require_positive_int("log_step_freq", log_step_freq, allow_none=True)


def _shuffle_generator(runtime: Any) -> torch.Generator:
    # Seeded from torch's global RNG, so torch.manual_seed(...) makes shuffling reproducible;
    # under torchrun rank 0's seed is broadcast so every rank draws the same order.
    if runtime.generator is None:
        seed = broadcast_int(int(torch.randint(0, 2**62, (1,)).item()), runtime.config.device)
        runtime.generator = torch.Generator()
        runtime.generator.manual_seed(seed)
    return runtime.generator


def _place(source: Any, runtime: Any, seed: int) -> Any:
    """Shard for this rank under torchrun; keep in-memory data on (or pinned for) the GPU."""
    if launched_distributed():
        if isinstance(source, data_module.TensorBatcher):
            source.shard(rank(), world_size())
        else:
            source.shard(rank(), world_size(), seed)
    device = runtime.config.device
    if device.type == "cuda" and isinstance(source, data_module.TensorBatcher):
        nbytes = sum(t.numel() * t.element_size() for t in data_module.tree_leaves(source.arrays))
        if runtime.data_on_device is True or (runtime.data_on_device == "auto" and nbytes < DEVICE_DATA_LIMIT):
            source.to_device(device)
        else:
            source.pin()
    elif device.type == "cuda" and isinstance(source, data_module.LoaderSource):
        source.pin()  # only a DataLoader kerastorch built for a Dataset; the user's own stays as it is
    return source


def _validation_source(validation_data: Any, batch_size: int | None) -> Any:
    if validation_data is None:
        return None
    if isinstance(validation_data, tuple):
        if len(validation_data) not in (2, 3):
            raise ValueError("`validation_data` must be (x_val, y_val), (x_val, y_val, sample_weight), "
                             f"a Dataset or a DataLoader. Received a tuple of length {len(validation_data)}.")
        return data_module.adapt(*validation_data, batch_size=batch_size, shuffle=False, arg="validation_data")
    return data_module.adapt(validation_data, batch_size=batch_size, shuffle=False, arg="validation_data")


def _printers(verbose: Any, seed_form: bool, log_step_freq: int | None) -> list:
    if verbose == 0 or not is_rank_zero():
        return []
    if seed_form:
        return [SeedLogger(log_step_freq)]
    if verbose == 2:
        return [EpochLine()]
    return [ProgressBar(), EpochTable()]


def fit(model: Any, *, x: Any, y: Any, batch_size: int | None, epochs: int, verbose: Any,
        callbacks: Any, validation_data: Any, validation_split: float, shuffle: bool,
        initial_epoch: int, steps_per_epoch: int | None, sample_weight: Any, dl_train: Any,
        dl_val: Any, log_step_freq: int | None, resume_from: Any = None,
        trust_checkpoint: bool = False) -> pd.DataFrame:
    """See :meth:`kerastorch.Model.fit`."""
    x, y, epochs, validation_data, seed_form = _seed_arguments(x, y, epochs, validation_data, dl_train, dl_val)
    runtime = model._kt
    checks.require_compiled(runtime.config, "fit")
    _check_fit_args(epochs, verbose, initial_epoch, steps_per_epoch, validation_split, log_step_freq)
    if validation_split:
        if validation_data is not None:
            raise ValueError("Pass either `validation_data` or `validation_split`, not both.")
        (x, y, *rest), validation_data = data_module.split_validation(x, y, sample_weight, validation_split)
        sample_weight = rest[0] if rest else None
    generator = _shuffle_generator(runtime)
    seed = int(generator.initial_seed())
    train_source = _place(data_module.adapt(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle,
                                            generator=generator), runtime, seed)
    val_source = _validation_source(validation_data, batch_size)
    if val_source is not None:
        _place(val_source, runtime, seed)
    user_callbacks = as_callback_list(callbacks)
    hooks = CallbackList([History(), *user_callbacks, *_printers(verbose, seed_form, log_step_freq)], model=model,
                         params={"epochs": epochs, "steps": min(steps_per_epoch or len(train_source), len(train_source)),
                                 "verbose": verbose, "has_validation": val_source is not None})
    rows_before = len(runtime.history_rows)
    runtime.hooks, runtime.state.epochs = hooks, epochs
    model.stop_training, runtime.nonfinite, runtime.state.logs, runtime.deferred = False, False, {}, []
    _request_resume(runtime, resume_from, user_callbacks, trust_checkpoint)
    was_training = model.training
    try:
        with runtime.signal_guard():
            run_fit(model, train_source, val_source, hooks, runtime.state, epochs, initial_epoch, steps_per_epoch)
    finally:
        model.train(was_training)
        runtime.hooks, runtime.accumulator, runtime.resume_request = CallbackList(), None, None
    history = model.history
    if seed_form and len(history) > rows_before:
        return history[[c for c in history.columns if c != "lr"]]
    return history


def _request_resume(runtime: Any, resume_from: Any, callbacks: list, trust_checkpoint: bool) -> None:
    """``resume_from``: a path, or "auto" for the newest valid checkpoint the callbacks wrote."""
    if resume_from is None:
        return
    if resume_from == "auto":
        candidates = [path for cb in callbacks for path in getattr(cb, "resume_candidates", lambda: [])()]
        path = newest_valid(candidates, trust_checkpoint=trust_checkpoint) if candidates else None
        if path is not None:
            runtime.request_resume(path, trust_checkpoint)
        return
    if not os.path.isfile(resume_from):
        raise FileNotFoundError(f"`resume_from` must be an existing checkpoint file or 'auto'. "
                                f"Received: resume_from={resume_from!r}")
    runtime.request_resume(resume_from, trust_checkpoint)


def evaluate(model: Any, x: Any, y: Any, batch_size: int | None, verbose: Any, callbacks: Any,
             sample_weight: Any) -> dict[str, float]:
    """See :meth:`kerastorch.Model.evaluate`."""
    runtime = model._kt
    checks.require_compiled(runtime.config, "evaluate")
    checks.require_verbose(verbose)
    source = _place(data_module.adapt(x, y, sample_weight, batch_size=batch_size, shuffle=False), runtime, 0)
    printers = [ProgressBar()] if verbose == 1 and is_rank_zero() else []
    hooks = CallbackList([*as_callback_list(callbacks), *printers], model=model,
                         params={"steps": len(source), "verbose": verbose})
    return run_test(model, source, hooks)


def predict(model: Any, x: Any, batch_size: int | None, verbose: Any, callbacks: Any) -> Any:
    """See :meth:`kerastorch.Model.predict`."""
    checks.require_verbose(verbose)
    source = data_module.adapt(x, batch_size=batch_size, shuffle=False)
    printers = [ProgressBar()] if verbose == 1 and is_rank_zero() else []
    hooks = CallbackList([*as_callback_list(callbacks), *printers], model=model,
                         params={"steps": len(source), "verbose": verbose})
    return run_predict(model, source, hooks, model.device)
