"""bench_loop: fit's training loop against the fastest hand loop, and where the difference goes.

What it measures
    Issue 18's yardstick: the seed's two-ring MLP (2-4-8-1, 6200 points, BCEWithLogits, Adam lr 0.01),
    ``DataLoader(TensorDataset(x, y), batch_size=100, shuffle=True)``, one plain function metric (the
    seed's ``accuracy(y_pred, y_true)``, on logits) and ``verbose=1`` (its epoch lines go to a discarded
    stream, as a redirected log's would), against ``hand(slicing)``: a hand loop over the same in-memory
    tensors, batched by indexing (one permutation and gather per epoch, then slices), loss and the same
    metric function summed on the device and read once per epoch.

    Then where kerastorch's extra time goes, per step:

    * the step: Python frames and C calls (``sys.setprofile``) and aten ops (a ``TorchDispatchMode``)
      of both loops, 2 epochs minus 1 (deterministic counts);
    * the epoch's start and end, timed inside the loops and divided by the steps of an epoch:
      kerastorch's data-pass start (the DataLoader's own random draws, the pass's RNG record for an exact
      resume, the gather) and epoch logs (read once), against the hand loop's permutation and gather and
      its one read.

How it is timed
    One process; a warm-up epoch each, then ``--rounds`` interleaved rounds of 2-epoch calls; a sample is
    the wall time of the epochs (epoch hooks for kerastorch), per step. The target uses the median of the
    per-round ratios (paired, see bench_peers).

Target
    ``kerastorch fit(DataLoader)`` at most 1.05x ``hand(slicing)``.

Usage
    python benchmarks/bench_loop.py [--rounds 21] [--json out.json] [--quick]
"""
from __future__ import annotations

import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import _workloads  # noqa: E402
import kerastorch.engine.epoch_iterator as epoch_iterator  # noqa: E402
import kerastorch.engine.fit as fit_engine  # noqa: E402
from _harness import (  # noqa: E402
    Comparison,
    Contender,
    base_parser,
    epochs_only,
    fmt,
    interleave,
    paired_target,
    print_table,
    report,
    rows_for,
    setup,
    work_per_step,
)
from _workloads import KerastorchFit, hand_slicing, ring_workload  # noqa: E402

BASELINE = "hand(slicing)"
OURS = "kerastorch fit(DataLoader)"


def accuracy(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """The seed's metric function (003: ``metrics_dict={"accuracy": accuracy}``), thresholding logits at 0."""
    y_pred = torch.where(y_pred > 0, torch.ones_like(y_pred), torch.zeros_like(y_pred))
    return torch.mean(1 - torch.abs(y_true - y_pred))


def frames_and_c_calls(contender: Contender) -> tuple[float, float]:
    """Python frames entered and C functions called per step (2 epochs minus 1)."""
    def count(epochs: int) -> tuple[int, int]:
        counts = {"call": 0, "c_call": 0}

        def profiler(frame: Any, event: str, arg: Any) -> None:
            if event in counts:
                counts[event] += 1

        sys.setprofile(profiler)
        try:
            contender.run(epochs)
        finally:
            sys.setprofile(None)
        return counts["call"], counts["c_call"]

    (frames_1, c_calls_1), (frames_2, c_calls_2) = count(1), count(2)
    steps = contender.steps_per_epoch
    return (frames_2 - frames_1) / steps, (c_calls_2 - c_calls_1) / steps


class Stopwatch:
    """Wall time spent in wrapped functions, by label, until :meth:`restore`."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}
        self._undo: list[Callable[[], None]] = []

    def record(self, label: str, seconds: float) -> None:
        self.seconds.setdefault(label, []).append(seconds)

    def wrap(self, owner: Any, name: str, label: str) -> None:
        """Time every call of ``owner.name``."""
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.record(label, time.perf_counter() - start)

        self.swap(owner, name, timed)

    def swap(self, owner: Any, name: str, replacement: Any) -> None:
        original = getattr(owner, name)
        setattr(owner, name, replacement)
        self._undo.append(lambda: setattr(owner, name, original))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def per_step(self, label: str, steps_per_epoch: int) -> float:
        """Median seconds per call of ``label``, as microseconds per step of an epoch."""
        return statistics.median(self.seconds[label]) * 1e6 / steps_per_epoch


def timed_first_batch(watch: Stopwatch, label: str,
                      batches: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """``batches`` with the time to its first batch (the hand loop's permutation and gather) recorded."""
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        iterator = batches(*args, **kwargs)
        start = time.perf_counter()
        first = next(iterator)
        watch.record(label, time.perf_counter() - start)
        yield first
        yield from iterator
    return wrapper


EDGES = {"start": ("kerastorch: data pass start", "hand: permutation and gather"),
         "end": ("kerastorch: epoch logs (one read)", "hand: epoch read (one .tolist())")}


def epoch_edges(ours: KerastorchFit, hand: Contender, steps: int, rounds: int = 5) -> list[list[str]]:
    """Per step: each loop's epoch start and end, timed over ``rounds`` 2-epoch calls each."""
    watch = Stopwatch()
    for _ in range(rounds):
        watch.wrap(epoch_iterator.EpochIterator, "_start_pass", EDGES["start"][0])
        watch.wrap(fit_engine, "epoch_logs", EDGES["end"][0])
        try:
            ours.run(2)
        finally:
            watch.restore()
        watch.swap(_workloads, "sliced_batches", timed_first_batch(watch, EDGES["start"][1], _workloads.sliced_batches))
        watch.wrap(torch.Tensor, "tolist", EDGES["end"][1])
        try:
            hand.run(2)
        finally:
            watch.restore()
    return [[label, fmt(watch.per_step(label, steps), 2)] for pair in EDGES.values() for label in pair]


def main() -> None:
    parser = base_parser(__doc__, rounds=21)
    args = parser.parse_args()
    setup(args)
    workload = ring_workload(epochs=2)
    device = torch.device("cpu")
    hand = hand_slicing(workload, device, metric_fn=accuracy)
    ours = KerastorchFit(OURS, workload, "loader", device, metric=accuracy, verbose=1)
    epochs = args.epochs or workload.epochs
    print(f"# {workload.name}: {len(workload.x)} samples, batch {workload.batch_size}, "
          f"{workload.steps_per_epoch} steps/epoch, {args.rounds} rounds of {epochs} epoch(s)", file=sys.stderr)
    timings = interleave([hand, ours], args.rounds, epochs, args.threads)
    rows = rows_for(workload.name, [hand, ours], timings, epochs, BASELINE, epochs_only)
    target = paired_target(f"{workload.name}: {OURS} (function metric, verbose=1) vs {BASELINE} <= 1.05x",
                           Comparison(rows[1], rows[0]), 1.05)

    print("\n# Where the difference goes, per step")
    counts = {}
    for contender in (ours, hand):
        frames, c_calls = frames_and_c_calls(contender)
        counts[contender.name] = [fmt(frames), fmt(c_calls), fmt(work_per_step(contender)["aten_ops_per_step"])]
    print_table(["the step", "Python frames", "C calls", "aten ops"],
                [[name, *values] for name, values in counts.items()])
    print()
    print_table(["the epoch's edges", "us per step"], epoch_edges(ours, hand, workload.steps_per_epoch))
    report("bench_loop", args, rows, BASELINE, [target])


if __name__ == "__main__":
    main()
