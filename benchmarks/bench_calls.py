"""bench_calls: deterministic work per training step (Python calls, aten ops), no clock.

What it measures
    For the seed's two-ring MLP (2-4-8-1, 6200 points, batch 100, BCEWithLogits,
    Adam, an accuracy metric), what one training step costs in Python calls
    (``sys.setprofile``: "call" and "c_call" events, i.e. Python functions and
    builtins), Python function calls alone ("call" events: frames entered, the
    count issue 13 uses) and aten operator calls (a ``TorchDispatchMode``) in:

    * ``kerastorch fit(x, y)``: in-memory tensors, the slicing fast path;
    * ``kerastorch fit(DataLoader)``: ``DataLoader(TensorDataset(x, y), 100, shuffle=True)``
      (batched by indexing, with the DataLoader's own random draws);
    * ``hand(DataLoader)``: the hand-written loop over the same DataLoader (reference).

How it counts
    A 2-epoch call minus a 1-epoch call, divided by the steps of one epoch: what
    a call does once (set-up, teardown, the first-batch checks) cancels out and
    one epoch's per-step work remains. Counts are exact and repeatable, so a change
    to the hot loop shows up here even when wall-clock noise hides it.

Usage
    python benchmarks/bench_calls.py [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from _harness import Contender, work_per_step  # noqa: E402
from _workloads import KerastorchFit, hand_dataloader, ring_workload  # noqa: E402


def function_calls_per_step(contender: Contender) -> float:
    """Python frames entered per step ("call" events only), 2 epochs minus 1 epoch."""

    def count(epochs: int) -> int:
        calls = 0

        def profiler(frame, event, arg):
            nonlocal calls
            if event == "call":
                calls += 1

        sys.setprofile(profiler)
        try:
            contender.run(epochs)
        finally:
            sys.setprofile(None)
        return calls

    one, two = count(1), count(2)
    return (two - one) / contender.steps_per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the counts to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    workload = ring_workload()
    contenders = [
        KerastorchFit("kerastorch fit(x, y)", workload, "tensors", cpu),
        KerastorchFit("kerastorch fit(DataLoader)", workload, "loader", cpu),
        hand_dataloader(workload, cpu),
    ]
    results = {}
    print(f"{workload.name}, batch {workload.batch_size}, {workload.steps_per_epoch} steps/epoch")
    print(f"{'contender':<30}{'python calls/step':>20}{'function calls/step':>22}{'aten ops/step':>16}")
    for contender in contenders:
        contender.run(1)  # first-call work (lazy imports, first-batch checks) stays out of the counts
        counts = {**work_per_step(contender), "function_calls_per_step": function_calls_per_step(contender)}
        results[contender.name] = counts
        print(f"{contender.name:<30}{counts['python_calls_per_step']:>20.1f}"
              f"{counts['function_calls_per_step']:>22.1f}{counts['aten_ops_per_step']:>16.1f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"workload": workload.name, "counts": results}, file, indent=2)


if __name__ == "__main__":
    main()
