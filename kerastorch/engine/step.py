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
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..fsdp import no_gradient_sync

if TYPE_CHECKING:
    from ..compiling import CompileConfig
    from .session import Session
    from .window import AccumulationWindow


def optimizer_step(loss: torch.Tensor, config: CompileConfig, session: Session | None,
                   num_items: Any = None) -> None:
    """Backward ``loss``; step the optimizer when ``session.window.update_now`` (always outside fit).

    With gradient accumulation the loss (a mean over ``num_items``, default the batch's samples)
    is weighted by that count and the window's gradients divided by its total before the step:
    :mod:`~kerastorch.engine.window`. ``on_backward_end`` hooks run after every backward, before
    clipping and the step. The penalty gradient is added unscaled, once per window, before clipping.
    """
    if not config.trainable:  # a frozen model: nothing to differentiate or step (fit warned)
        return
    scaler, scales = config.precision.scaler, config.precision.scales
    window = None if session is None else session.window
    accumulating = window is not None and window.size > 1
    if accumulating:
        loss = window.weigh(loss, num_items)  # type: ignore[union-attr]  # accumulating: a window
    if session is not None and session.step_autocast:  # a user's step runs whole under autocast: not backward
        with torch.autocast(config.device.type, enabled=False):
            (scaler.scale(loss) if scales else loss).backward()
    else:
        (scaler.scale(loss) if scales else loss).backward()
    update = window is None or window.update_now
    if update and accumulating:
        window.unweigh([p.grad for p in config.trainable if p.grad is not None])  # type: ignore[union-attr]
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
    if scales:
        scaler.step(config.optimizer)
        scaler.update()
    else:
        config.optimizer.step()
    config.optimizer.zero_grad(set_to_none=True)
    if config.lr_scheduler is not None and config.scheduler_interval == "step" and \
            not (scales and scaler.skipped_last_step()):
        config.lr_scheduler.step()  # an update fp16's scaler skipped does not advance the schedule


def sync_context(config: CompileConfig, window: AccumulationWindow) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` (FSDP's: no reduce-scatter) on accumulation batches that do not step, else nothing."""
    if window.update_now:
        return contextlib.nullcontext()
    if config.ddp is not None:
        return config.ddp.no_sync()
    if config.fsdp is not None:
        return no_gradient_sync(config.fsdp)
    return contextlib.nullcontext()
