"""CompileConfig: everything ``compile`` sets, kept off the network.

Optimizer, loss, metrics, regularizers and scaler live here as plain
attributes, never as submodules, so ``model.state_dict()`` and
``model.parameters()`` stay the network's alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.torch_version import TorchVersion

from . import losses as losses_module
from . import metrics as metrics_module
from .loss_computer import LossComputer
from .precision import Precision
from .validation import describe

_OPTIMIZERS: dict[str, tuple[type, dict[str, Any]]] = {
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
    "sgd": (torch.optim.SGD, {"lr": 0.01}),  # Keras's default; torch's 1e-3 is too small for SGD
    "rmsprop": (torch.optim.RMSprop, {}),
    "adagrad": (torch.optim.Adagrad, {}),
}

# Named optimizers that get PyTorch's fused implementation where it exists: the same
# algorithm in one kernel per step instead of a loop over the parameters (measured on a
# CPU: ResNet-18's Adam step 40 -> 11 ms, its training step 16% faster; on CUDA it also
# keeps the fp16 GradScaler's inf check on the device). CPU support came in torch 2.4.
_FUSED_NAMES = ("adam", "adamw")
_FUSED_DEVICE_TYPES = ("cuda", "cpu") if TorchVersion(torch.__version__) >= "2.4" else ("cuda",)
_IMPLEMENTATION_KWARGS = ("fused", "foreach", "differentiable")  # the user chose: leave it


def _fused_default(name: str, params: list[torch.Tensor], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``{"fused": True}`` when ``name`` has a fused kernel for all of ``params``, else ``{}``."""
    if name not in _FUSED_NAMES or any(key in kwargs for key in _IMPLEMENTATION_KWARGS) or not params:
        return {}
    if all(p.is_floating_point() and p.device.type in _FUSED_DEVICE_TYPES for p in params):
        return {"fused": True}
    return {}


@dataclass
class CompileConfig:
    """What ``Model.compile`` resolved. Replaced whole by the next ``compile``."""

    optimizer: torch.optim.Optimizer
    loss: LossComputer | None
    metrics: dict[str, metrics_module.Metric]
    penalty: Callable[[], torch.Tensor] | None
    device: torch.device
    precision: Precision
    lr_scheduler: Any = None
    scheduler_interval: str = "epoch"
    grad_accum_steps: int = 1
    grad_clip_norm: float | None = None
    grad_clip_value: float | None = None
    trainable: list[torch.nn.Parameter] = field(default_factory=list)  # resolved once, for clipping
    extra: dict[str, Any] = field(default_factory=dict)


def build_optimizer(spec: Any, model: nn.Module, optimizer_kwargs: dict[str, Any] | None) -> torch.optim.Optimizer:
    """Resolve ``compile(optimizer=...)``.

    Args:
        spec: a name ("adam", "adamw", "sgd", "rmsprop", "adagrad"), a
            ``torch.optim.Optimizer`` built on this model's parameters, or a
            callable ``params -> Optimizer``.
        model: the network whose trainable parameters are optimized.
        optimizer_kwargs: hyperparameters for a named optimizer, e.g.
            ``{"lr": 1e-3, "weight_decay": 1e-4}`` (the one way to set them).
            "adam" and "adamw" use PyTorch's fused implementation where it
            exists (CUDA; CPU with torch >= 2.4) unless these name ``fused``,
            ``foreach`` or ``differentiable``: ``{"fused": False}`` gives the loop.

    Example:
        >>> opt = build_optimizer("adam", nn.Linear(2, 1), {"lr": 0.01})
        >>> opt.defaults["lr"], opt.defaults["fused"]
        (0.01, True)
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if isinstance(spec, str):
        key = spec.lower()
        if key not in _OPTIMIZERS:
            raise ValueError(f"Unknown optimizer name {spec!r}. Known names: {', '.join(sorted(_OPTIMIZERS))}. "
                             "Or pass a torch.optim.Optimizer or a callable params -> Optimizer.")
        cls, defaults = _OPTIMIZERS[key]
        kwargs = {**defaults, **(optimizer_kwargs or {})}
        try:
            return cls(params, **_fused_default(key, params, kwargs), **kwargs)
        except TypeError as err:
            raise TypeError(f"Bad `optimizer_kwargs` for {cls.__name__}: {err}") from err
    if optimizer_kwargs:
        raise ValueError("`optimizer_kwargs` only applies to a named optimizer such as 'adam'. "
                         f"Received: optimizer={describe(spec)}")
    if isinstance(spec, torch.optim.Optimizer):
        _check_optimizer_params(spec, model)
        return spec
    if callable(spec):
        optimizer = spec(params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError("A callable `optimizer` must return a torch.optim.Optimizer. "
                            f"Received: {describe(optimizer)}")
        return optimizer
    raise TypeError("`optimizer` must be a name, a torch.optim.Optimizer or a callable "
                    f"params -> Optimizer. Received: optimizer={describe(spec)}")


def _check_optimizer_params(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    own = {id(p) for p in model.parameters()}
    foreign = sum(1 for group in optimizer.param_groups for p in group["params"] if id(p) not in own)
    if foreign:
        raise ValueError(f"The optimizer holds {foreign} parameter(s) that are not this model's. "
                         "Build it from this model: torch.optim.Adam(model.parameters()).")


def build_scheduler(spec: Any, optimizer: torch.optim.Optimizer) -> Any:
    """Resolve ``compile(lr_scheduler=...)``: a scheduler on ``optimizer`` or ``callable(optimizer)``."""
    if spec is None:
        return None
    scheduler = spec if hasattr(spec, "step") and hasattr(spec, "state_dict") else spec(optimizer) \
        if callable(spec) else spec
    if not (hasattr(scheduler, "step") and hasattr(scheduler, "state_dict")):
        raise TypeError("`lr_scheduler` must be a torch.optim.lr_scheduler object or a callable "
                        f"optimizer -> scheduler. Received: {describe(spec)}")
    if getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ValueError("`lr_scheduler` is attached to another optimizer than the compiled one, so it "
                         "would change nothing. Pass a callable instead: "
                         "lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10)")
    return scheduler


def build_loss(loss: Any, loss_weights: Any = None, class_weight: dict | None = None) -> LossComputer | None:
    """Resolve ``compile(loss=...)`` into a :class:`LossComputer` (None if no loss)."""
    if loss is None:
        return None
    return LossComputer(loss, loss_weights=loss_weights, class_weight=class_weight)


def outputs_are_logits(loss: Any) -> bool:
    """The documented rule (see :mod:`kerastorch.metrics`) for threshold metrics."""
    if isinstance(loss, str):
        return loss in losses_module.LOGIT_LOSSES or loss == "focal"
    if isinstance(loss, (nn.BCEWithLogitsLoss, nn.CrossEntropyLoss)):
        return True
    return bool(getattr(loss, "from_logits", False))
