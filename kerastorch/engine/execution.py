"""How a step calls the model: through the execution wrappers in force and under the precision's autocast.

Inside ``fit`` / ``evaluate`` / ``predict`` (and ``lr_find``), ``self(x)`` in any step, built-in or
overridden, Keras or torchkeras form, is the model as the call runs it: through DistributedDataParallel,
DataParallel or ``torch.compile`` when compile set them up. Outside those calls ``model(x)`` is the plain
module, and so it is in callbacks (a callback on rank 0 alone must never enter DDP's collectives).

How: :class:`RoutedCall` (a mixin of ``Model``) gives the model a ``__call__`` that goes to the
*route* while one is set; :func:`step_runner` sets it around each step and puts the previous one back.
A :class:`Route` calls the wrapper, and the wrapper calls the model back: the route is cleared for that
inner call, so it reaches the plain module (no recursion). A model that calls no wrapper and overrides no
step gets its own ``train_step`` back, unchanged: its steps pay nothing for this.

Where autocast goes: the built-in steps put forward and loss under autocast and call backward outside
it. An overridden step runs *whole* under autocast (as Lightning does), so the user's forward runs in
the lower precision and the user's loss in float32 wherever torch's autocast rules say so (``mse_loss``,
``cross_entropy``, ... are on autocast's float32 list); ``backward_and_step`` leaves autocast for the
backward (``Session.step_autocast``), as torch recommends.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..compiling import CompileConfig
    from .session import Session

_NULL_CONTEXT = contextlib.nullcontext()
_MISSING = object()


class Route:
    """The model's wrapper (DDP, DataParallel, ``torch.compile``), called from ``model(...)`` inside a step.

    While a step runs, the route stands in for the model's ``__call__`` and also for ``self.forward``
    (torchkeras 2.x's own steps call ``self.forward(features)``, which would skip DDP's gradient sync).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Doubler(nn.Module):  # stands for a wrapper that calls the model back
        ...     def __init__(self, inner):
        ...         super().__init__(); self.inner = inner
        ...     def forward(self, x):
        ...         return 2 * self.inner(x)
        >>> class Net(RoutedCall, nn.Linear):
        ...     pass
        >>> net = Net(1, 1); _ = nn.init.ones_(net.weight); _ = nn.init.zeros_(net.bias)
        >>> route = Route(net, Doubler(net)); previous = route.enter()
        >>> net(torch.ones(1, 1)).item(), net.forward(torch.ones(1, 1)).item()  # the wrapper, then the module
        (2.0, 2.0)
        >>> route.leave(previous); net(torch.ones(1, 1)).item()
        1.0
    """

    __slots__ = ("state", "wrapper")

    def __init__(self, model: Any, wrapper: Callable[..., Any]) -> None:
        self.state, self.wrapper = model.__dict__, wrapper

    def enter(self) -> tuple[Any, Any]:
        """Stand in for the model's call and forward; returns what to put back with :meth:`leave`."""
        state = self.state
        previous = state.get("_route"), state.get("forward", _MISSING)
        state["_route"] = state["forward"] = self
        return previous

    def leave(self, previous: tuple[Any, Any]) -> None:
        state = self.state
        state["_route"] = previous[0]
        if previous[1] is _MISSING:
            del state["forward"]
        else:
            state["forward"] = previous[1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        state = self.state
        state["_route"] = None  # the wrapper calls the model back: that call is the plain module
        del state["forward"]
        try:
            return self.wrapper(*args, **kwargs)
        finally:
            state["_route"] = state["forward"] = self


class RoutedCall:
    """``__call__`` for Model: the route while a step runs, else exactly ``nn.Module.__call__``.

    It replaces ``nn.Module._wrapped_call_impl`` frame for frame, so a plain call costs what it did.
    """

    _route: Route | None = None  # set only by step_runner, inside a running step
    _call_impl: Callable[..., Any]
    _compiled_call_impl: Callable[..., Any] | None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        route = self._route
        if route is not None:
            return route(*args, **kwargs)
        if self._compiled_call_impl is not None:  # nn.Module.compile(), as nn.Module.__call__ does
            return self._compiled_call_impl(*args, **kwargs)
        return self._call_impl(*args, **kwargs)


def step_runner(model: Any, config: CompileConfig | None, kind: str, step: Callable[[Any], Any],
                overridden: bool, session: Session | None = None) -> Callable[[Any], Any]:
    """What the engine calls per batch for ``kind`` ("train", "test", "predict").

    Args:
        model: the kerastorch Model.
        config: its compiled configuration (None: ``predict`` before ``compile``, nothing to route).
        kind: which step.
        step: the step as a Keras-form ``step(batch)`` (the torchkeras form already adapted).
        overridden: the step is user code (its whole body then runs under autocast).
        session: the running call's session; a train step records there that backward must leave autocast.

    Returns ``step`` itself when there is neither a wrapper nor an overridden step under mixed precision.
    """
    if config is None:
        return step
    wrapper = config.forward_fn if kind == "train" else config.eval_forward_fn
    route = Route(model, wrapper) if wrapper is not None and wrapper is not model else None
    precision = config.precision
    autocast = overridden and precision.dtype is not None
    if kind == "train" and session is not None:
        session.step_autocast = autocast
    if route is None and not autocast:
        return step

    def run_step(batch: Any) -> Any:
        previous = route.enter() if route is not None else None
        try:
            with precision.autocast() if autocast else _NULL_CONTEXT:
                return step(batch)
        finally:
            if route is not None:
                route.leave(previous)  # type: ignore[arg-type]  # entered above

    return run_step
