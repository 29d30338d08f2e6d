"""fit's training batches: which ones, how many per epoch, where a resume starts, the accumulation window.

One :class:`EpochIterator` per ``fit`` owns the position of training in its data. The epoch
loop asks it for each epoch's batches (:meth:`EpochIterator.epoch`) and tells it when an
epoch ended (:meth:`EpochIterator.end_epoch`); the batch loop writes the index of the batch
it runs; training checkpoints read and restore the position through
:meth:`EpochIterator.state_dict` and :meth:`EpochIterator.load_state_dict`.

**Epochs and data passes.** Without ``steps_per_epoch`` an epoch is one pass over the data.
With a ``steps_per_epoch`` that ends an epoch before its data does, the pass goes on into the
next epoch, as Keras's does: 10 batches with ``steps_per_epoch=9`` give epochs of 9, 1, 9, 1
batches, every sample once per pass (a generator is continued the same way).

**Exact resume.** The RNG states of the moment a pass began (its shuffling order, a
DataLoader's workers' seeds) are kept; a checkpoint written inside a pass holds them and how
many of its batches were run, so a resume redraws the same order, skips those batches, then
restores the RNG of the moment of the save (dropout and augmentation continue).

Per step this costs one integer store (the batch index) and, with gradient accumulation, one
call to plan the window: the epoch's batches come from ``enumerate`` over the data's own
iterator (an ``islice`` when the epoch ends inside a pass), with no Python frame in between.
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any

from ..checkpointing.compatibility import train_sizes
from ..checkpointing.rng import capture_rng_state, restore_rng_state
from ..data import BatchSource, source_length
from ..distributed import launched_distributed
from .epochs import TrainingControls
from .session import FitRecord
from .window import AccumulationWindow


class EpochIterator:
    """The training batches of one ``fit`` and the position in them.

    Args:
        source: the training batch source (:class:`~kerastorch.data.BatchSource`).
        record: the model's :class:`~kerastorch.engine.session.FitRecord` (its shuffling generator).
        controls: the fit's :class:`~kerastorch.engine.epochs.TrainingControls` (``fast_dev_run``).
        steps_per_epoch: ``fit``'s cap on batches per epoch, or None.
        grad_accum_steps: batches per optimizer step.

    Attributes:
        steps: batches per epoch (None: one pass over data without a length).
        capped: ``steps_per_epoch`` ends an epoch before the data does (the pass continues next epoch).
        window: the accumulation window (:class:`~kerastorch.engine.window.AccumulationWindow`).
        sizes: ``(batch_size, samples)`` of the data, saved with mid-pass checkpoints.
        batch: index, in the epoch, of the batch being run or last run (written by the batch loop; one less than
            the epoch's first index before it runs one).
        pass_offset: batches of the open data pass run in earlier epochs.
        pass_generator: the shuffling generator's state when the open pass began (its batch order).
        resumed_logs: after a mid-epoch resume, until the epoch starts: its partial logs and metric states.

    Example:
        >>> import torch
        >>> from kerastorch.data import TensorBatcher
        >>> data = TensorBatcher((torch.arange(10.),), batch_size=1, shuffle=False)
        >>> batches = EpochIterator(data, FitRecord(), TrainingControls(), steps_per_epoch=4)
        >>> counts = []
        >>> for epoch in range(4):
        ...     for index, batch in batches.epoch(epoch):
        ...         batches.batch = index  # as fit's batch loop does, then runs the step
        ...     counts.append(batches.batch + 1); batches.end_epoch()
        >>> counts  # 10 batches, 4 per epoch: the pass goes on across epochs, as in Keras
        [4, 4, 2, 4]
    """

    def __init__(self, source: BatchSource, record: FitRecord, controls: TrainingControls, *,
                 steps_per_epoch: int | None = None, grad_accum_steps: int = 1) -> None:
        self.source = source
        self.record = record
        self.length = source_length(source)
        self.steps, self.capped = epoch_steps(self.length, steps_per_epoch, grad_accum_steps)
        if controls.fast_dev_run:
            self.steps, self.capped = min(controls.fast_dev_run, self.steps or controls.fast_dev_run), True
        self.window = AccumulationWindow(grad_accum_steps)
        self.sizes = train_sizes(source)
        self.batch = -1
        self._in_epoch = False
        self._pass: Iterator[Any] | None = None
        self.pass_offset = 0               # batches of the open pass run in earlier epochs
        self._pass_rng: dict[str, Any] | None = None
        self.pass_generator: Any = None
        self._replay: dict[str, Any] | None = None
        self.resumed_logs: dict[str, Any] | None = None
        # A Dataset with Keras's PyDataset epoch hooks gets them called, as Keras's epoch iterator does.
        dataset = getattr(getattr(source, "loader", None), "dataset", None)
        self._dataset_hooks = [getattr(dataset, name, None) for name in ("on_epoch_begin", "on_epoch_end")]

    def epoch(self, epoch: int) -> Iterator[tuple[int, Any]]:
        """The epoch's ``(index, batch)`` pairs (indices from where a mid-epoch resume left off).

        Starts a new data pass when none is open (a ``DistributedSampler`` gets ``set_epoch``),
        or goes on with the open one.
        """
        window, replay = self.window, self._replay
        self._replay = self.resumed_logs = None
        if callable(self._dataset_hooks[0]):
            self._dataset_hooks[0]()
        first = replay["batch"] if replay is not None else 0
        self.batch, self._in_epoch = first - 1, True
        if self._pass is None or replay is not None:
            self._start_pass(epoch, replay)
        count = self.steps  # an epoch that a steps_per_epoch cap ends may find fewer left in the open pass:
        if self.capped and self.length is not None and count is not None:
            count = min(count, self.length - self.pass_offset)
        window.update_now, window.total, window.steps = True, 0, -1 if count is None else count
        batches: Iterator[Any] = self._pass  # type: ignore[assignment]  # opened above
        if count is not None and (self.length is None or self.pass_offset + count < self.length):
            # The epoch ends inside the pass. A pass that ends with the epoch is left to end by
            # itself, as a plain loop does (a DataLoader's sampler draws its last numbers then).
            batches = itertools.islice(batches, count - first)
        return enumerate(batches, start=first)

    def planned_updates(self, epochs: int) -> int | None:
        """Optimizer updates the next ``epochs`` epochs will make (a short last window counts); None: unknown.

        Example:
            >>> import torch
            >>> from kerastorch.data import TensorBatcher
            >>> data = TensorBatcher((torch.arange(10.),), batch_size=1, shuffle=False)
            >>> EpochIterator(data, FitRecord(), TrainingControls(), grad_accum_steps=3).planned_updates(2)  # 4 + 4
            8
        """
        if self.steps is None:
            return None
        size, offset, total = self.window.size, self.pass_offset, 0
        for _ in range(epochs):
            count = self.steps
            if self.capped and self.length is not None:  # the open pass may hold fewer (9, 1, 9, 1)
                count = min(count, self.length - offset)
                offset = 0 if offset + count >= self.length else offset + count
            total += -(-count // size)
        return total

    def end_epoch(self) -> None:
        """The epoch ended (after its last batch, or a stop): the pass goes on, or the next epoch starts a new one."""
        done = self.batch + 1
        if callable(self._dataset_hooks[1]):
            self._dataset_hooks[1]()
        self.pass_offset += done
        ran_out = self.steps is not None and done < self.steps and self.length is None
        if not self.capped or ran_out or (self.length is not None and self.pass_offset >= self.length):
            self._pass, self.pass_offset = None, 0
        self.batch, self._in_epoch = -1, False

    def state_dict(self) -> dict[str, Any]:
        """The position, for a training checkpoint: batches run in the running epoch (0 between epochs), in the open
        pass before it, the RNG states of the pass's start and the data's sizes they were counted in."""
        return {"batch": self.batch + 1 if self._in_epoch else 0, "pass_offset": self.pass_offset,
                "epoch_start_rng": self._pass_rng, "epoch_start_generator": self.pass_generator,
                "batch_size": self.sizes[0], "num_samples": self.sizes[1]}

    def load_state_dict(self, checkpoint: dict[str, Any]) -> bool:
        """Continue where ``checkpoint`` left off; True when its RNG states wait for the pass to be redrawn (False:
        the caller restores them now)."""
        if not checkpoint["batch"] and not checkpoint.get("pass_offset", 0):
            return False
        self._replay = {key: checkpoint.get(key) for key in
                        ("batch", "epoch_start_rng", "epoch_start_generator", "rng")}
        self._replay["pass_offset"] = checkpoint.get("pass_offset", 0)
        if checkpoint["batch"]:
            self.resumed_logs = {"partial_logs": checkpoint["partial_logs"], "metrics": checkpoint["metrics"]}
        return True

    def _start_pass(self, epoch: int, replay: dict[str, Any] | None) -> None:
        """``iter(source)``, recording (or, on a resume, replaying) the RNG states of the pass's start."""
        source, generator = self.source, self.record.generator
        sampler: Any = getattr(getattr(source, "loader", None), "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.pass_offset = 0
        if replay is not None:
            restore_rng_state(replay["epoch_start_rng"])
            if generator is not None and replay["epoch_start_generator"] is not None:
                generator.set_state(replay["epoch_start_generator"])
            self.pass_offset = replay["pass_offset"]
            source.skip_batches = self.pass_offset + replay["batch"]
        self._pass_rng = capture_rng_state(source.pass_rngs)  # only what the pass draws from (NumPy's is dear)
        self.pass_generator = generator.get_state() if generator is not None else None
        self._pass = iter(source)
        if replay is not None:
            restore_rng_state(replay["rng"])  # dropout etc. continue from where the run stopped


def epoch_steps(length: int | None, steps_per_epoch: int | None, grad_accum_steps: int) -> tuple[int | None, bool]:
    """``(steps, capped)``: batches per epoch (None: one pass over data without a length) and whether
    ``steps_per_epoch`` ends an epoch before its data does.

    Example:
        >>> epoch_steps(10, 9, 1), epoch_steps(10, None, 1), epoch_steps(None, 5, 1)
        ((9, True), (10, False), (5, True))
    """
    if length is None:
        # A finite generator for several epochs runs as in Keras: the first epoch takes all its batches, and
        # the next finds none (stop_for_exhausted_data says so and stops).
        if steps_per_epoch is None and (grad_accum_steps > 1 or launched_distributed()):
            raise ValueError("Training data without a length (a generator or an IterableDataset) needs "
                             "`steps_per_epoch` with gradient accumulation or under torchrun: the last "
                             "accumulation window and the ranks' step counts must be known in advance. "
                             "Received: steps_per_epoch=None.")
        return steps_per_epoch, steps_per_epoch is not None
    if steps_per_epoch is not None and steps_per_epoch > length:
        warnings.warn(f"`steps_per_epoch={steps_per_epoch}` is more than the {length} batches the training data "
                      f"holds: each epoch runs {length} batches. Pass steps_per_epoch <= {length}, or leave it "
                      "out (one pass over the data per epoch).", UserWarning, stacklevel=5)
        return length, False
    steps = steps_per_epoch or length
    return steps, steps < length
