"""Ctrl-C and SIGTERM during fit: finish the batch, save, then stop.

While ``fit`` runs, SIGINT and SIGTERM only set ``session.pending_signal``;
the batch loop ends the epoch early at the end of the current accumulation
window, :func:`raise_for_signal` lets checkpoint callbacks write an interrupt
checkpoint, and then raises. A second Ctrl-C interrupts at once.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ..callbacks.base import CallbackList
    from .session import Session


@contextlib.contextmanager
def signal_guard(session: Session) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``session.pending_signal``; restore the handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and session.pending_signal == "SIGINT":
            raise KeyboardInterrupt  # a second Ctrl-C does not wait for the batch to end
        session.pending_signal = "SIGINT" if signum == signal.SIGINT else "SIGTERM"

    session.pending_signal = None
    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        session.pending_signal = None


def raise_for_signal(session: Session) -> None:
    """Save interrupt checkpoints, then raise KeyboardInterrupt (SIGINT) or SystemExit(143) (SIGTERM)."""
    received, session.pending_signal = session.pending_signal, None
    for save in cast("CallbackList", session.callbacks).save_interrupt_checkpoint:  # fit made the list
        save()
    if received == "SIGTERM":
        raise SystemExit(143)  # 128 + SIGTERM, what a process killed by SIGTERM reports
    raise KeyboardInterrupt
