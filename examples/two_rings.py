"""Two rings: an imbalanced binary problem solved with FocalLoss and L1/L2 penalties.

The data is the seed tutorial's: 200 positive points on a ring of radius
5 + N(0, 1) and 6000 negative points on a ring of radius 8 + N(0, 1), so only
3% of the samples are positive. A model that always answers "negative" is
already 96.8% accurate, which is why this demo tracks recall, precision and
AUC as well, and prints a per-class report at the end.

What it shows (the modern kerastorch API):

* a ``kt.Model`` subclass whose ``forward`` returns logits;
* ``compile`` with a named optimizer and ``optimizer_kwargs``, a
  ``FocalLoss(from_logits=True)``, a dict of named metrics (threshold metrics
  follow the loss and cut logits at 0) and an ``L1L2`` weight penalty, logged
  as ``reg_loss``;
* ``fit`` on in-memory tensors with ``batch_size`` and ``validation_data``,
  printing the epoch table (``verbose=1``), with a cosine learning-rate
  schedule passed to ``compile(lr_scheduler=...)``;
* ``evaluate`` and ``predict`` afterwards.

Settings that differ from the seed, and why (the network is the seed's 2 -> 4
-> 8 -> 1; with these settings 7 of the data seeds 0 to 7 reach both bars,
seed 6 misses the recall bar with 0.75):

* ``alpha=0.93`` instead of 0.75: with 1 positive for 30 negatives, 0.75
  leaves the decision boundary too far inside the positive ring (validation
  recall 0.65 to 0.7 on seeds 0 to 3). For a well-fitted model the boundary
  of a focal loss sits where ``P(y=1 | x) = 1 - alpha``, and ``alpha`` around
  0.9 would put it near radius 6.1, where both bars hold; the weight penalty
  pulls the logits towards 0 and the boundary inwards again (recall about
  0.75 with 0.9), which 0.93 makes up for.
* ``L1L2(l1=1e-4, l2=1e-3)`` instead of ``l1=1e-3``: the focal loss of this
  data is about 0.01 per sample, and an L1 pull of 1e-3 on every weight wins
  over it: on seeds 0 to 3 the weights shrink to zero and the network ends up
  answering "negative" everywhere (validation accuracy 0.968, recall 0.0).
  The seed's reported validation accuracy, 0.96, is no better than that.
* the learning rate decays from 0.01 to 0 over the epochs (cosine), so the
  last epoch's boundary is not a noisy snapshot of a still-moving one.

Run it (about 5 seconds on a laptop CPU)::

    python examples/two_rings.py                  # 40 epochs, seed 0
    python examples/two_rings.py --epochs 10 --seed 3
    python examples/two_rings.py --plot rings.png  # needs matplotlib

``main()`` returns a dict with ``val_accuracy`` and ``minority_recall`` (and
the history frame and per-class report) so tests can check the result.
"""
from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import kerastorch as kt

SEED = 0
EPOCHS = 40
QUICK_EPOCHS = 5
N_POSITIVE, N_NEGATIVE = 200, 6000
TRAIN_FRACTION = 0.7


def seed_everything(seed: int) -> None:
    """Seed every random generator the example uses."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def make_rings(n_positive: int = N_POSITIVE, n_negative: int = N_NEGATIVE) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed's data: positives on a ring of radius 5, negatives on one of radius 8 (both +N(0, 1))."""
    def ring(n: int, radius: float) -> torch.Tensor:
        r = radius + torch.normal(0.0, 1.0, size=(n, 1))
        theta = 2 * math.pi * torch.rand(n, 1)
        return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)

    x = torch.cat([ring(n_positive, 5.0), ring(n_negative, 8.0)])
    y = torch.cat([torch.ones(n_positive, 1), torch.zeros(n_negative, 1)])
    return x, y


def stratified_split(x: torch.Tensor, y: torch.Tensor, train_fraction: float = TRAIN_FRACTION
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shuffle and split 70/30 within each class, so both parts keep the 1:30 ratio."""
    train_parts, val_parts = [], []
    for label in (1.0, 0.0):
        index = torch.nonzero(y[:, 0] == label).flatten()
        index = index[torch.randperm(len(index))]
        cut = round(train_fraction * len(index))
        train_parts.append(index[:cut])
        val_parts.append(index[cut:])
    train = torch.cat(train_parts)
    train = train[torch.randperm(len(train))]
    val = torch.cat(val_parts)
    return x[train], y[train], x[val], y[val]


class RingNet(kt.Model):
    """The seed's network, Linear 2 -> 4 -> 8 -> 1 with ReLU, but it outputs logits (no sigmoid)."""

    def __init__(self, hidden: tuple[int, int] = (4, 8)) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def per_class_report(y_true: torch.Tensor, y_pred: torch.Tensor) -> tuple[str, dict[int, dict[str, float]]]:
    """Precision, recall and support of each class from 0/1 labels and 0/1 predictions."""
    y_true, y_pred = y_true.flatten().long(), y_pred.flatten().long()
    stats: dict[int, dict[str, float]] = {}
    lines = [f"{'class':>8} {'precision':>10} {'recall':>8} {'support':>8}"]
    for label in (0, 1):
        true_here, pred_here = y_true == label, y_pred == label
        hits = int((true_here & pred_here).sum())
        predicted, support = int(pred_here.sum()), int(true_here.sum())
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        stats[label] = {"precision": precision, "recall": recall, "support": support}
        lines.append(f"{label:>8} {precision:>10.4f} {recall:>8.4f} {support:>8}")
    accuracy = float((y_true == y_pred).float().mean())
    lines.append(f"{'accuracy':>8} {accuracy:>10.4f} {'':>8} {len(y_true):>8}")
    return "\n".join(lines), stats


def save_decision_plot(model: kt.Model, x: torch.Tensor, y: torch.Tensor, path: str) -> bool:
    """Save the decision regions and the points to ``path``; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    limit = float(x.abs().max()) + 1.0
    grid = torch.linspace(-limit, limit, 300)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    logits = model.predict(torch.stack([gx.flatten(), gy.flatten()], dim=1), batch_size=10_000)
    positive_region = (logits > 0).reshape(gx.shape).float()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.contourf(gx.numpy(), gy.numpy(), positive_region.numpy(), levels=[-0.5, 0.5, 1.5],
                colors=["#d9f0d3", "#f4cccc"])
    is_positive = y[:, 0] == 1
    ax.scatter(x[~is_positive, 0].numpy(), x[~is_positive, 1].numpy(), s=2, c="g", label="negative")
    ax.scatter(x[is_positive, 0].numpy(), x[is_positive, 1].numpy(), s=6, c="r", label="positive")
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    ax.set_title("Validation points and predicted regions (red: positive)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def main(epochs: int | None = None, quick: bool = False, seed: int = SEED,
         plot: str | None = None, verbose: int = 1, precision: str = "32") -> dict[str, Any]:
    """Train and report. ``quick=True`` runs only a few epochs (a smoke run; the bars need the full run)."""
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else EPOCHS
    seed_everything(seed)
    x, y = make_rings()
    x_train, y_train, x_val, y_val = stratified_split(x, y)
    print(f"train: {len(x_train)} samples ({int(y_train.sum())} positive), "
          f"validation: {len(x_val)} samples ({int(y_val.sum())} positive)")

    model = RingNet()
    model.compile(optimizer="adam", optimizer_kwargs={"lr": 0.01},
                  loss=kt.losses.FocalLoss(gamma=2, alpha=0.93, from_logits=True),
                  metrics={"acc": "accuracy", "recall": "recall", "precision": "precision", "auc": "auc"},
                  regularizers=kt.regularizers.L1L2(l1=1e-4, l2=1e-3),
                  # cosine decay to 0 over the run; a callable, because the optimizer is built by compile
                  lr_scheduler=lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs),
                  precision=precision,  # "bf16-mixed" works on the CPU too
                  device="cpu")  # a model this small runs faster on the CPU than on a GPU
    model.summary(input_shape=(2,))
    history = model.fit(x_train, y_train, batch_size=100, epochs=epochs,
                        validation_data=(x_val, y_val), verbose=verbose)

    scores = model.evaluate(x_val, y_val)
    print("\nevaluate on validation: " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    logits = model.predict(x_val)
    report, stats = per_class_report(y_val, (logits > 0).long())
    print("\nper-class report on validation (from model.predict, logits > 0 is positive):")
    print(report)
    val_accuracy = float(((logits > 0).float() == y_val).float().mean())
    minority_recall = stats[1]["recall"]
    print(f"\nfinal validation accuracy: {val_accuracy:.4f}")
    print(f"minority-class (positive) recall: {minority_recall:.4f}")

    if plot:
        if save_decision_plot(model, x_val, y_val, plot):
            print(f"decision-region plot saved to {plot}")
        else:
            print("matplotlib is not installed: no plot (pip install matplotlib)")
    return {"val_accuracy": val_accuracy, "minority_recall": minority_recall,
            "history": history, "report": stats, "evaluate": scores}


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs to train (default {EPOCHS})")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_EPOCHS} epochs (a smoke run)")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed (data, split, weights)")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="save a decision-region plot to PATH (needs matplotlib)")
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed"],
                        help="training precision (bf16-mixed autocasts on the CPU as well)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    # A model this small runs about as fast on one CPU thread, and one thread does
    # not stall when other programs share the cores (several threads can, badly).
    torch.set_num_threads(1)
    args = _parse_args()
    main(epochs=args.epochs, quick=args.quick, seed=args.seed, plot=args.plot, precision=args.precision)
