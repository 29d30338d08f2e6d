"""Ctrl-C and SIGTERM during fit: finish the batch, save, then stop.

While ``fit`` runs, SIGINT and SIGTERM only set ``session.pending_signal``;
the batch loop ends the epoch early at the end of the current accumulation
window, :func:`raise_for_signal` lets checkpoint callbacks write an interrupt
checkpoint, and then raises. A second Ctrl-C interrupts at once.

The ``KeyboardInterrupt`` the guard raises leaves its kerastorch frames behind: the
traceback shows the user's ``fit`` call and the one-line message, not the batch loop.
"""
from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import Session


#: Marks the KeyboardInterrupts raised for a signal (their traceback is cut at the guard).
_FROM_SIGNAL = "_kerastorch_signal"


def signal_guard(session: Session) -> _SignalGuard:
    """``with signal_guard(session):`` SIGINT/SIGTERM set ``session.pending_signal``; the handlers are restored after.

    A ``KeyboardInterrupt`` raised for a signal leaves the guard with no traceback (the
    engine's frames below it): what prints is the frames above, the user's, and the message.
    """
    return _SignalGuard(session)


class _SignalGuard:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self.previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.session.pending_signal = None
        for sig in self.previous:
            signal.signal(sig, self._on_signal)

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.previous:
            self.session.pending_signal = None
        if error is not None and getattr(error, _FROM_SIGNAL, False):
            # The with statement re-raises ``error`` with the traceback it has now: none below this frame.
            error.__traceback__ = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        session = self.session
        if signum == signal.SIGINT and session.pending_signal == "SIGINT":
            # A second Ctrl-C does not wait for the batch to end.
            raise _interrupt(f"Stopped at once by a second Ctrl-C {_where(session)}.") from None
        session.pending_signal = "SIGINT" if signum == signal.SIGINT else "SIGTERM"


def _interrupt(message: str) -> KeyboardInterrupt:
    error = KeyboardInterrupt(message)
    setattr(error, _FROM_SIGNAL, True)
    return error


def raise_for_signal(session: Session) -> None:
    """Save interrupt checkpoints, then raise KeyboardInterrupt (SIGINT) or SystemExit(143) (SIGTERM)."""
    received, session.pending_signal = session.pending_signal, None
    saved = session.callbacks.save_interrupt_checkpoints()
    if received == "SIGTERM":
        raise SystemExit(143)  # 128 + SIGTERM, what a process killed by SIGTERM reports
    raise _interrupt(interruption_message(session, saved)) from None


def _where(session: Session) -> str:
    steps = session.callbacks.params.get("steps")
    of_steps = f" of {steps}" if steps else ""
    return (f"in epoch {session.epoch_base + session.epoch + 1}, batch {session.batch + 1}{of_steps}; "
            f"model.history keeps {len(session.record.history_rows)} finished epochs")


def interruption_message(session: Session, saved: list[str]) -> str:
    """One line: where training stopped, what the history keeps, the interrupt checkpoints written.

    Epochs are numbered as in ``model.history`` and batches from 1, as on the progress bar.
    """
    if not saved:
        return f"Training interrupted {_where(session)}."
    paths = ", ".join(saved)
    return (f"Training interrupted {_where(session)}; interrupt checkpoint: {paths} "
            f"(continue with fit(..., resume_from={saved[0]!r})).")
