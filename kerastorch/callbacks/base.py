"""Callback base class and the dispatching list.

Hook names and signatures follow Keras, plus ``on_backward_end`` (after
``loss.backward()`` and before the optimizer step, as in Poutyne). Epoch and
batch indices passed to hooks are 0-based; the history frame and printed tables
number epochs from 1.

Per-batch ``logs`` hold *device tensors* (the batch loss and whatever
``train_step`` returned), never Python floats: turning them into numbers is a
host-device sync, which a callback that needs it pays for itself.

Besides the hooks, a callback may declare optional *capabilities*; each has a
default on :class:`Callback`, and the engine calls the overridden ones directly
(the tables in :class:`CallbackList` are built once per call):

* :meth:`Callback.check_params`: check the arguments against fit's ``params``, on every
  callback before the first ``on_train_begin`` (so a bad one fails before any file is opened);
* ``inactive_hooks``: overridden hooks not needed with the current arguments
  (e.g. a per-batch hook of a saver with ``save_freq="epoch"``), left out of the
  hot loop;
* :meth:`Callback.flush_writes`: checkpoint writes decided in a hook, run once
  *every* callback has run that hook, so saved callback states are the epoch's own;
* :meth:`Callback.save_interrupt_checkpoint`: on Ctrl-C / SIGTERM;
* :meth:`Callback.on_exception`: the call is ending with an exception (displays close);
* :meth:`Callback.resume_candidates`: files ``fit(resume_from="auto")`` may continue from;
* :meth:`Callback.auto_resume_path`: a checkpoint to continue from without being asked
  (BackupAndRestore's backup);
* :meth:`Callback.on_step_validation`: a validation ``fit(validation_every_n_steps=N)`` ran
  (its global step and ``val_*`` logs; CSVLogger's step rows, ModelCheckpoint(save_freq="validation"));
* :meth:`Callback.state_dict` / :meth:`Callback.load_state_dict`: resumable state.

As in Keras, ``on_batch_begin`` / ``on_batch_end`` are aliases of the training batch hooks: a
callback that overrides only the alias is called from the ``on_train_batch_*`` table, and a hook
called without logs (the begin hooks) gets a fresh ``{}``, never None.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

HOOKS: tuple[str, ...] = (
    "on_train_begin", "on_train_end",
    "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end",
    "on_backward_end",
    "on_test_begin", "on_test_end",
    "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end",
    "on_predict_batch_begin", "on_predict_batch_end",
)

#: Keras's backward-compatible names of the training batch hooks (called as those hooks).
ALIASES: dict[str, str] = {"on_batch_begin": "on_train_batch_begin", "on_batch_end": "on_train_batch_end"}

# Hooks called with (index, logs); the others get (logs) only.
_INDEXED = frozenset(name for name in HOOKS if "batch" in name or "epoch" in name or name == "on_backward_end")


class Callback:
    """Base class for callbacks: override only the hooks you need.

    ``self.model`` is the unwrapped :class:`kerastorch.Model` (never a
    ``DataParallel``/``DDP`` wrapper); ``self.params`` holds ``epochs``,
    ``steps``, ``verbose`` and, in ``fit``, ``has_validation``, ``log_keys``
    (the epoch-log keys a default fit produces), ``custom_logs`` (a custom step
    may log others) and ``validation_freq`` for the current ``fit``/``evaluate``/``predict``;
    ``self.session`` is the running call's
    :class:`~kerastorch.engine.session.Session` (epoch, batch, global step, the
    compiled configuration). Stop training with ``self.model.stop_training = True``.

    Example:
        >>> class PrintEpoch(Callback):
        ...     def on_epoch_end(self, epoch, logs=None):
        ...         print(epoch, round(logs["loss"], 3))
    """

    #: Overridden hooks this instance does not need with its arguments (kept out of the hot loop).
    inactive_hooks: tuple[str, ...] = ()
    #: The callback writes files (checkpoints, logs): ``fit(fast_dev_run=...)`` leaves it out.
    writes_files: bool = False

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}
        self.session: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def set_session(self, session: Any) -> None:
        """Called by fit / evaluate / predict with the running call's Session (kept after the call)."""
        self.session = session

    def epoch_number(self, epoch: int) -> int:
        """The history's number of this fit's 0-based ``epoch`` (from 1, on across fits; ``epoch + 1`` outside fit)."""
        return epoch + 1 if self.session is None else self.session.epoch_number(epoch)

    # Keras-compatible hooks; each is a no-op here (the training batch hooks call Keras's aliases, as in
    # Keras) and only the overridden ones are called. Hooks called without logs get {}.
    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_begin(batch, logs)  # Keras: the alias is what a subclass may override

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Keras's alias of :meth:`on_train_batch_begin` (called when only the alias is overridden)."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Keras's alias of :meth:`on_train_batch_end` (called when only the alias is overridden)."""

    def on_backward_end(self, batch: int, logs: dict | None = None) -> None: ...
    def on_test_begin(self, logs: dict | None = None) -> None: ...
    def on_test_end(self, logs: dict | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_begin(self, logs: dict | None = None) -> None: ...
    def on_predict_end(self, logs: dict | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None: ...

    # Capabilities (see the module docstring): the engine calls the overridden ones.
    def check_params(self) -> None:
        """Raise for arguments that cannot work in this fit (``self.params`` is set); before any ``on_train_begin``."""

    def flush_writes(self) -> None:
        """Write the checkpoints decided in the hook just run (after every callback ran it)."""

    def save_interrupt_checkpoint(self) -> str | None:
        """Write a resumable checkpoint now: fit was interrupted (Ctrl-C, SIGTERM); return its path (or None)."""

    def on_exception(self, error: BaseException) -> None:
        """fit / evaluate / predict is ending with ``error`` (Ctrl-C included): close what is open on screen."""

    def on_step_validation(self, step: int, logs: dict[str, Any]) -> None:
        """``fit(validation_every_n_steps=N)`` validated after global step ``step``; ``logs``: its ``val_*`` values."""

    def resume_candidates(self) -> list[str]:
        """Checkpoint files ``fit(resume_from="auto")`` may continue from (newest valid wins)."""
        return []

    def auto_resume_path(self) -> str | None:
        """A checkpoint to continue from when ``fit`` got no ``resume_from`` (asked before on_train_begin)."""
        return None

    # Checkpointable callbacks (EarlyStopping, ...) override these two.
    def state_dict(self) -> dict[str, Any]:
        """Return the callback's resumable state (plain Python / tensors only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


_Methods = tuple[Callable[..., Any], ...]

#: The capabilities the engine calls on the callbacks that override them.
CAPABILITIES: tuple[str, ...] = ("check_params", "flush_writes", "save_interrupt_checkpoint", "on_exception",
                                 "resume_candidates", "auto_resume_path", "on_step_validation")


def _overrides(callback: Callback, name: str) -> bool:
    if name in callback.inactive_hooks:
        return False
    method = getattr(type(callback), name, None)
    return method is not None and method is not getattr(Callback, name)


def _bound_hook(callback: Callback, name: str) -> Callable[..., Any] | None:
    """The method the ``name`` table calls on ``callback``: the hook, else its overridden Keras alias, else None."""
    if _overrides(callback, name):
        return getattr(callback, name)
    alias = next((old for old, new in ALIASES.items() if new == name), None)
    if alias is not None and name not in callback.inactive_hooks and _overrides(callback, alias):
        return getattr(callback, alias)
    return None


class CallbackList:
    """Dispatches hooks to the callbacks that override them.

    The table of overriding callbacks is built once, so a hook nobody
    overrides costs one attribute read and an empty loop, whatever the number
    of callbacks. ``hooks.on_train_batch_end`` is a tuple of bound methods, and
    so is each capability (``hooks.flush_writes``, ...). ``batch_writers`` are the
    ``flush_writes`` of callbacks whose per-batch hook is active.

    Example:
        >>> cbs = CallbackList([Callback()])
        >>> cbs.on_train_batch_end
        ()
    """

    # Set by _build_table: per hook and capability, the bound methods of the callbacks overriding it.
    on_train_begin: _Methods
    on_train_end: _Methods
    on_epoch_begin: _Methods
    on_epoch_end: _Methods
    on_train_batch_begin: _Methods
    on_train_batch_end: _Methods
    on_backward_end: _Methods
    on_test_begin: _Methods
    on_test_end: _Methods
    on_test_batch_begin: _Methods
    on_test_batch_end: _Methods
    on_predict_begin: _Methods
    on_predict_end: _Methods
    on_predict_batch_begin: _Methods
    on_predict_batch_end: _Methods
    check_params: _Methods
    flush_writes: _Methods
    save_interrupt_checkpoint: _Methods
    on_exception: _Methods
    resume_candidates: _Methods
    auto_resume_path: _Methods
    on_step_validation: _Methods

    def __init__(self, callbacks: Iterable[Callback] = (), model: Any = None,
                 params: dict[str, Any] | None = None) -> None:
        self.callbacks: list[Callback] = list(callbacks)
        self.model: Any = None
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    "`callbacks` must be kerastorch.callbacks.Callback instances. "
                    f"Received: {cb!r} of type {type(cb).__name__}")
        if model is not None:
            self.set_model(model)
        self.set_params(params or {})
        self._build_table()

    def _build_table(self) -> None:
        for name in (*HOOKS, *CAPABILITIES):
            methods = (_bound_hook(cb, name) for cb in self.callbacks)
            setattr(self, name, tuple(method for method in methods if method is not None))
        self.batch_writers = tuple(cb.flush_writes for cb in self.callbacks if _overrides(cb, "flush_writes")
                                   and _bound_hook(cb, "on_train_batch_end") is not None)

    def set_session(self, session: Any) -> None:
        for cb in self.callbacks:
            cb.set_session(session)

    def set_model(self, model: Any) -> None:
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params
        for cb in self.callbacks:
            cb.set_params(params)

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on every callback that overrides it, in list order.

        Logs given as None (or left out) arrive as one fresh ``{}`` shared by this call's
        callbacks, as Keras passes them.

        Example:
            >>> class Begin(Callback):
            ...     def on_train_begin(self, logs=None):
            ...         print(logs)
            >>> CallbackList([Begin()]).call("on_train_begin", None)
            {}
        """
        methods = getattr(self, hook)
        if not methods:
            return
        if hook in HOOKS:  # a capability's arguments are passed as given
            arity = 2 if hook in _INDEXED else 1
            if len(args) < arity:
                args = (*args, {})
            elif args[-1] is None:
                args = (*args[:-1], {})
        for method in methods:
            method(*args)

    def save_interrupt_checkpoints(self) -> list[str]:
        """Every ``save_interrupt_checkpoint`` capability (Ctrl-C, SIGTERM, ``max_time``); the paths written."""
        return [path for save in self.save_interrupt_checkpoint if (path := save()) is not None]

    def flush_after_error(self) -> None:
        """Run the pending checkpoint writes (``flush_writes``) while a hook's exception propagates.

        fit calls it when an ``on_epoch_end`` raises, so the writes already decided for the epoch
        happen; a write failing meanwhile becomes a RuntimeWarning (the hook's exception is raised).
        """
        for write in self.flush_writes:
            try:
                write()
            except Exception as write_error:  # the hook's exception is the one to raise
                warnings.warn(f"A checkpoint decided in on_epoch_end could not be written while a callback's "
                              f"exception propagated: {write_error!r}", RuntimeWarning, stacklevel=2)

    def find(self, kind: type) -> list[Callback]:
        """Callbacks that are instances of ``kind``."""
        return [cb for cb in self.callbacks if isinstance(cb, kind)]

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)


def as_callback_list(callbacks: Sequence[Callback] | CallbackList | None) -> list[Callback]:
    """Normalise the ``callbacks`` argument of fit/evaluate/predict to a list."""
    if callbacks is None:
        return []
    if isinstance(callbacks, CallbackList):
        return list(callbacks.callbacks)
    if isinstance(callbacks, Callback):
        return [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError("`callbacks` must be a list of Callback instances. "
                        f"Received: callbacks={callbacks!r}")
    return list(callbacks)
