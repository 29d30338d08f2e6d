"""bench_core: the per-step cost of kerastorch's ``fit`` against a hand-written loop.

What it measures
    Microseconds per training step of four contenders that train the same
    architecture from identical initial weights on the same data, with the same
    batch size, loss, metric (accuracy) and optimizer (Adam):

    * ``hand(DataLoader)``   the hand-written loop over ``DataLoader(TensorDataset,
      batch_size, shuffle=True)``: zero_grad(set_to_none=True), forward, loss,
      backward, step; loss and accuracy summed on the device, read once per
      epoch. This is the speed limit and the baseline of the ratio columns.
    * ``kerastorch fit(DataLoader)``   ``fit`` on the same kind of DataLoader.
    * ``kerastorch fit(x, y)``   ``fit`` on the in-memory tensors (shuffle=True):
      kerastorch's slicing fast path, no per-sample ``__getitem__`` + collate.
    * ``hand(slicing)``   reference: the hand loop over one ``randperm`` gather per
      epoch and contiguous slices, i.e. the best a hand loop can do in memory.

    Workloads: the seed's two-ring MLP (2-4-8-1, 6200 points, batch 100,
    BCEWithLogits, Adam lr 0.01) and LeNet on random 3x32x32 images (2048
    samples, 10 classes, batch 64, cross-entropy, Adam lr 1e-3).

How it is timed
    One process; each contender warms up for one epoch, then the contenders run
    interleaved for ``--rounds`` rounds, ``--epochs`` epochs each per round. A
    round's sample is the wall time of the whole call (``fit(...)`` for
    kerastorch, with its fixed per-call set-up; the epochs for a hand loop)
    divided by the steps. Tables give the median and min over rounds and their
    ratios to ``hand(DataLoader)``. ``torch.set_num_threads(1)`` by default
    (``--threads``): on a shared 2-core machine one thread per process gives
    steadier numbers.

How to read it
    ``x hand(DataLoader)`` near 1.00 means fit costs what the hand loop costs;
    1.05 is 5% slower. With tiny models (the MLP) a step is dominated by Python
    and data loading, so this is where framework overhead shows. Targets,
    printed as PASS/FAIL from paired ratios (the median over rounds of each
    round's ratio, see bench_peers): fit(DataLoader) <= 0.75x hand(DataLoader) on
    the MLP (kerastorch batches a DataLoader over a TensorDataset by indexing, with
    the DataLoader's own random draws) and <= 1.05x on LeNet, and fit(x, y) faster
    than hand(DataLoader). On a shared machine
    compare medians, rerun when a ratio sits near its limit, and look at the
    min column as the best case.

    The "batching alone" lines time the two ways of making batches without
    any training: the gap between them is all that fit(x, y) can win over a
    DataLoader. For the MLP it is most of a step; for LeNet it is a few
    percent of a step, so there the fit(x, y) target is decided by a margin
    of that size and a loaded machine can flip it: rerun before concluding.

Usage
    python benchmarks/bench_core.py [--rounds 20] [--epochs N] [--threads 1] [--json out.json] [--quick]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from _harness import Comparison, base_parser, paired_target, race, report, setup  # noqa: E402
from _workloads import (  # noqa: E402
    KerastorchFit,
    Workload,
    hand_dataloader,
    hand_slicing,
    lenet_workload,
    ring_workload,
    sliced_batches,
)

BASELINE = "hand(DataLoader)"


def contenders(workload, device):
    return [
        hand_dataloader(workload, device),
        KerastorchFit("kerastorch fit(DataLoader)", workload, "loader", device),
        KerastorchFit("kerastorch fit(x, y)", workload, "tensors", device),
        hand_slicing(workload, device),
    ]


def data_alone(workload: Workload, rounds: int) -> str:
    """Batching cost without training: what fit(x, y) can save over a DataLoader at most."""
    loader, generator = workload.loader(torch.device("cpu")), torch.Generator().manual_seed(0)
    ways = {"DataLoader": lambda: loader,
            "randperm+gather+slices": lambda: sliced_batches(workload.x, workload.y, workload.batch_size, generator)}
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, batches in ways.items():
            start = time.perf_counter()
            for _batch in batches():
                pass
            samples[name].append((time.perf_counter() - start) * 1e6 / workload.steps_per_epoch)
    return (f"{workload.name}: batching alone (no training), median us/step: "
            + ", ".join(f"{name} {statistics.median(values):,.0f}" for name, values in samples.items()))


#: fit(DataLoader(TensorDataset)) / hand(DataLoader) targets that differ from 1.05x.
LOADER_LIMITS = {"two-ring MLP": 0.75}


def main() -> None:
    args = base_parser(__doc__, rounds=20).parse_args()
    setup(args)
    device = torch.device("cpu")
    workloads = [ring_workload(), lenet_workload(samples=256 if args.quick else 2048)]
    rows, targets, notes = [], [], []
    for workload in workloads:
        table = race(workload, contenders(workload, device), args, BASELINE)
        rows += table
        by_name = {row.contender: row for row in table}
        hand = by_name[BASELINE]
        # A DataLoader over a TensorDataset is batched by indexing (kerastorch.data.indexed): where
        # batching is most of a step (the MLP) fit must win it; elsewhere it must cost nothing.
        limit = LOADER_LIMITS.get(workload.name, 1.05)
        targets.append(paired_target(f"{workload.name}: fit(DataLoader) vs hand(DataLoader) <= {limit:.2f}x",
                                     Comparison(by_name["kerastorch fit(DataLoader)"], hand), limit))
        targets.append(paired_target(f"{workload.name}: fit(x, y) faster than hand(DataLoader) (< 1.00x)",
                                     Comparison(by_name["kerastorch fit(x, y)"], hand), 1.00, strict=True))
        notes.append(data_alone(workload, args.rounds))
    report("bench_core", args, rows, BASELINE, targets, notes)


if __name__ == "__main__":
    main()
