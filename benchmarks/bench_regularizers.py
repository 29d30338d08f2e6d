"""bench_regularizers: what ``regularizers=L1L2(...)`` adds to a training step.

What it measures
    Microseconds per training step of kerastorch ``fit(x, y)`` (in-memory
    tensors, the fast path, so the penalty is not hidden behind data loading)
    for three contenders that train the same architecture from identical
    initial weights with the same data, batch size, loss and optimizer (Adam):

    * ``fit, no regularization``   the baseline of the ratio columns.
    * ``fit, L1L2 regularizer``    ``compile(regularizers=kt.regularizers.L1L2(l1=1e-3,
      l2=1e-3))``: the penalty over all weights (not biases), computed with fused
      ``torch._foreach_norm`` kernels and added to the objective each step.
    * ``fit, seed loop penalty``   reference: the seed tutorial's way, a loss
      function that adds ``L2Loss(model, 1e-3) + L1Loss(model, 1e-3)``, each a
      Python loop over ``named_parameters()`` (skipping biases) with a few tensor
      ops per parameter.

    Workloads: the seed's two-ring MLP (2-4-8-1, 6200 points, batch 100,
    BCEWithLogits, accuracy, Adam lr 0.01), where a step is almost all
    overhead, and a 20-layer MLP (width 64, 2048 random samples, batch 64, MSE,
    mean absolute error metric, Adam lr 1e-3), whose 20 weight matrices make a
    per-parameter loop expensive.

How it is timed
    As in bench_core: one process, one warm-up epoch per contender, then
    ``--rounds`` interleaved rounds of ``--epochs`` epochs; a sample is the
    whole ``fit`` call's wall time over its steps; median and min over rounds;
    ``torch.set_num_threads(1)`` by default (``--threads``).

How to read it
    ``x no-reg`` is the cost of regularized training relative to plain
    training: 1.08 means the penalty makes a step 8% slower. Target, printed
    as PASS/FAIL from paired ratios (see bench_peers): L1L2 <= 1.15x on both
    workloads. The last-epoch column shows the logged data loss and metric
    (the penalty itself is logged apart as ``reg_loss`` and is not part of
    ``loss``).

Usage
    python benchmarks/bench_regularizers.py [--rounds 20] [--epochs N] [--threads 1] [--json out.json] [--quick]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import kerastorch as kt  # noqa: E402
from _harness import Comparison, base_parser, paired_target, race, report, setup  # noqa: E402
from _workloads import KerastorchFit, Workload, deep_mlp_workload, ring_workload  # noqa: E402

BASELINE = "fit, no regularization"
L1, L2 = 1e-3, 1e-3


# The seed tutorial's penalties, written out again: a Python loop over the
# parameters, a few tensor ops each, called from inside the loss function.
def seed_l2_loss(model: nn.Module, alpha: float) -> torch.Tensor:
    total = torch.tensor(0.0, requires_grad=True)
    for name, param in model.named_parameters():
        if "bias" not in name:
            total = total + 0.5 * alpha * torch.sum(torch.pow(param, 2))
    return total


def seed_l1_loss(model: nn.Module, beta: float) -> torch.Tensor:
    total = torch.tensor(0.0, requires_grad=True)
    for name, param in model.named_parameters():
        if "bias" not in name:
            total = total + beta * torch.sum(torch.abs(param))
    return total


def seed_contender(workload: Workload, device: torch.device) -> KerastorchFit:
    """fit with a loss function that adds the seed's loop penalties to the workload's loss."""
    base_loss = workload.loss_fn()
    holder: dict[str, nn.Module] = {}

    def loss_with_regularization(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        model = holder["model"]
        return base_loss(y_pred, y_true) + seed_l2_loss(model, L2) + seed_l1_loss(model, L1)

    contender = KerastorchFit("fit, seed loop penalty", workload, "tensors", device,
                              loss=loss_with_regularization)
    holder["model"] = contender.model
    return contender


def contenders(workload: Workload, device: torch.device) -> list[KerastorchFit]:
    return [
        KerastorchFit(BASELINE, workload, "tensors", device),
        KerastorchFit("fit, L1L2 regularizer", workload, "tensors", device,
                      compile_kwargs={"regularizers": kt.regularizers.L1L2(l1=L1, l2=L2)}),
        seed_contender(workload, device),
    ]


def main() -> None:
    args = base_parser(__doc__, rounds=20).parse_args()
    setup(args)
    device = torch.device("cpu")
    workloads = [ring_workload(epochs=3), deep_mlp_workload(samples=256 if args.quick else 2048)]
    rows, targets = [], []
    for workload in workloads:
        table = race(workload, contenders(workload, device), args, BASELINE)
        rows += table
        targets.append(paired_target(f"{workload.name}: L1L2 regularizer vs no regularization <= 1.15x",
                                     Comparison(table[1], table[0]), 1.15))
    report("bench_regularizers", args, rows, "no-reg", targets)


if __name__ == "__main__":
    main()
