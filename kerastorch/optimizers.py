"""``compile(optimizer=..., lr_scheduler=...)`` resolved: named optimizers (fused where torch has a kernel),
instances and factories; a frozen model's empty parameter group; schedulers bound to the compiled optimizer.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.torch_version import TorchVersion

from .checks import describe

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


def _fused_default(name: str, params: Sequence[torch.Tensor], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``{"fused": True}`` when ``name`` has a fused kernel for all of ``params``, else ``{}``."""
    if name not in _FUSED_NAMES or any(key in kwargs for key in _IMPLEMENTATION_KWARGS) or not params:
        return {}
    if all(p.is_floating_point() and p.device.type in _FUSED_DEVICE_TYPES for p in params):
        return {"fused": True}
    return {}


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
    trainable = [p for p in model.parameters() if p.requires_grad]
    # A frozen model compiles as in Keras (fit trains nothing): torch refuses an empty parameter list.
    params: list[Any] = trainable or [{"params": []}]
    if isinstance(spec, str):
        key = spec.lower()
        if key not in _OPTIMIZERS:
            raise ValueError(f"Unknown optimizer name {spec!r}. Known names: {', '.join(sorted(_OPTIMIZERS))}. "
                             "Or pass a torch.optim.Optimizer or a callable params -> Optimizer.")
        cls, defaults = _OPTIMIZERS[key]
        kwargs = {**defaults, **(optimizer_kwargs or {})}
        try:
            return cls(params, **_fused_default(key, trainable, kwargs), **kwargs)
        except TypeError as err:
            raise TypeError(f"Bad `optimizer_kwargs` for {cls.__name__}: {err}") from err
    if optimizer_kwargs:
        raise ValueError("`optimizer_kwargs` only applies to a named optimizer such as 'adam'. "
                         f"Received: optimizer={describe(spec)}")
    if isinstance(spec, torch.optim.Optimizer):
        # Tutorials compile a copy of a model with the original's optimizer just to evaluate
        # it: accepted here (with a warning); fit refuses to step it.
        count = foreign_parameters(spec, model)
        if count:
            warnings.warn(foreign_optimizer_message(count) + " evaluate() and predict() work.", RuntimeWarning,
                          stacklevel=4)
        return spec
    if callable(spec):
        optimizer = spec(params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError("A callable `optimizer` must return a torch.optim.Optimizer. "
                            f"Received: {describe(optimizer)}")
        return optimizer
    raise TypeError("`optimizer` must be a name, a torch.optim.Optimizer or a callable "
                    f"params -> Optimizer. Received: optimizer={describe(spec)}")


def foreign_parameters(optimizer: torch.optim.Optimizer, model: nn.Module) -> int:
    """How many of ``optimizer``'s parameters are not ``model``'s."""
    own = {id(p) for p in model.parameters()}
    return sum(1 for group in optimizer.param_groups for p in group["params"] if id(p) not in own)


def frozen_model_message(model: nn.Module) -> str:
    """fit's warning for a model with no trainable parameter (Keras trains nothing, and so does fit).

    Example:
        >>> frozen_model_message(nn.ReLU())[:48]
        'The model has no trainable parameters (it has no'
    """
    count = sum(1 for _ in model.parameters())
    what = f"all {count} of its parameter tensors are frozen" if count else "it has no parameters"
    return (f"The model has no trainable parameters ({what}): fit() runs the epochs and logs the loss and metrics "
            "but changes no weight. To train, set requires_grad_(True) on the parameters to train, then compile() "
            "again; evaluate() and predict() work as they are.")


def foreign_optimizer_message(count: int) -> str:
    return (f"The optimizer holds {count} parameter(s) that are not this model's, so fit() would train "
            "another model. Build it from this model: torch.optim.Adam(model.parameters()).")


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
