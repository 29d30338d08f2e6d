"""Exact mid-epoch resume: redraw the interrupted epoch's batch order and skip what was trained.

At each epoch's start the engine calls :func:`start_epoch_iterator`, which
records the RNG states (saved in mid-epoch checkpoints) and makes the epoch's
iterator. After a mid-epoch resume it first restores the states of the
interrupted epoch's start, so the same order is drawn, skips the batches that
were already trained, then restores the RNG states of the moment of the save
(dropout and augmentation continue where they stopped).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .rng import capture_rng_state, restore_rng_state


def start_epoch_iterator(session: Any, source: Any) -> Iterator[Any]:
    """``iter(source)``, recording (or, when resuming mid-epoch, replaying) the epoch's RNG.

    Args:
        session: the running fit's Session (``replay``, ``record.generator``,
            ``epoch_start_rng``, ``epoch_start_generator`` are read and set).
        source: the epoch's batch source (its ``skip_batches`` is set on a replay).
    """
    replay, session.replay = session.replay, None
    generator = session.record.generator
    if replay is not None:
        restore_rng_state(replay["epoch_start_rng"])
        if generator is not None and replay["epoch_start_generator"] is not None:
            generator.set_state(replay["epoch_start_generator"])
        source.skip_batches = replay["batch"]
    session.epoch_start_rng = capture_rng_state()
    session.epoch_start_generator = generator.get_state() if generator is not None else None
    iterator = iter(source)
    if replay is not None:
        restore_rng_state(replay["rng"])  # dropout etc. continue from where the run stopped
    return iterator
