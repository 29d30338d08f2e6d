"""Two rings, written the seed tutorial's way (torchkeras 1.x/2.x style).

This is the seed's FocalLoss + L1/L2 example, kept as close to the original
as kerastorch allows, to show that torchkeras code runs unchanged:

* ``import kerastorch as torchkeras`` and ``class DNNModel(torchkeras.Model)``
  with a sigmoid output;
* a loss *function* ``focal_loss_with_regularization(y_pred, y_true)`` that
  adds hand-written ``L2Loss`` / ``L1Loss`` penalties to a focal loss on
  probabilities (``FocalLoss(..., from_logits=False)``);
* the seed's ``accuracy(y_pred, y_true)`` metric function;
* ``DataLoader``s from ``TensorDataset`` + ``random_split``;
* ``model.compile(loss_func=..., optimizer=torch.optim.Adam(...), metrics_dict=...)``
  and ``dfhistory = model.fit(30, dl_train=..., dl_val=..., log_step_freq=30)``,
  which prints the torchkeras step logs and one small table per epoch and
  returns the history without the ``lr`` column.

The seed's settings (4 and 8 hidden units, alpha=0.75, L1 and L2 of 1e-3)
are fragile on this data: with seed 0 the validation accuracy ends near 0.98
and about 3 in 4 positives are found, but with 3 of the seeds 1 to 4 the
model ends up answering "negative" for every point (validation accuracy
about 0.97, the share of negatives; no positive found). ``examples/two_rings.py``
explains why and shows settings that find the minority class reliably.

Run it (about 10 seconds on a laptop CPU)::

    python examples/two_rings_seed.py             # 30 epochs, as in the seed
    python examples/two_rings_seed.py --epochs 3
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as torchkeras

SEED = 0
EPOCHS = 30
QUICK_EPOCHS = 2


def make_dataloaders():
    # Numbers of positive and negative samples
    n_positive, n_negative = 200, 6000

    # Positive samples: a small ring
    r_p = 5.0 + torch.normal(0.0, 1.0, size=[n_positive, 1])
    theta_p = 2 * np.pi * torch.rand([n_positive, 1])
    Xp = torch.cat([r_p * torch.cos(theta_p), r_p * torch.sin(theta_p)], axis=1)
    Yp = torch.ones_like(r_p)

    # Negative samples: a large ring
    r_n = 8.0 + torch.normal(0.0, 1.0, size=[n_negative, 1])
    theta_n = 2 * np.pi * torch.rand([n_negative, 1])
    Xn = torch.cat([r_n * torch.cos(theta_n), r_n * torch.sin(theta_n)], axis=1)
    Yn = torch.zeros_like(r_n)

    # All samples
    X = torch.cat([Xp, Xn], axis=0)
    Y = torch.cat([Yp, Yn], axis=0)

    ds = TensorDataset(X, Y)
    ds_train, ds_valid = torch.utils.data.random_split(ds, [int(len(ds) * 0.7), len(ds) - int(len(ds) * 0.7)])
    # The seed uses num_workers=2; 0 (load in the main process) is faster for
    # in-memory tensors and keeps this example light on a shared machine.
    dl_train = DataLoader(ds_train, batch_size=100, shuffle=True, num_workers=0)
    dl_valid = DataLoader(ds_valid, batch_size=100, num_workers=0)
    return dl_train, dl_valid


class DNNModel(torchkeras.Model):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 4)
        self.fc2 = nn.Linear(4, 8)
        self.fc3 = nn.Linear(8, 1)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        y = nn.Sigmoid()(self.fc3(x))
        return y


# Accuracy
def accuracy(y_pred, y_true):
    y_pred = torch.where(y_pred > 0.5, torch.ones_like(y_pred, dtype=torch.float32),
                         torch.zeros_like(y_pred, dtype=torch.float32))
    acc = torch.mean(1 - torch.abs(y_true - y_pred))
    return acc


# L2 regularization
def L2Loss(model, alpha):
    l2_loss = torch.tensor(0.0, requires_grad=True)
    for name, param in model.named_parameters():
        if 'bias' not in name:  # biases are usually not regularized
            l2_loss = l2_loss + (0.5 * alpha * torch.sum(torch.pow(param, 2)))
    return l2_loss


# L1 regularization
def L1Loss(model, beta):
    l1_loss = torch.tensor(0.0, requires_grad=True)
    for name, param in model.named_parameters():
        if 'bias' not in name:
            l1_loss = l1_loss + beta * torch.sum(torch.abs(param))
    return l1_loss


def main(epochs: int | None = None, quick: bool = False, seed: int = SEED) -> pd.DataFrame:
    """Train the seed's model the seed's way; return ``dfhistory``."""
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else EPOCHS
    torch.manual_seed(seed)  # also fixes random_split and the DataLoader's shuffling
    np.random.seed(seed)

    dl_train, dl_valid = make_dataloaders()
    model = DNNModel()
    model.summary(input_shape=(2,))

    # The seed's FocalLoss class is kerastorch's FocalLoss on probabilities.
    focal_loss = torchkeras.losses.FocalLoss(gamma=2, alpha=0.75, from_logits=False)

    # Add the L2 and L1 penalties to the focal loss: together they are the objective
    def focal_loss_with_regularization(y_pred, y_true):
        focal = focal_loss(y_pred, y_true)
        l2_loss = L2Loss(model, 0.001)  # mind the coefficients
        l1_loss = L1Loss(model, 0.001)
        total_loss = focal + l2_loss + l1_loss
        return total_loss

    model.compile(loss_func=focal_loss_with_regularization,
                  optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
                  metrics_dict={"accuracy": accuracy})

    dfhistory = model.fit(epochs, dl_train=dl_train, dl_val=dl_valid, log_step_freq=30)
    print(dfhistory.tail())
    return dfhistory


if __name__ == "__main__":
    # A model this small runs about as fast on one CPU thread, and one thread does
    # not stall when other programs share the cores (several threads can, badly).
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs to train (default {EPOCHS})")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_EPOCHS} epochs")
    args = parser.parse_args()
    main(epochs=args.epochs, quick=args.quick)
