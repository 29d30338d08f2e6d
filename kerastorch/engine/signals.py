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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
            # A second Ctrl-C does not wait for the batch to end.
            raise KeyboardInterrupt(f"Stopped at once by a second Ctrl-C {_where(session)}.")
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
    saved = [path for save in session.callbacks.save_interrupt_checkpoint if (path := save()) is not None]
    if received == "SIGTERM":
        raise SystemExit(143)  # 128 + SIGTERM, what a process killed by SIGTERM reports
    raise KeyboardInterrupt(interruption_message(session, saved))


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
