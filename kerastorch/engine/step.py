"""The optimizer step: backward, accumulation window, penalty gradient, clipping, scaler, LR.

:func:`optimizer_step` is what ``Model.backward_and_step`` runs, and it reads
like a hand-written loop: scale and backward; on the batch that closes an
accumulation window, add the regularizer gradient, clip, step through the
GradScaler, zero the gradients and step a per-step LR scheduler. Nothing in it
reads a value back to the host (clipping is fused, the scaler's inf check stays
on the device).
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ..compiling import CompileConfig
    from .session import Session


def optimizer_step(loss: torch.Tensor, config: CompileConfig, session: Session | None) -> None:
    """Backward ``loss``; step the optimizer when ``session.update_now`` (always outside fit).

    ``on_backward_end`` hooks run after every backward, before clipping and the
    step. The penalty gradient is added unscaled, once per window, before clipping.
    """
    if not config.trainable:  # a frozen model: nothing to differentiate or step (fit warned)
        return
    scaler = config.precision.scaler
    divisor = 1 if session is None else session.accum_divisor
    if session is not None and session.step_autocast:  # a user's step runs whole under autocast: not backward
        with torch.autocast(config.device.type, enabled=False):
            scaler.scale(loss if divisor == 1 else loss / divisor).backward()
    else:
        scaler.scale(loss if divisor == 1 else loss / divisor).backward()
    update = session is None or session.update_now
    if update and config.penalty is not None:
        scaler.unscale_(config.optimizer)
        config.penalty.add_gradients()
    if session is not None:
        for hook in session.callbacks.on_backward_end:
            hook(session.batch, {})
    if not update:
        return
    if config.grad_clip_norm is not None or config.grad_clip_value is not None:
        if config.penalty is None:  # with a penalty the gradients are unscaled already
            scaler.unscale_(config.optimizer)
        if config.grad_clip_value is not None:
            nn.utils.clip_grad_value_(config.trainable, config.grad_clip_value, foreach=True)
        if config.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(config.trainable, config.grad_clip_norm, foreach=True)
    scaler.step(config.optimizer)
    scaler.update()
    config.optimizer.zero_grad(set_to_none=True)
    if config.lr_scheduler is not None and config.scheduler_interval == "step":
        config.lr_scheduler.step()


def plan_window(session: Session, index: int, steps: int, window: int) -> None:
    """Set the loss divisor and whether batch ``index`` closes its accumulation window.

    The divisor is the real size of the window, so a short last window (steps
    not divisible by ``window``) is averaged over its own batches.

    Example:
        >>> from kerastorch.engine.session import FitRecord, Session
        >>> s = Session(None, FitRecord(), None)
        >>> plan_window(s, 4, steps=5, window=2); s.accum_divisor, s.update_now
        (1, True)
    """
    window_start = (index // window) * window
    session.accum_divisor = min(window, steps - window_start)
    session.update_now = (index + 1) % window == 0 or index + 1 >= steps


def sync_context(config: CompileConfig, session: Session) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` on accumulation batches that do not step, else nothing."""
    if config.ddp is not None and not session.update_now:
        return config.ddp.no_sync()
    return contextlib.nullcontext()
