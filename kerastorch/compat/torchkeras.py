"""The torchkeras 1.x/2.x call forms, mapped onto the Keras-style API.

Scripts written for torchkeras run with only the import changed (reference: the
torchkeras 1.5.3 / 2.1.2 ``Model``):

* ``Model(net)`` wraps a module (``model.net``; state_dict keys ``net.*`` as in torchkeras),
  and a subclass may call ``super().__init__(net)``: :class:`TorchkerasSurface`;
* ``compile(loss_func, optimizer=None, metrics_dict=None, device=None)``, positionally or by
  those names (a loss first means this form): :func:`compile_arguments`; then
  ``model.loss_func``, ``model.metrics_dict`` and ``model.optimizer`` exist;
* ``fit(epochs, dl_train, dl_val=None, log_step_freq=1)``: an int first means this form;
  it prints torchkeras's step dicts and epoch tables and returns torchkeras's history
  frame (no ``epoch`` or ``lr`` column): :func:`fit_arguments`, :func:`history_frame`;
* ``evaluate(dl)`` of a model compiled in this form returns ``{"val_loss": ..., "val_<metric>": ...}``.
"""
from __future__ import annotations

import datetime
import inspect
import numbers
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    import pandas as pd


def merge_compile_names(loss: Any, loss_func: Any, metrics: Any, metrics_dict: Any) -> tuple[Any, Any]:
    """``loss`` / ``metrics`` from either their Keras or their torchkeras names.

    Example:
        >>> merge_compile_names(None, "mse", None, {"mae": "mae"})
        ('mse', {'mae': 'mae'})
    """
    if loss_func is not None:
        if loss is not None:
            raise ValueError("Pass either `loss` or its torchkeras name `loss_func`, not both.")
        loss = loss_func
    if metrics_dict is not None:
        if metrics is not None:
            raise ValueError("Pass either `metrics` or its torchkeras name `metrics_dict`, not both.")
        metrics = metrics_dict
    return loss, metrics


def fit_arguments(x: Any, y: Any, batch_size: Any, epochs: Any, validation_data: Any, dl_train: Any,
                  dl_val: Any, log_step_freq: Any) -> tuple[dict[str, Any], bool]:
    """``fit``'s arguments in the Keras form, and whether the call was torchkeras's.

    torchkeras's ``fit(epochs, dl_train, dl_val=None, log_step_freq=1)`` (an int first)
    arrives in Keras's positions ``(x, y, batch_size, epochs)``; ``dl_train=`` / ``dl_val=``
    by name also mean that form. Returns ``{x, y, batch_size, epochs, validation_data,
    log_step_freq}`` and the flag.

    Example:
        >>> named, form = fit_arguments(5, "loader", "val", 30, None, None, None, None)
        >>> named["x"], named["epochs"], named["validation_data"], named["log_step_freq"], form
        ('loader', 5, 'val', 30, True)
    """
    if isinstance(x, numbers.Integral) and not isinstance(x, bool):  # NumPy integers too
        if y is not None and dl_train is not None:
            raise ValueError("fit(epochs, dl_train, ...) got the training data twice "
                             "(positionally and as `dl_train`).")
        if batch_size is not None and dl_val is not None:
            raise ValueError("fit(epochs, dl_train, dl_val, ...) got the validation data twice "
                             "(positionally and as `dl_val`).")
        if epochs != 1 and log_step_freq is not None:
            raise ValueError("fit(epochs, dl_train, dl_val, log_step_freq) got `log_step_freq` twice.")
        return {"x": y if y is not None else dl_train, "y": None, "batch_size": None, "epochs": int(x),
                "validation_data": batch_size if batch_size is not None else dl_val,
                "log_step_freq": epochs if epochs != 1 else log_step_freq}, True
    named = {"x": x, "y": y, "batch_size": batch_size, "epochs": epochs, "validation_data": validation_data,
             "log_step_freq": log_step_freq}
    if dl_train is not None or dl_val is not None:
        if x is not None and dl_train is not None:
            raise ValueError("Pass the training data as `x` or as `dl_train`, not both.")
        named.update(x=x if dl_train is None else dl_train,
                     validation_data=validation_data if dl_val is None else dl_val)
        return named, True
    return named, False


def history_frame(history: pd.DataFrame) -> pd.DataFrame:
    """The history as torchkeras returned it: one row per epoch, without the ``epoch`` and ``lr`` columns.

    Example:
        >>> import pandas as pd
        >>> list(history_frame(pd.DataFrame([{"epoch": 1, "loss": 0.5, "val_loss": 0.6, "lr": 0.1}])).columns)
        ['loss', 'val_loss']
    """
    return history[[c for c in history.columns if c not in ("epoch", "lr")]].reset_index(drop=True)


def evaluate_logs(logs: dict[str, float]) -> dict[str, float]:
    """``evaluate``'s result as torchkeras returned it: every key prefixed ``val_``.

    Example:
        >>> evaluate_logs({"loss": 0.25, "accuracy": 0.5})
        {'val_loss': 0.25, 'val_accuracy': 0.5}
    """
    return {f"val_{key}": value for key, value in logs.items()}


def is_loss(value: Any) -> bool:
    """True for what only a loss can be: a non-optimizer ``nn.Module``, or a function of two arguments.

    An optimizer factory takes one argument (the parameters), a loss two (``y_pred, y_true``).

    Example:
        >>> is_loss(nn.MSELoss()), is_loss(lambda y_pred, y: (y_pred - y).abs().mean()), is_loss(lambda p: p)
        (True, True, False)
    """
    if isinstance(value, nn.Module):
        return True
    if not callable(value) or isinstance(value, type):
        return False
    try:
        return _required_positional(value) >= 2
    except (TypeError, ValueError):  # a builtin without a signature: not a loss we can tell
        return False


def _required_positional(function: Any) -> int:
    """How many positional arguments ``function`` needs (those without a default)."""
    parameters = inspect.signature(function).parameters.values()
    return sum(1 for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               and p.default is p.empty)


def compile_arguments(args: tuple, *, optimizer: Any, loss: Any, metrics: Any, device: Any, loss_func: Any,
                      metrics_dict: Any) -> tuple[dict[str, Any], bool]:
    """``compile``'s positional and named arguments as ``({optimizer, loss, metrics, device}, torchkeras_form)``.

    Positionally ``compile(optimizer, loss, metrics)`` (Keras), or, when the first is a loss
    (:func:`is_loss`), torchkeras's ``compile(loss_func, optimizer, metrics_dict, device)``.
    ``optimizer=None`` means "adam" (torchkeras's default is Adam with lr=1e-3, the same).

    Example:
        >>> named, form = compile_arguments((nn.MSELoss(), "sgd"), optimizer=None, loss=None, metrics=None,
        ...                                 device="auto", loss_func=None, metrics_dict=None)
        >>> named["optimizer"], type(named["loss"]).__name__, form
        ('sgd', 'MSELoss', True)
    """
    loss_first = bool(args) and is_loss(args[0])
    torchkeras_form = loss_first or loss_func is not None or metrics_dict is not None
    loss, metrics = merge_compile_names(loss, loss_func, metrics, metrics_dict)
    given = {"optimizer": optimizer, "loss": loss, "metrics": metrics, "device": None if device == "auto" else device}
    order = ("loss", "optimizer", "metrics", "device") if loss_first else ("optimizer", "loss", "metrics")
    if len(args) > len(order):
        raise TypeError(f"compile() takes at most {len(order)} positional arguments ({', '.join(order)}). "
                        f"Received: {len(args)}. Pass the others by name.")
    for name, value in zip(order, args, strict=False):
        if given[name] is not None:
            raise TypeError(f"compile() got `{name}` twice, positionally and by name. Pass it once.")
        given[name] = value
    given["optimizer"] = "adam" if given["optimizer"] is None else given["optimizer"]
    given["device"] = "auto" if given["device"] is None else given["device"]
    if torchkeras_form and _cuda_asked_without_cuda(given["device"]):
        # torchkeras used the device only "if torch.cuda.is_available()": its scripts run on CPU machines.
        warnings.warn(f"device={given['device']!r} but CUDA is not available: training on the CPU, as "
                      "torchkeras did.", RuntimeWarning, stacklevel=3)
        given["device"] = "cpu"
    return given, torchkeras_form


def _cuda_asked_without_cuda(device: Any) -> bool:
    try:
        return torch.device(device).type == "cuda" and not torch.cuda.is_available()
    except (RuntimeError, TypeError):
        return False  # not a device: resolve_device names the problem


def print_bar() -> None:
    """Print torchkeras's time bar: a blank line, 80 "=" and the time (``Model.print_bar()``)."""
    print("\n" + "=" * 80 + datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"))  # noqa: T201


def checked_net(net: Any) -> nn.Module:
    """``Model(net)``'s argument, or a TypeError that says what it must be."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"Model(net) wraps an nn.Module. Received: net={net!r:.80}. Subclass Model and define "
                        "forward(), or pass a module: kerastorch.Model(nn.Sequential(...)).")
    return net


def _takes_features_and_labels(method: Any) -> bool:
    """True for torchkeras's step signature ``step(features, labels)`` (two required arguments)."""
    return _required_positional(method) == 2


#: (model class, kind) -> (the step method's name, whether it takes (features, labels), whether it is user code).
_STEP_KINDS: dict[tuple[type, str], tuple[str, bool, bool]] = {}

_STEP_NAMES = {"train": "train_step", "test": "test_step", "predict": "predict_step"}


def resolve_step(model: Any, kind: str, base: type) -> tuple[Callable[[Any], Any], bool]:
    """The step the engine calls per batch, in the Keras form ``step(batch)``, and whether it is user code.

    ``kind`` is "train", "test" or "predict". A subclass that overrides torchkeras's ``train_step(features,
    labels)`` or defines ``evaluate_step(features, labels)`` gets them called with the batch's two parts;
    their float logs become tensors (and ``evaluate_step``'s ``val_`` prefixes are dropped: the engine adds
    them back where torchkeras had them). Decided once per class: ``inspect.signature`` is dozens of calls.

    Args:
        model: the kerastorch Model.
        kind: "train", "test" or "predict".
        base: the kerastorch ``Model`` class, whose own steps are the built-in ones.

    Example:
        >>> import kerastorch as kt
        >>> class Legacy(kt.Model):
        ...     def train_step(self, features, labels):
        ...         return {"loss": 0.5}
        >>> step, user_code = resolve_step(Legacy(nn.Linear(1, 1)), "train", kt.Model)
        >>> step((torch.zeros(1, 1), torch.zeros(1, 1))), user_code
        ({'loss': tensor(0.5000, dtype=torch.float64)}, True)
    """
    key = (type(model), kind)
    found = _STEP_KINDS.get(key)
    if found is None:
        name = "evaluate_step" if kind == "test" and hasattr(model, "evaluate_step") else _STEP_NAMES[kind]
        user_code = getattr(type(model), name) is not getattr(base, name, None)
        torchkeras_style = user_code and kind != "predict" and _takes_features_and_labels(getattr(model, name))
        found = _STEP_KINDS[key] = (name, torchkeras_style, user_code)
    name, torchkeras_style, user_code = found
    step = getattr(model, name)
    if not torchkeras_style:
        return step, user_code
    prefix = "val_" if kind == "test" else ""

    def torchkeras_step(batch: Any) -> dict[str, Any]:
        logs = step(batch[0], batch[1])
        return {key.removeprefix(prefix): torch.as_tensor(value, dtype=torch.float64) for key, value in logs.items()}

    return torchkeras_step, True


class TorchkerasSurface:
    """What torchkeras's ``Model`` had that a Keras-style model does not; mixed into ``kerastorch.Model``.

    ``Model(net)`` keeps ``net`` as the submodule ``net`` and runs it as the forward.

    Example:
        >>> import torch, kerastorch as kt
        >>> model = kt.Model(nn.Linear(2, 1))
        >>> list(model.state_dict()), model(torch.zeros(3, 2)).shape
        (['net.weight', 'net.bias'], torch.Size([3, 1]))
    """

    _config: Any

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the wrapped ``net`` (``Model(net)``); a subclass defines its own ``forward`` instead."""
        net = getattr(self, "_modules", {}).get("net")
        if net is None:
            raise NotImplementedError(f"{type(self).__name__} has no forward(). Define forward() in your "
                                      "Model subclass, or wrap an existing module: kerastorch.Model(net).")
        return net(*args, **kwargs)

    @property
    def loss_func(self) -> Any:
        """The compiled loss as it was given (torchkeras's name for it); None before ``compile``."""
        return None if self._config is None else self._config.loss_spec

    @property
    def metrics_dict(self) -> dict[str, Any]:
        """The compiled metrics as they were given, by name (torchkeras's name for them)."""
        return {} if self._config is None else dict(self._config.metric_specs)

    print_bar = staticmethod(print_bar)
