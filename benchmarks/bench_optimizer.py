"""bench_optimizer: what ``compile(optimizer="adam")`` gains from PyTorch's fused Adam.

What it measures
    Microseconds per training step of three contenders on the same data, from
    identical initial weights:

    * ``hand(DataLoader) Adam``               the hand loop with ``torch.optim.Adam(params, lr)``,
      PyTorch's default implementation on a CPU (a loop over the parameters);
      the baseline of the ratio columns;
    * ``hand(DataLoader) Adam(fused=True)``   the same loop with the fused kernel;
    * ``kerastorch fit(DataLoader) "adam"``   ``compile(optimizer="adam")``: kerastorch picks
      the fused implementation where PyTorch has one (see ``kerastorch.compiling``).

    Workloads: LeNet on 2048 random 3x32x32 images and torchvision's ResNet-18
    on 256 (batch 64 both), Adam lr 1e-3, cross-entropy.

How it is timed
    As bench_core: interleaved rounds of whole calls (``--rounds``), medians;
    ``torch.set_num_threads(1)``; the heap kept warm (see ``_harness.warm_heap``).

How to read it
    The Adam step is a loop of small kernels per parameter tensor: ResNet-18
    has 62 of them, so the fused kernel saves a larger share of its step than
    of LeNet's. Targets, printed as PASS/FAIL from paired ratios:
    ``kerastorch "adam"`` faster than the default Adam (< 1.00x) on both
    workloads, and within 1.05x of the hand loop with ``fused=True``.

Usage
    python benchmarks/bench_optimizer.py [--rounds 11] [--json out.json] [--quick]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torchvision  # noqa: E402

from _harness import Comparison, base_parser, paired_target, race, report, setup  # noqa: E402
from _workloads import KerastorchFit, Workload, hand_dataloader, images, lenet_workload, seeded  # noqa: E402

BASELINE = "hand(DataLoader) Adam"
FUSED = "hand(DataLoader) Adam(fused=True)"
OURS = 'kerastorch fit(DataLoader) "adam"'


def resnet_workload(samples: int) -> Workload:
    x, y = images(samples, seed=3)
    return Workload("ResNet-18 3x32x32", seeded(lambda: torchvision.models.resnet18(num_classes=10)),
                    x, y, batch_size=64, task="multiclass", lr=1e-3, epochs=1)


def contenders(workload: Workload, device: torch.device) -> list:
    return [hand_dataloader(workload, device, name=BASELINE),
            hand_dataloader(workload, device, name=FUSED, adam_kwargs={"fused": True}),
            KerastorchFit(OURS, workload, "loader", device, named_optimizer=True)]


def main() -> None:
    args = base_parser(__doc__, rounds=11).parse_args()
    setup(args)
    device = torch.device("cpu")
    workloads = [lenet_workload(samples=256 if args.quick else 2048), resnet_workload(128 if args.quick else 256)]
    rows, targets = [], []
    for workload in workloads:
        table = race(workload, contenders(workload, device), args, BASELINE)
        rows += table
        by_name = {row.contender: row for row in table}
        targets.append(paired_target(f'{workload.name}: kerastorch "adam" faster than the default Adam',
                                     Comparison(by_name[OURS], by_name[BASELINE]), 1.00, strict=True))
        targets.append(paired_target(f'{workload.name}: kerastorch "adam" vs hand Adam(fused=True) <= 1.05x',
                                     Comparison(by_name[OURS], by_name[FUSED]), 1.05))
    report("bench_optimizer", args, rows, "default Adam", targets)


if __name__ == "__main__":
    main()
