"""Custom training step: override ``train_step`` to add and log an extra loss term.

``compile`` covers the usual objective (a loss plus weight penalties). When
the objective needs something ``compile`` cannot express, override
``Model.train_step`` and keep the rest of kerastorch (batching, validation,
metrics, callbacks, the history frame). Here the extra term is a *gradient
penalty*: the mean squared slope of the model's output with respect to its
input, ``mean(|d f(x) / d x|^2)``. It needs ``torch.autograd.grad`` with
``create_graph=True`` inside the step, so it cannot be a loss function of
``(y_pred, y_true)``. It favours smooth fits of noisy data.

The overridden step follows the contract in ``Model.train_step``'s docstring:

* compute the output and the compiled loss (``self.compute_loss`` adds the
  compiled regularizers and returns the values to log);
* call ``self.backward_and_step(objective)`` (backward, gradient clipping and
  accumulation, loss scaling and the optimizer step stay kerastorch's);
* call ``self.update_metrics(y_pred, y)`` so the compiled metrics see the batch;
* return a dict of *detached* scalar tensors; every key becomes a history
  column (here ``grad_penalty``), averaged over the epoch.

Validation is untouched: ``test_step`` still computes the compiled loss and
metrics, so ``val_loss`` is the plain MSE on the validation data.

Run it (a few seconds)::

    python examples/custom_train_step.py
    python examples/custom_train_step.py --epochs 20
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
from torch import nn

import kerastorch as kt

SEED = 0
EPOCHS = 60
QUICK_EPOCHS = 10


def make_data(n_train: int = 200, n_val: int = 400, noise: float = 0.3
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """y = sin(2x) + noise on x in [-3, 3]; the validation targets are noise-free."""
    x_train = torch.rand(n_train, 1) * 6 - 3
    y_train = torch.sin(2 * x_train) + noise * torch.randn(n_train, 1)
    x_val = torch.linspace(-3, 3, n_val).reshape(-1, 1)
    y_val = torch.sin(2 * x_val)
    return x_train, y_train, x_val, y_val


class SmoothRegressor(kt.Model):
    """An MLP 1 -> 64 -> 64 -> 1 whose training step adds a gradient penalty."""

    def __init__(self, penalty_weight: float = 0.01) -> None:
        super().__init__()
        self.penalty_weight = penalty_weight
        self.net = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch
        x = x.detach().requires_grad_(True)  # we need d output / d input
        y_pred = self(x)
        objective, logs = self.compute_loss(y_pred, y)  # the compiled loss (+ compiled regularizers)
        # Each output depends only on its own input row, so the gradient of the sum
        # gives every sample's slope; create_graph=True lets the penalty be trained.
        (slope,) = torch.autograd.grad(y_pred.sum(), x, create_graph=True)
        penalty = slope.pow(2).sum(dim=1).mean()
        self.backward_and_step(objective + self.penalty_weight * penalty)
        self.update_metrics(y_pred, y)
        return {**logs, "grad_penalty": penalty.detach()}


def main(epochs: int | None = None, quick: bool = False, seed: int = SEED,
         penalty_weight: float = 0.01) -> dict[str, Any]:
    """Train the regressor with its custom step; return the history (with a ``grad_penalty`` column)."""
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else EPOCHS
    torch.manual_seed(seed)
    np.random.seed(seed)
    x_train, y_train, x_val, y_val = make_data()

    model = SmoothRegressor(penalty_weight)
    model.compile(optimizer="adam", optimizer_kwargs={"lr": 1e-2}, loss="mse", metrics=["mae"], device="cpu")
    history = model.fit(x_train, y_train, batch_size=20, epochs=epochs, validation_data=(x_val, y_val),
                        verbose=2)  # one line per epoch; the custom key shows up in it too

    print("\nhistory columns:", list(history.columns))
    print(history.iloc[:: max(1, epochs // 6)].round(4).to_string(index=False))
    last = history.iloc[-1]
    print(f"\nlast epoch: loss={last.loss:.4f} grad_penalty={last.grad_penalty:.4f} "
          f"val_loss={last.val_loss:.4f} val_mae={last.val_mae:.4f}")
    return {"history": history, "model": model}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs to train (default {EPOCHS})")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_EPOCHS} epochs")
    parser.add_argument("--penalty-weight", type=float, default=0.01)
    args = parser.parse_args()
    # A model this small runs about as fast on one CPU thread, and one thread does
    # not stall when other programs share the cores (several threads can, badly).
    torch.set_num_threads(1)
    main(epochs=args.epochs, quick=args.quick, penalty_weight=args.penalty_weight)
