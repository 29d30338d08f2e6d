"""LambdaCallback: a callback built from plain functions, one per hook."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import ALIASES as _ALIASES  # Keras's names for the training batch hooks
from .base import HOOKS, Callback

# Keras's positional order.
_POSITIONAL = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
               "on_train_batch_begin", "on_train_batch_end")

_classes: dict[tuple[type, frozenset[str]], type] = {}


def _forwarder(hook: str) -> Callable[..., Any]:
    def method(self: LambdaCallback, *args: Any) -> Any:
        return self.functions[hook](*args)
    method.__name__ = method.__qualname__ = hook
    return method


def _collect(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    if len(args) > len(_POSITIONAL):
        raise TypeError(f"LambdaCallback takes at most {len(_POSITIONAL)} positional arguments "
                        f"({', '.join(_POSITIONAL)}); pass other hooks by keyword.")
    for name, fn in zip(_POSITIONAL, args, strict=False):
        if name in kwargs:
            raise TypeError(f"LambdaCallback got `{name}` both positionally and as a keyword.")
        kwargs = {name: fn, **kwargs}
    functions: dict[str, Callable[..., Any]] = {}
    for name, fn in kwargs.items():
        hook = _ALIASES.get(name, name)
        if hook not in HOOKS:
            raise TypeError(f"LambdaCallback got an unknown hook {name!r}. Hooks: {', '.join(HOOKS)}.")
        if fn is None:
            continue
        if not callable(fn):
            raise TypeError(f"LambdaCallback's `{name}` must be callable. Received: {fn!r}")
        if hook in functions:
            raise TypeError(f"LambdaCallback got `{hook}` twice (once as its alias `{name}`).")
        functions[hook] = fn
    return functions


class LambdaCallback(Callback):
    """Call the given functions from the matching hooks.

    Each function gets the hook's arguments: ``on_epoch_begin/on_epoch_end(epoch, logs)``,
    ``on_*_batch_begin/end(batch, logs)`` and ``on_backward_end(batch, logs)``,
    ``on_train/test/predict_begin/end(logs)``. Every hook of
    :data:`~kerastorch.callbacks.base.HOOKS` can be given (as a keyword), plus
    Keras 2's ``on_batch_begin`` / ``on_batch_end`` for the training batch hooks.

    Only the hooks given are dispatched: each instance belongs to a subclass
    (named ``LambdaCallback``, cached per set of hooks) that defines exactly
    those methods, so an unused batch hook costs nothing in the loop.

    Example:
        >>> seen = []
        >>> cb = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs["loss"]))
    """

    functions: dict[str, Callable[..., Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> LambdaCallback:
        functions = _collect(args, kwargs)
        key = (cls, frozenset(functions))
        subclass = _classes.get(key)
        if subclass is None:
            namespace: dict[str, Any] = {hook: _forwarder(hook) for hook in sorted(functions)}
            namespace.update({"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                              "__doc__": cls.__doc__})
            subclass = _classes[key] = type(cls.__name__, (cls,), namespace)
        return super().__new__(subclass)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.functions = _collect(args, kwargs)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickle/copy through the public constructor: the per-instance subclass is not importable.
        state = {k: v for k, v in self.__dict__.items() if k != "functions"}
        return (_rebuild, (type(self).__mro__[1], self.functions, state))


def _rebuild(cls: type, functions: dict[str, Callable[..., Any]], state: dict[str, Any]) -> LambdaCallback:
    callback = cls(**functions)
    callback.__dict__.update(state)
    return callback
