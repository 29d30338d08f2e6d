"""One call at a time per model: which fit / evaluate / predict runs on it, and in which thread.

The rule (checked once per call, never per step):

* ``fit`` is refused while any call runs on the model: a second fit from a callback
  would interleave two epoch loops over one optimizer, and a fit from another thread
  would race the first for the weights and the train/eval mode.
* ``evaluate`` and ``predict`` from a callback, on the thread of the running call, are
  allowed (as in Keras); an ``evaluate`` inside a running ``fit`` works on its own copies
  of the compiled metrics (:func:`isolated_metrics`), so the epoch's training metrics and
  step logs are left exactly as they were.
* Any call from another thread while a call runs on the model is refused: both would
  switch the model between train and eval mode and share the metric objects.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

_F = TypeVar("_F", bound=Callable[..., Any])

_lock = threading.Lock()
#: Per model, the running calls, outermost first: (call name, thread).
_running: weakref.WeakKeyDictionary[Any, list[tuple[str, threading.Thread]]] = weakref.WeakKeyDictionary()


def running_calls(model: Any) -> list[str]:
    """Names of the calls running on ``model`` now, outermost first.

    Example:
        >>> from torch import nn
        >>> running_calls(nn.Linear(1, 1))
        []
    """
    with _lock:
        return [name for name, _ in _running.get(model, [])]


def _refusal(call: str, active: list[tuple[str, threading.Thread]], me: threading.Thread) -> str | None:
    """The message refusing ``call`` given the calls already running, or None to allow it."""
    if not active:
        return None
    name, thread = active[0]
    if thread is not me:
        return (f"`{call}()` was called from thread {me.name!r} while `{name}()` is running on this model "
                f"in thread {thread.name!r}. A model runs one call at a time: wait for `{name}()` to return "
                f"(e.g. join that thread), or call `{call}()` on a copy (copy.deepcopy(model)).")
    if call in ("fit", "train_on_batch"):
        running = " inside ".join(f"`{n}()`" for n, _ in reversed(active))
        return (f"`{call}()` was called while {running} is running on this model (from a callback). "
                "A model trains in one fit at a time: to train again, let the running fit return and call "
                "fit() afterwards (stop it early with `self.model.stop_training = True`). evaluate() and "
                "predict() may be called from callbacks.")
    return None


def refuse_while_running(model: Any, call: str) -> None:
    """Raise RuntimeError when a fit / evaluate / predict runs on ``model`` (``call`` would change it mid-run).

    Example:
        >>> from torch import nn
        >>> refuse_while_running(nn.Linear(1, 1), "compile")
    """
    running = running_calls(model)
    if running:
        raise RuntimeError(f"`{call}()` was called while `{running[0]}()` is running on this model: it would "
                           f"replace the optimizer, loss and metrics mid-run. Call `{call}()` after "
                           f"`{running[0]}()` returns (from a callback, stop the fit with "
                           "`self.model.stop_training = True`).")


@contextlib.contextmanager
def entered(model: Any, call: str) -> Iterator[bool]:
    """Register ``call`` ("fit", "evaluate", "predict") on ``model`` for the ``with`` block.

    Yields True when a ``fit`` is running underneath (the call comes from one of its callbacks).

    Raises:
        RuntimeError: the call is refused (see the module docstring); nothing was changed.

    Example:
        >>> from torch import nn
        >>> net = nn.Linear(1, 1)
        >>> with entered(net, "fit"):
        ...     running_calls(net)
        ['fit']
    """
    me = threading.current_thread()
    with _lock:
        active = _running.setdefault(model, [])
        message = _refusal(call, active, me)
        if message is not None:
            raise RuntimeError(message)
        inside_fit = any(name == "fit" for name, _ in active)
        entry = (call, me)
        active.append(entry)
    try:
        yield inside_fit
    finally:
        with _lock:
            active.remove(entry)


@contextlib.contextmanager
def isolated_metrics(config: Any, isolate: bool) -> Iterator[None]:
    """With ``isolate``, ``config.metrics`` are fresh copies for the block, then the originals again.

    An ``evaluate`` from a training callback resets and fills the metrics it uses; the
    copies keep the running epoch's own metric states untouched. Without ``isolate`` (the
    common case) nothing is copied.

    Example:
        >>> class Config: metrics = {"acc": object()}
        >>> config = Config(); original = config.metrics
        >>> with isolated_metrics(config, True):
        ...     config.metrics is original
        False
        >>> config.metrics is original
        True
    """
    if not isolate:
        yield
        return
    original = config.metrics
    config.metrics = {name: copy.deepcopy(metric) for name, metric in original.items()}
    try:
        yield
    finally:
        config.metrics = original


def guarded(call: str) -> Callable[[_F], _F]:
    """Decorate an engine entry point ``function(model, config, ...)`` with :func:`entered`.

    An ``evaluate`` from a callback of a running fit also gets :func:`isolated_metrics`.
    """
    def decorate(function: _F) -> _F:
        @functools.wraps(function)
        def run(model: Any, config: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # noqa: F841  # IPython leaves this frame out of a notebook's traceback
            isolate = call in ("evaluate", "test_on_batch")
            with entered(model, call) as inside_fit, isolated_metrics(config, inside_fit and isolate):
                return function(model, config, *args, **kwargs)
        return cast("_F", run)
    return decorate
