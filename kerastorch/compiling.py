"""compile(): validate every argument, then build one :class:`CompileConfig`.

Optimizer, loss, metrics, regularizer penalty, precision and the execution
wrappers (DataParallel / DDP / FSDP / torch.compile) live in the config as plain
attributes, never as submodules, so ``model.state_dict()`` and
``model.parameters()`` stay the network's alone. :func:`build_config` checks
everything before it changes anything: a failed ``compile`` leaves the model
and its previous configuration as they were.
"""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import distributed, fsdp
from . import metrics as metrics_module
from . import regularizers as regularizers_module
from .amp import MixedPrecision, resolve_precision
from .checks import require_positive_int, reraise_with
from .losses import LOGIT_LOSSES, LossComputer
from .optimizers import build_optimizer, build_scheduler, foreign_parameters
from .schedules import resolve_schedule
from .strategy import resolve_strategy
from .syncbn import convert_sync_batchnorm

#: What users often pass to compile() by mistake, and where it goes instead.
_OPTIMIZER_HINT = ("Optimizer hyperparameters go in optimizer_kwargs, e.g. "
                   "compile(optimizer='adam', optimizer_kwargs={'lr': 1e-3}).")
COMPILE_HINTS = {
    "lr": _OPTIMIZER_HINT, "learning_rate": _OPTIMIZER_HINT, "weight_decay": _OPTIMIZER_HINT,
    "momentum": _OPTIMIZER_HINT, "betas": _OPTIMIZER_HINT,
    "epochs": "`epochs` is an argument of fit(), not compile().",
    "batch_size": "`batch_size` is an argument of fit(), not compile().",
    "callbacks": "`callbacks` is an argument of fit(), not compile().",
}


@dataclass
class CompileConfig:
    """What ``Model.compile`` resolved. Replaced whole by the next ``compile``.

    Attributes:
        optimizer, loss, metrics, penalty, device, precision: the training objects.
        lr_scheduler, scheduler_interval, scheduler_monitor: the compiled scheduler,
            stepped every "epoch" or "step"; a ReduceLROnPlateau gets the monitored value.
        schedule: a :mod:`kerastorch.schedules` preset (``lr_scheduler="warmup_cosine"`` etc.): each ``fit`` binds
            it to the optimizer for the run's number of optimizer updates (``lr_scheduler`` then), stepped per update.
        grad_accum_steps, grad_clip_norm, grad_clip_value: the optimizer step's options.
        trainable: the parameters clipping applies to (resolved once).
        forward_fn: what a training step calls: the model, or its DP/DDP/compiled wrapper.
        eval_forward_fn: what evaluation and prediction call (never DDP; the sharded model under FSDP).
        ddp: the DistributedDataParallel wrapper under torchrun, else None.
        fsdp: the model itself when ``strategy="fsdp"`` sharded it (under torchrun), else None.
        channels_last: 4-D inputs are converted to channels_last.
        data_on_device: keep in-memory data on the GPU (True, False, "auto").
        loss_spec, metric_specs: the loss and the metrics (by name) as they were given.
        torchkeras_form: compiled the torchkeras way (``loss_func=``, or a loss first).
        foreign_parameters: optimizer parameters that are not the model's (fit refuses to step them).
    """

    optimizer: torch.optim.Optimizer
    loss: LossComputer | None
    metrics: dict[str, metrics_module.Metric]
    penalty: regularizers_module.BoundPenalty | None
    device: torch.device
    precision: MixedPrecision
    lr_scheduler: Any = None
    scheduler_interval: str = "epoch"
    scheduler_monitor: str = "val_loss"
    schedule: Any = None
    grad_accum_steps: int = 1
    grad_clip_norm: float | None = None
    grad_clip_value: float | None = None
    trainable: list[nn.Parameter] = field(default_factory=list)
    forward_fn: Callable[..., Any] | None = None
    eval_forward_fn: Callable[..., Any] | None = None
    ddp: Any = None
    fsdp: Any = None
    channels_last: bool = False
    data_on_device: bool | str = "auto"
    loss_spec: Any = None
    metric_specs: dict[str, Any] = field(default_factory=dict)
    torchkeras_form: bool = False
    foreign_parameters: int = 0


def build_config(model: nn.Module, *, optimizer: Any, loss: Any, metrics: Any,
                 optimizer_kwargs: dict[str, Any] | None, regularizers: Any, loss_weights: Any,
                 class_weight: dict | None, device: str | torch.device, precision: str | None,
                 amp: bool, lr_scheduler: Any, scheduler_interval: str, scheduler_monitor: str,
                 grad_accum_steps: int, grad_clip_norm: float | None, grad_clip_value: float | None,
                 strategy: Any, jit_compile: bool | dict[str, Any],
                 channels_last: bool, data_on_device: bool | str, sync_batchnorm: bool = False) -> CompileConfig:
    """Validate ``compile``'s arguments, build the training objects, then place ``model``.

    Nothing is changed until every argument has been checked and every object
    built; only then is ``model`` moved to the device and wrapped.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> config = build_config(net, optimizer="sgd", loss="mse", metrics=None, optimizer_kwargs=None,
        ...     regularizers=None, loss_weights=None, class_weight=None, device="cpu", precision=None,
        ...     amp=False, lr_scheduler=None, scheduler_interval="epoch", scheduler_monitor="val_loss",
        ...     grad_accum_steps=1, grad_clip_norm=None, grad_clip_value=None, strategy="auto",
        ...     jit_compile=False, channels_last=False, data_on_device="auto")
        >>> type(config.optimizer).__name__, config.forward_fn is net
        ('SGD', True)
    """
    _check_options(scheduler_interval, scheduler_monitor, grad_accum_steps, grad_clip_norm, grad_clip_value,
                   jit_compile, data_on_device)
    kind, options = resolve_strategy(strategy)
    resolved_device = distributed.resolve_device(device)
    mode = resolve_precision(precision, amp, resolved_device)
    loss_computer = build_loss(loss, loss_weights, class_weight)
    built_metrics = metrics_module.build(metrics, from_logits=outputs_are_logits(loss))
    built_optimizer = build_optimizer(optimizer, model, optimizer_kwargs)
    foreign = foreign_parameters(built_optimizer, model)
    preset = resolve_schedule(lr_scheduler)  # a kt.schedules preset is bound by fit, which knows the total
    scheduler = build_scheduler(lr_scheduler, built_optimizer) if preset is None else None
    penalty = regularizers_module.bind(regularizers, model)
    shards = kind == "fsdp" and distributed.launched_distributed()
    if shards:
        fsdp.check_shardable(model, options, built_optimizer)
    # Every argument is valid: from here on the model and the new objects are placed.
    if _place(model, resolved_device, channels_last, sync_batchnorm, options if shards else None, mode,
              built_optimizer):
        penalty = regularizers_module.bind(regularizers, model)  # FSDP replaced the parameters
    if loss_computer is not None:
        loss_computer.to(resolved_device)
        # metrics are updated after the optimizer step: the loss checks them on the first batch, before it
        loss_computer.first_batch_checks = [_named_check(name, metric.check) for name, metric in built_metrics.items()]
    for metric in built_metrics.values():
        metric.to(resolved_device)
    config = CompileConfig(
        optimizer=built_optimizer, loss=loss_computer, metrics=built_metrics, penalty=penalty,
        device=resolved_device, precision=MixedPrecision(mode, resolved_device),
        lr_scheduler=scheduler, scheduler_interval="step" if preset is not None else scheduler_interval,
        scheduler_monitor=scheduler_monitor, schedule=preset, grad_accum_steps=int(grad_accum_steps),
        grad_clip_norm=grad_clip_norm, grad_clip_value=grad_clip_value,
        trainable=[p for p in model.parameters() if p.requires_grad],
        channels_last=channels_last, data_on_device=data_on_device, loss_spec=loss, foreign_parameters=foreign,
        metric_specs=dict(metrics) if isinstance(metrics, dict) else dict(zip(built_metrics, metrics or (),
                                                                              strict=True)))
    _wrap_execution(config, model, kind, options, jit_compile)
    return config


def _place(model: nn.Module, device: torch.device, channels_last: bool, sync_batchnorm: bool,
           sharding: fsdp.FSDP | None, precision: str, optimizer: torch.optim.Optimizer) -> bool:
    """Move the model to ``device`` (and synchronise its BatchNorm), or shard it; True when it was sharded.

    FSDP moves each unit's parameters to the device itself, one unit at a time, so a model larger
    than one device's memory is never placed whole; it replaces the parameters (the optimizer is
    pointed at the shards).
    """
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    if sharding is None:
        model.to(device, memory_format=memory_format)  # type: ignore[call-overload]  # torch's stub lacks it
    elif channels_last:
        model.to(memory_format=memory_format)
    if sync_batchnorm:
        _convert_sync_batchnorm(model, device)
    if sharding is None:
        return False
    distributed.ensure_process_group(device)
    fsdp.shard(model, sharding, precision, optimizer)
    return True


def _named_check(name: str, check: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """A metric's first-batch check whose errors name the metric by its key in ``compile(metrics=...)``."""

    def named(y_pred: Any, y_true: Any) -> None:
        try:
            check(y_pred, y_true)
        except Exception as err:
            reraise_with(err, f"(in the metric {name!r} of compile(metrics=...))")

    return named


def _convert_sync_batchnorm(model: nn.Module, device: torch.device) -> None:
    """BatchNorm layers -> synchronised BatchNorm in place (same parameters and buffers), under torchrun only.

    The batch statistics are computed over all ranks' batches, so the running statistics
    are those of one process seeing the global batch (torch's SyncBatchNorm on CUDA,
    :class:`~kerastorch.syncbn.SyncBatchNormAnyDevice` elsewhere). Outside DDP it would do
    nothing but slow down, so the model is left as it is, with a warning.
    """
    if not distributed.launched_distributed():
        warnings.warn("sync_batchnorm=True has no effect outside DistributedDataParallel (run the script "
                      "with torchrun): BatchNorm layers are left as they are.", RuntimeWarning, stacklevel=5)
        return
    for name, child in list(model.named_children()):  # the root itself is the user's Model, never a BN
        setattr(model, name, convert_sync_batchnorm(child, device))


def _check_options(scheduler_interval: Any, scheduler_monitor: Any, grad_accum_steps: Any,
                   grad_clip_norm: Any, grad_clip_value: Any, jit_compile: Any, data_on_device: Any) -> None:
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"`scheduler_interval` must be 'epoch' or 'step'. Received: "
                         f"scheduler_interval={scheduler_interval!r}")
    if not isinstance(scheduler_monitor, str) or not scheduler_monitor:
        raise ValueError(f"`scheduler_monitor` must be a logged name such as 'val_loss'. Received: "
                         f"scheduler_monitor={scheduler_monitor!r}")
    require_positive_int("grad_accum_steps", grad_accum_steps)
    for name, value in (("grad_clip_norm", grad_clip_norm), ("grad_clip_value", grad_clip_value)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                  or not math.isfinite(value) or value <= 0):
            raise ValueError(f"`{name}` must be a positive finite number or None (no clipping). Received: "
                             f"{name}={value!r}. Gradients are clipped to [-v, v] by value or to norm v, so v "
                             "must be > 0, e.g. grad_clip_norm=1.0.")
    if not isinstance(jit_compile, (bool, dict)):
        raise TypeError(f"`jit_compile` must be a bool or a dict of torch.compile options. "
                        f"Received: jit_compile={jit_compile!r}")
    if data_on_device not in (True, False, "auto"):
        raise ValueError(f"`data_on_device` must be True, False or 'auto'. Received: data_on_device={data_on_device!r}")


def _wrap_execution(config: CompileConfig, model: nn.Module, kind: str, options: Any, jit_compile: Any) -> None:
    """The forward callables: under torchrun DDP, or the model FSDP sharded in place; else DataParallel
    if asked; torch.compile on top."""
    train_fn: Any = model
    eval_fn: Any = model
    if distributed.launched_distributed():
        distributed.ensure_process_group(config.device)
        if kind == "dp":
            warnings.warn("strategy='dp' under torchrun: each process trains with DistributedDataParallel "
                          "instead (one GPU per process), as strategy='auto' does.", RuntimeWarning, stacklevel=4)
        if kind == "fsdp":
            config.fsdp = model
        elif config.trainable:  # DDP refuses a model with nothing to train (and has nothing to all-reduce)
            train_fn = config.ddp = distributed.wrap_ddp(model, config.device)
    elif kind in ("ddp", "fsdp"):
        warnings.warn(f"strategy={kind!r} needs several processes (run the script with torchrun, e.g. "
                      f"`torchrun --nproc_per_node=2 train.py`): training in this single process.",
                      RuntimeWarning, stacklevel=4)
    elif kind == "dp":
        train_fn = eval_fn = distributed.wrap_data_parallel(model, options)
    if jit_compile:
        options = jit_compile if isinstance(jit_compile, dict) else {}
        compiled_eval = torch.compile(eval_fn, **options)
        train_fn = compiled_eval if train_fn is eval_fn else torch.compile(train_fn, **options)
        eval_fn = compiled_eval
    config.forward_fn, config.eval_forward_fn = train_fn, eval_fn


def _compile_arguments() -> tuple[str, ...]:
    """Every keyword argument ``Model.compile`` takes: :func:`build_config`'s plus the torchkeras names."""
    code = build_config.__code__
    return (*code.co_varnames[1:code.co_argcount + code.co_kwonlyargcount], "loss_func", "metrics_dict")


COMPILE_ARGUMENTS = _compile_arguments()


def known_log_keys(config: CompileConfig, has_validation: bool) -> list[str]:
    """The epoch-log keys a default ``fit`` with ``config`` produces, in history order.

    Example:
        >>> config = build_config(nn.Linear(2, 1), optimizer="sgd", loss="mse", metrics=["mae"],
        ...     optimizer_kwargs=None, regularizers=None, loss_weights=None, class_weight=None,
        ...     device="cpu", precision=None, amp=False, lr_scheduler=None, scheduler_interval="epoch",
        ...     scheduler_monitor="val_loss", grad_accum_steps=1, grad_clip_norm=None,
        ...     grad_clip_value=None, strategy="auto", jit_compile=False, channels_last=False,
        ...     data_on_device="auto")
        >>> known_log_keys(config, has_validation=True)
        ['loss', 'mae', 'val_loss', 'val_mae', 'lr']
    """
    train = ["loss"]
    loss = config.loss
    if loss is not None and loss.structure is not None:
        train += [f"{key if loss.structure == 'dict' else f'output_{key}'}_loss" for key in loss.losses]
    train += list(config.metrics)
    val = [f"val_{key}" for key in train] if has_validation else []
    extra = ["reg_loss"] if config.penalty is not None else []
    return train + extra + val + ["lr"]


#: The step methods whose override means a fit may log keys compile does not know.
STEP_METHODS = ("train_step", "test_step", "compute_loss")


def may_log_custom_keys(model: Any, base: type, config: CompileConfig | None) -> bool:
    """True when a fit may log keys compile does not know: ``model`` overrides a step of ``base``
    (:data:`STEP_METHODS`) or the compiled loss is user code."""
    cls = type(model)
    if any(getattr(cls, name) is not getattr(base, name) for name in STEP_METHODS):
        return True
    return config is not None and loss_is_user_code(config)


def loss_is_user_code(config: CompileConfig) -> bool:
    """True when a compiled loss is user code, which may log extra components (a dict result)."""
    if config.loss is None:
        return False
    for single in config.loss.losses.values():
        fn = single.fn
        module = type(fn).__module__ if hasattr(type(fn), "forward") else getattr(fn, "__module__", "")
        if not (module or "").startswith(("torch.", "kerastorch.")):
            return True
    return False


def build_loss(loss: Any, loss_weights: Any = None, class_weight: dict | None = None) -> LossComputer | None:
    """Resolve ``compile(loss=...)`` into a :class:`LossComputer` (None if no loss)."""
    if loss is None:
        return None
    return LossComputer(loss, loss_weights=loss_weights, class_weight=class_weight)


def outputs_are_logits(loss: Any) -> bool:
    """The documented rule (see :mod:`kerastorch.metrics`) for threshold metrics."""
    if isinstance(loss, str):
        return loss in LOGIT_LOSSES or loss == "focal"
    if isinstance(loss, (nn.BCEWithLogitsLoss, nn.CrossEntropyLoss)):
        return True
    return bool(getattr(loss, "from_logits", False))
