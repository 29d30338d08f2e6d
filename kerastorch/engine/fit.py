"""fit: check the arguments, prepare data and callbacks, run the epochs, restore what it changed.

Read top-down: :func:`fit` (one call), :func:`run_epochs` (the epoch loop),
:func:`train_epoch` (the batch loop, the hot path). Per step the batch loop
moves the batch to the device, runs ``model.train_step`` (which calls
:func:`~kerastorch.engine.step.optimizer_step`), writes the step's logged
tensors into on-device buffers and calls only the batch hooks some callback
overrides. Nothing in it reads a value back to the host: the epoch's logs are
read once, at its end.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
from torch.utils.data import DataLoader

from ..callbacks.base import CallbackList
from ..callbacks.history import History
from ..checks import plain_int, require_fraction, require_non_negative_int, require_positive_int, require_verbose
from ..compiling import known_log_keys
from ..data import (
    TensorBatcher,
    adapt,
    batch_size_of,
    floating_dtype,
    move_to_device,
    place,
    split_validation,
)
from ..data.scan import Finding, batch_holding, scan
from ..distributed import any_rank, broadcast_int, launched_distributed, unwrap, world_size
from ..losses.model_loss import item_counter
from ..optimizers import foreign_optimizer_message, frozen_model_message
from .displays import live_plot_for, printers
from .epoch_iterator import EpochIterator
from .epochs import TrainingControls, bind_schedule, callbacks_to_run, first_batches, stop_for_time
from .evaluate import run_test, validation_source
from .guards import (
    check_validation_source,
    check_validation_targets,
    guard_batchnorm,
    prepare_checks,
    raise_batch_error,
    stop_for_exhausted_data,
)
from .logs import LogAccumulator, epoch_logs
from .reentry import guarded, isolated_metrics
from .resume import request_resume, resume
from .session import FitRecord, Session
from .signals import act_on_signal, signal_agreement, signal_guard
from .step import sync_context

if TYPE_CHECKING:
    from ..compiling import CompileConfig


@guarded("fit")
def fit(model: Any, config: CompileConfig, record: FitRecord, *, x: Any, y: Any, batch_size: int | None,
        epochs: int, verbose: Any, callbacks: Any, validation_data: Any, validation_split: float,
        shuffle: bool, initial_epoch: int, steps_per_epoch: int | None, sample_weight: Any,
        torchkeras_form: bool, log_step_freq: int | None, resume_from: Any, trust_checkpoint: bool,
        custom_logs: bool, plot: Any = "auto", controls: TrainingControls | None = None,
        class_weight: Any = None) -> None:
    """See :meth:`kerastorch.Model.fit`; ``custom_logs``: a custom step or loss may log other keys;
    ``controls``: validation cadence, limits and debug runs (:func:`~kerastorch.engine.epochs.training_controls`)."""
    _check_fit_args(epochs, verbose, initial_epoch, steps_per_epoch, validation_split, log_step_freq)
    controls = TrainingControls() if controls is None else controls
    plotter = [] if controls.fast_dev_run else live_plot_for(plot, verbose)
    epochs, initial_epoch = int(epochs), int(initial_epoch)  # NumPy integers too
    if controls.fast_dev_run:
        epochs = initial_epoch + 1
    steps_per_epoch, log_step_freq = plain_int(steps_per_epoch), plain_int(log_step_freq)
    float_dtype = floating_dtype(model)  # in-memory floating data is cast to what the layers compute in
    if config.foreign_parameters:
        raise ValueError(foreign_optimizer_message(config.foreign_parameters))
    if not config.trainable:
        warnings.warn(frozen_model_message(model), UserWarning, stacklevel=4)
    if validation_split:
        if validation_data is not None:
            raise ValueError("Pass either `validation_data` or `validation_split`, not both.")
        (x, y, *rest), validation_data = split_validation(x, y, sample_weight, validation_split, float_dtype)
        sample_weight = rest[0] if rest else None
    # A DataLoader shuffles itself: drawing a seed for it from torch's global RNG would change
    # the order the user's loader gives (its seed comes from that RNG too). Under torchrun the
    # seed is needed anyway: a sharded DataLoader's ranks share it.
    generator = _shuffle_generator(record, config.device) \
        if shuffle and (not isinstance(x, DataLoader) or launched_distributed()) else None
    seed = int(generator.initial_seed()) if generator is not None else 0
    train_source = place(adapt(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle, generator=generator,
                               float_dtype=float_dtype), config.device, config.data_on_device, seed)
    val_source = validation_source(validation_data, batch_size, config, seed, float_dtype)
    if isinstance(train_source, TensorBatcher):  # export's default example input
        record.example_input = train_source.first_input()
    if controls.overfit_batches:  # the same first batches, every epoch, for training and validation
        train_source = val_source = first_batches(train_source, controls.overfit_batches)
    batches = EpochIterator(train_source, record, controls, steps_per_epoch=steps_per_epoch,
                            grad_accum_steps=config.grad_accum_steps)
    steps = batches.steps
    if config.fsdp is not None and any_rank(steps != broadcast_int(cast(int, steps), config.device), config.device):
        raise ValueError(f"Under FSDP every forward is a collective, so every rank must run the same number of "
                         f"batches per epoch; this rank has {steps}. Make the sample count a multiple of processes x "
                         "batch_size, or pass steps_per_epoch=... (at most the smallest rank's batches).")
    bind_schedule(config, batches, epochs - initial_epoch)
    check_validation_source(val_source, epochs - initial_epoch)
    check_validation_targets(train_source, val_source)
    has_validation = val_source is not None
    callback_list = CallbackList(
        [*([] if controls.fast_dev_run else [History()]), *callbacks_to_run(callbacks, controls),
         *printers(verbose, torchkeras_form, log_step_freq), *plotter],
        model=model,
        params={"epochs": epochs, "steps": steps, "verbose": verbose, "has_validation": has_validation,
                "log_keys": known_log_keys(config, has_validation), "custom_logs": custom_logs,
                "validation_freq": controls.validation_freq, "grad_accum_steps": config.grad_accum_steps,
                "validation_every_n_steps": controls.validation_every_n_steps})
    session = Session(config, record, callback_list, epochs, batches=batches, controls=controls,
                      validation_source=val_source)
    callback_list.set_session(session)
    for check_params in callback_list.check_params:  # every callback's arguments, before any on_train_begin
        check_params()
    request_resume(model, session, resume_from, trust_checkpoint)  # checked before any callback runs
    session.data_findings = warn_about_data(train_source, val_source)
    prepare_checks(config)
    model.stop_training = False
    model.__dict__.pop("_weight_average", None)  # an earlier fit's EMA/SWA average; this fit's callbacks set theirs
    was_training, outer_session = model.training, model._session
    model._session = session
    undo_class_weight = _use_class_weight(config, class_weight)
    remove_guard = guard_batchnorm(model, train_source, batches.capped)
    kept = len(record.history_rows), record.epoch, record.global_step  # a fast_dev_run keeps nothing
    try:
        with signal_guard(session):
            run_epochs(model, session, initial_epoch, model._step_runner("train", session))  # as it runs
    except BaseException as error:
        for close in callback_list.on_exception:  # displays close before the traceback prints
            close(error)
        raise
    finally:
        undo_class_weight()
        remove_guard()
        model.train(was_training)
        model._session = outer_session
        session.accumulator = None
        if controls.fast_dev_run:
            del record.history_rows[kept[0]:]
            record.epoch, record.global_step = kept[1], kept[2]


def run_epochs(model: Any, session: Session, initial_epoch: int, train_step: Callable[[Any], Any]) -> None:
    """The epoch loop: train, validate, log, call epoch hooks, honour stop flags and signals."""
    # fit compiled the model and made the callback list and the epoch iterator: none is None here.
    config, callbacks = cast("CompileConfig", session.config), session.callbacks
    record, batches, val_source = session.record, session.batches, session.validation_source
    steps = batches.steps
    callbacks.call("on_train_begin", None)
    start_epoch = resume(model, session, initial_epoch)
    session.epoch_base = _epoch_base(record, start_epoch)
    controls = session.controls
    controls.start()
    # Ranks with fewer batches (no padding: each sample counts once) join DDP's collectives.
    uneven = config.ddp is not None and any_rank(steps != broadcast_int(cast(int, steps), config.device), config.device)
    if launched_distributed() and not uneven:  # an accumulation window's items are counted over all ranks
        batches.window.ranks = world_size()
    for epoch in range(start_epoch, session.epochs):
        record.epoch = epoch
        model.train()
        callbacks.call("on_epoch_begin", epoch, None)
        with config.ddp.join() if uneven else contextlib.nullcontext():
            accumulator = train_epoch(model, session, epoch, train_step)
        if session.pending_signal is not None:
            act_on_signal(session)  # saves interrupt checkpoints; raises, or returns for SLURM's SIGUSR1
            break  # SIGUSR1: stop as for max_time, the partial epoch not logged
        done = batches.batch + 1
        if controls.time_up and not (batches.window.steps >= 0 and done >= batches.window.steps):
            stop_for_time(session, epoch, done, finished=False)  # saved as on an interrupt
            break
        if batches.source.exhausted and stop_for_exhausted_data(model, session, done, steps, epoch):
            break  # a generator had no batch left for this epoch
        logs = epoch_logs(config, accumulator)  # the epoch's one read
        if _stopped_for_nonfinite(model, session, epoch, accumulator, logs):
            break
        batches.end_epoch()  # before on_epoch_end: its checkpoints hold where the next epoch starts
        if val_source is not None and controls.validates_after(epoch):  # else no val_* keys: NaN in the history
            logs.update(run_test(model, session, val_source, prefix="val_",
                                 steps=controls.validation_steps or controls.fast_dev_run or None))
        logs["lr"] = float(config.optimizer.param_groups[0]["lr"])
        if config.lr_scheduler is not None and config.scheduler_interval == "epoch":
            _step_epoch_scheduler(config, logs)
        session.logs = logs
        try:
            callbacks.call("on_epoch_end", epoch, logs)
        except BaseException:
            callbacks.flush_after_error()  # the writes decided before the hook raised, then its exception
            raise
        for write in callbacks.flush_writes:
            write()
        if launched_distributed():  # all ranks stop together (e.g. EarlyStopping on rank-local state)
            model.stop_training = any_rank(model.stop_training, config.device)
        if controls.time_up:
            stop_for_time(session, epoch, done, finished=True)
        if model.stop_training or controls.time_up:
            break
    callbacks.call("on_train_end", session.logs)


def _epoch_base(record: FitRecord, start_epoch: int) -> int:
    """What numbers this fit's epochs in the history: the last row's epoch less the epochs skipped."""
    rows = record.history_rows
    return max(0, int(rows[-1]["epoch"]) - start_epoch) if rows else 0


def train_epoch(model: Any, session: Session, epoch: int, train_step: Callable[[Any], Any]) -> LogAccumulator:
    """One epoch of the epoch iterator's batches through ``train_step``: the hot loop."""
    config, callbacks = cast("CompileConfig", session.config), session.callbacks
    record, batches = session.record, session.batches
    accumulator = _begin_epoch(config, session)
    device, channels_last, window = config.device, config.channels_last, batches.window
    accumulating = window.size > 1
    moving = device.type != "cpu" or channels_last
    items_of = item_counter(unwrap(model), config.loss)  # samples, or a token-level loss's tokens
    batch_begin, batch_end, writers = callbacks.on_train_batch_begin, callbacks.on_train_batch_end, \
        callbacks.batch_writers
    controls = session.controls
    timed = controls.max_time is not None
    every = controls.validation_every_n_steps if session.validation_source is not None else 0
    agree = signal_agreement(session)  # several SLURM ranks agree on a signal each window (else None)
    for index, batch in batches.epoch(epoch):
        batches.batch = index
        for hook in batch_begin:
            hook(index, {})
        pair = type(batch) is tuple and len(batch) == 2 and type(batch[0]) is torch.Tensor \
            and type(batch[1]) is torch.Tensor and batch[0].dim() > 0  # the common (x, y): no walk needed
        if moving or not pair:  # a CPU (x, y) for a CPU model stays as it is
            batch = move_to_device(batch, device, channels_last=channels_last)
        try:  # free until something raises (Python 3.11): then the error names the batch
            if accumulating:
                window.plan(index)
                window.items = items_of(batch)
                with sync_context(config, window):
                    logs = train_step(batch)
            else:
                logs = train_step(batch)
        except Exception as err:
            raise_batch_error(err, batch, model, "training", index, session.epoch_base + record.epoch)
        accumulator.add(index, logs, batch[0].shape[0] if pair else batch_size_of(batch))
        record.global_step += 1
        for hook in batch_end:
            hook(index, logs)
        for write in writers:
            write()
        if every and record.global_step % every == 0:
            validate_at_step(model, session)
        # A signal waits for the end of a gradient-accumulation window, so the interrupt
        # checkpoint holds no partial gradients.
        if agree is not None and window.update_now:
            agree()
        if model.stop_training or (session.pending_signal is not None and window.update_now) or \
                (timed and window.update_now and controls.no_time_for_another_step(device)):
            break
    return accumulator


def validate_at_step(model: Any, session: Session) -> None:
    """``fit(validation_every_n_steps=N)``: validate now, a row of ``model.validation_history``.

    The training epoch's metrics are kept aside meanwhile (validation resets its own copies).
    """
    record = session.record
    with isolated_metrics(session.config, True):
        logs = run_test(model, session, session.validation_source, prefix="val_",
                        steps=session.controls.validation_steps)
    record.validation_rows.append({"step": record.global_step, "epoch": session.epoch_number(record.epoch), **logs})
    callbacks = session.callbacks
    for validated in callbacks.on_step_validation:  # CSV rows, checkpoints monitoring it
        validated(record.global_step, dict(logs))
    for write in callbacks.flush_writes:
        write()


def _use_class_weight(config: CompileConfig, class_weight: Any) -> Callable[[], None]:
    """``fit(class_weight=...)`` for this fit only (compile's weights come back after it); else nothing."""
    if class_weight is None:
        return lambda: None
    if config.loss is None:
        raise ValueError("`class_weight` weighs the compiled loss, but no loss was compiled. "
                         "Call compile(loss=...) first, or weigh the samples in your train_step.")
    return config.loss.use_class_weight(class_weight)


def _check_fit_args(epochs: Any, verbose: Any, initial_epoch: Any, steps_per_epoch: Any,
                    validation_split: Any, log_step_freq: Any) -> None:
    require_positive_int("epochs", epochs)
    require_verbose(verbose)
    require_non_negative_int("initial_epoch", initial_epoch)
    if initial_epoch >= epochs:
        raise ValueError(f"`initial_epoch` must be smaller than `epochs`. "
                         f"Received: initial_epoch={initial_epoch}, epochs={epochs}")
    require_positive_int("steps_per_epoch", steps_per_epoch, allow_none=True)
    require_fraction("validation_split", validation_split)
    require_positive_int("log_step_freq", log_step_freq, allow_none=True)


def _shuffle_generator(record: FitRecord, device: torch.device) -> torch.Generator:
    # Seeded from torch's global RNG, so torch.manual_seed(...) makes shuffling reproducible;
    # under torchrun rank 0's seed is broadcast so every rank draws the same order.
    if record.generator is None:
        seed = broadcast_int(int(torch.randint(0, 2**62, (1,)).item()), device)  # host-sync: once per model
        record.generator = torch.Generator()
        record.generator.manual_seed(seed)
    return record.generator


def _begin_epoch(config: CompileConfig, session: Session) -> LogAccumulator:
    """A fresh epoch accumulator and reset metrics (refilled when resuming mid-epoch)."""
    batches = session.batches
    accumulator = session.accumulator = LogAccumulator(batches.steps)
    resumed = batches.resumed_logs  # a mid-epoch resume's partial logs
    if resumed is not None:
        accumulator.load_state_dict(resumed["partial_logs"], config.device)
    else:  # a resumed epoch goes on with the count restored from its checkpoint's scaler state
        config.precision.scaler.reset_skip_count()
    for name, metric in config.metrics.items():
        metric.reset()
        if resumed is not None and resumed["metrics"].get(name):
            metric.load_state_dict(resumed["metrics"][name])
    return accumulator


def warn_about_data(train_source: Any, val_source: Any) -> list[Finding]:
    """Warn, before any step, of non-finite values and negative weights in in-memory data; return the
    training data's non-finite findings (the non-finite-loss warning names the batch that held one)."""
    findings = scan(train_source)
    for finding in [*findings, *scan(val_source, ("x_val", "y_val", "sample_weight_val"))]:
        warnings.warn(finding.warning(), UserWarning, stacklevel=5)
    return [finding for finding in findings if finding.kind == "nonfinite"]


def _data_culprit(session: Session, bad_step: int) -> str:
    """What the non-finite-loss warning says of the data: the batch holds a non-finite sample, or the data does."""
    for finding in session.data_findings:
        batches = session.batches
        if type(batches.source) is TensorBatcher and bad_step >= 0 and batch_holding(
                batches.source, batches.pass_offset + bad_step, batches.pass_generator, finding.samples):
            return f" Batch {bad_step} holds a sample of `{finding.name}` with NaN or inf: the data, not the " \
                   "model, made the loss non-finite (see the warning given before training)."
    if session.data_findings:
        return f" The training data holds non-finite values: {session.data_findings[0].describe()}."
    return ""


def _stopped_for_nonfinite(model: Any, session: Session, epoch: int, accumulator: LogAccumulator,
                           logs: dict[str, float]) -> bool:
    """Stop after this epoch if a step's loss was NaN or inf; its logs (NaN) still reach on_epoch_end as in Keras
    (the history row, CSVLogger's row, TerminateOnNaN), while checkpoint callbacks never write non-finite weights
    (``session.nonfinite``).

    The epoch's mean loss (a float64 sum of the steps' losses, over all ranks) is finite exactly when every step's
    was, so a finite epoch costs no read beyond its logs', and the ranks agree without a collective.
    """
    loss = logs.get("loss")
    if loss is None or math.isfinite(loss):
        return False
    config = cast("CompileConfig", session.config)
    bad_step = accumulator.first_nonfinite()  # host-sync: once, on a non-finite epoch
    session.nonfinite = True
    number = session.epoch_base + epoch + 1
    model.stop_training = True
    where = f"batch {bad_step}" if bad_step is not None else \
        "a batch of another process" if launched_distributed() else "the sum of its finite losses (float32 on MPS)"
    warnings.warn(f"Non-finite training loss at epoch {number}, {where} (epochs count from 1 as in the history, "
                  "batches from 0 as in callbacks). Training stopped; no checkpoint was written from this epoch."
                  + _data_culprit(session, -1 if bad_step is None else bad_step), RuntimeWarning, stacklevel=2)
    logs["lr"] = float(config.optimizer.param_groups[0]["lr"])
    session.logs = logs
    try:
        session.callbacks.call("on_epoch_end", epoch, logs)  # History appends the row
    except BaseException:
        session.callbacks.flush_after_error()
        raise
    for write in session.callbacks.flush_writes:
        write()
    return True


def _step_epoch_scheduler(config: CompileConfig, logs: dict[str, float]) -> None:
    scheduler = config.lr_scheduler
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        monitor = config.scheduler_monitor
        if monitor not in logs:
            raise ValueError(f"The ReduceLROnPlateau scheduler monitors {monitor!r}, which is not "
                             f"logged. Available: {sorted(logs)}. Set compile(scheduler_monitor=...).")
        scheduler.step(logs[monitor])
    else:
        scheduler.step()
