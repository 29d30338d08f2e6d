"""Ctrl-C, SIGTERM and SLURM's SIGUSR1 during fit: finish the batch, save, then stop.

While ``fit`` runs, SIGINT and SIGTERM (and, in a SLURM job, SIGUSR1) only set
``session.pending_signal``; the batch loop ends the epoch early at the end of the current
accumulation window, and :func:`act_on_signal` lets checkpoint callbacks write an interrupt
checkpoint, then:

* SIGINT raises KeyboardInterrupt, SIGTERM SystemExit(143); a second Ctrl-C interrupts at once;
* SIGUSR1, SLURM's warning that the time limit is near (``sbatch --signal=USR1@90``), warns where
  training stopped and returns: ``fit`` returns normally, so the script can ask for a requeue and
  exit 0, and the requeued job continues with ``fit(..., resume_from="auto")``. SIGUSR1 is taken
  only in a SLURM job (``SLURM_JOB_ID`` set, ``KERASTORCH_SLURM=0`` not) and only while no other
  handler is installed for it.

The ``KeyboardInterrupt`` the guard raises leaves its kerastorch frames behind: the
traceback shows the user's ``fit`` call and the one-line message, not the batch loop.

Several ranks: each receives the signal, perhaps at different batches, and DDP needs them all to
stop after the same one. In a SLURM job with more than one rank, once the batch loop has asked for
:func:`signal_agreement`, the handlers only note the signal, and the agreement's call, made at the end
of every accumulation window, all-reduces it (the strongest signal wins) on a CPU gloo group, so every
rank stops after the same window. Its cost, paid only there: one all-reduce of one integer between
the hosts per optimizer step (tens of microseconds on one node; a network round trip across nodes),
and no device sync. Elsewhere (one process, torchrun outside SLURM) the loop reads
``session.pending_signal`` only.
"""
from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ..distributed import is_rank_zero, world_size
from ..slurm import in_slurm_job

if TYPE_CHECKING:
    from .session import Session


#: Marks the KeyboardInterrupts raised for a signal (their traceback is cut at the guard).
_FROM_SIGNAL = "_kerastorch_signal"
#: When signals meet, the stronger one wins (a Ctrl-C is not downgraded by a later SIGUSR1).
_STRENGTH = {None: 0, "SIGUSR1": 1, "SIGTERM": 2, "SIGINT": 3}
_BY_STRENGTH = {strength: name for name, strength in _STRENGTH.items()}
#: The guard of the running fit (signal handlers belong to the process, and fit does not nest).
_active: _SignalGuard | None = None
#: (the default process group, the gloo group the ranks agree on signals through)
_agreement_group: tuple[Any, Any] | None = None


def signal_guard(session: Session) -> _SignalGuard:
    """``with signal_guard(session):`` SIGINT/SIGTERM (and SLURM's SIGUSR1) set ``session.pending_signal``;
    the handlers are restored after.

    A ``KeyboardInterrupt`` raised for a signal leaves the guard with no traceback (the
    engine's frames below it): what prints is the frames above, the user's, and the message.
    """
    return _SignalGuard(session)


def signal_agreement(session: Session) -> Callable[[], None] | None:
    """What the batch loop calls at the end of each accumulation window so that several ranks stop after the
    same batch; None when there is nothing to agree on (one process, or no SIGUSR1 handler: outside SLURM).

    Example:
        >>> from kerastorch.engine.session import FitRecord, Session
        >>> signal_agreement(Session(None, FitRecord(), None)) is None  # not inside fit
        True
    """
    guard = _active
    if guard is None or guard.session is not session or guard.agreement_limit is None:
        return None
    guard.agreeing = True  # from now on the handlers leave the decision to the agreement
    guard.received = _stronger(guard.received, session.pending_signal)  # one received before this epoch
    session.pending_signal = None
    return guard.agree


class _SignalGuard:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.previous: dict[int, Any] = {}
        self.received: str | None = None  # several ranks: the signal noted here, not yet agreed on
        self.agreement_limit: float | None = None  # several ranks: agree at windows ending before this batch
        self.agreeing = False  # the batch loop asked for the agreement (signal_agreement)
        self.flag = torch.zeros(1, dtype=torch.int32)

    def __enter__(self) -> None:
        global _active
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        usr1 = _slurm_warning_signal()
        if usr1 and world_size() > 1 and torch.distributed.is_initialized():
            self.agreement_limit = self._agreed_windows()  # before the handlers: they read it
        self.previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, *usr1)}
        self.session.pending_signal = self.received = None
        for sig in self.previous:
            signal.signal(sig, self._on_signal)
        _active = self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        global _active
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.previous:
            self.session.pending_signal = self.received = None
            _active = None
        if error is not None and getattr(error, _FROM_SIGNAL, False):
            # The with statement re-raises ``error`` with the traceback it has now: none below this frame.
            error.__traceback__ = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        session, name = self.session, signal.Signals(signum).name
        if name == "SIGINT" and "SIGINT" in (session.pending_signal, self.received):
            # A second Ctrl-C does not wait for the batch to end.
            raise _interrupt(f"Stopped at once by a second Ctrl-C {_where(session)}.") from None
        if self.agreeing:  # several ranks: agreed on at the next window's end
            self.received = _stronger(self.received, name)
        else:
            session.pending_signal = _stronger(session.pending_signal, name)

    def _agreed_windows(self) -> float:
        """Collective, once per fit: the batch index up to which every rank runs the same windows.

        Ranks with uneven data run one batch more or less: past the shortest rank's last-but-one batch,
        their window ends may differ, and an all-reduce there would wait for a rank that never comes.
        """
        steps = self.session.callbacks.params.get("steps")
        if steps is None:
            return float("inf")
        extremes = torch.tensor([steps, -steps], dtype=torch.int64)
        torch.distributed.all_reduce(extremes, op=torch.distributed.ReduceOp.MIN, group=_gloo_group())
        shortest, longest = int(extremes[0]), -int(extremes[1])
        return shortest if shortest == longest else shortest - 1

    def agree(self) -> None:
        """End of an accumulation window: every rank takes the strongest signal any rank received."""
        if self.session.batch >= self.agreement_limit:  # type: ignore[operator]  # set when this is handed out
            return
        self.flag[0] = _STRENGTH[self.received]
        torch.distributed.all_reduce(self.flag, op=torch.distributed.ReduceOp.MAX, group=_gloo_group())
        agreed = _BY_STRENGTH[int(self.flag[0])]  # a CPU tensor: no device sync
        if agreed is not None:
            self.session.pending_signal, self.received = agreed, None


def _slurm_warning_signal() -> list[int]:
    """[SIGUSR1] in a SLURM job where the platform has it and nobody else handles it, else []."""
    usr1 = getattr(signal, "SIGUSR1", None)
    if usr1 is None or not in_slurm_job(os.environ) or signal.getsignal(usr1) is not signal.SIG_DFL:
        return []
    return [usr1]


def _gloo_group() -> Any:
    """A gloo group over all ranks (made once per default group): CPU integers, kept apart from DDP's traffic."""
    global _agreement_group
    world = torch.distributed.group.WORLD
    if _agreement_group is None or _agreement_group[0] is not world:
        _agreement_group = (world, torch.distributed.new_group(backend="gloo"))
    return _agreement_group[1]


def _stronger(held: str | None, name: str | None) -> str | None:
    return name if _STRENGTH[name] > _STRENGTH[held] else held


def _interrupt(message: str) -> KeyboardInterrupt:
    error = KeyboardInterrupt(message)
    setattr(error, _FROM_SIGNAL, True)
    return error


def act_on_signal(session: Session) -> None:
    """After the batch loop stopped for a signal: save interrupt checkpoints, then stop.

    SIGINT and SIGTERM raise (:func:`raise_for_signal`). SIGUSR1 (SLURM's early warning) warns where
    training stopped and returns: the epoch loop then ends without logging the partial epoch, as for
    ``max_time``, and ``fit`` returns normally.
    """
    if session.pending_signal != "SIGUSR1":
        raise_for_signal(session)
    session.pending_signal = None
    saved = session.callbacks.save_interrupt_checkpoints()
    if is_rank_zero():
        warnings.warn(early_warning_message(session, saved), UserWarning, stacklevel=6)  # the user's fit call


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


def early_warning_message(session: Session, saved: list[str]) -> str:
    """SIGUSR1's warning: where training stopped, the interrupt checkpoint, how a requeued run continues."""
    stopped = f"SIGUSR1 (SLURM's warning that the time limit is near) stopped training {_where(session)}"
    if not saved:
        return (f"{stopped}. No callback wrote an interrupt checkpoint, so a rerun starts over: add "
                "ModelCheckpoint(...) or BackupAndRestore(...) to `callbacks`.")
    return (f"{stopped}; interrupt checkpoint: {', '.join(saved)}. fit(..., resume_from='auto') continues "
            "from it (e.g. in the job requeued with `scontrol requeue $SLURM_JOB_ID`).")
