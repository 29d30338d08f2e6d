"""Fit under torchrun (or plainly): the same script for 1 process, 2 processes or 2 nodes.

Usage: python ddp_script.py OUT_DIR [--jit-compile]   (or torchrun ... ddp_script.py OUT_DIR)
Writes OUT_DIR/rank<r>.pt with the final weights, fit history and evaluate logs.
"""
import os
import sys
import warnings

import torch
from torch import nn

import kerastorch as kt
from kerastorch.metrics import Metric


class SampleCount(Metric):
    """Counts the samples it sees: 11 over all ranks for an 11-sample dataset."""

    def update(self, y_pred, y_true, sample_weight=None):
        self._state("n", y_pred).add_(y_pred.shape[0])

    def result(self):
        return self._states["n"]


def data(n):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, 3, generator=g)
    return x, (x.sum(1, keepdim=True) > 0).float()


def main(out_dir, jit_compile=False):
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1)))
    model.compile("sgd", "bce_with_logits", {"acc": "accuracy", "auc": "auc", "n": SampleCount()},
                  optimizer_kwargs={"lr": 0.1}, device="cpu", jit_compile=jit_compile)
    x, y = data(40)
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, validation_data=data(11),
                        validation_every_n_steps=7,  # 5 steps an epoch per rank: across epoch ends
                        callbacks=[kt.callbacks.ModelCheckpoint(os.path.join(out_dir, "last.pt")),
                                   kt.callbacks.ModelCheckpoint(os.path.join(out_dir, "top-{epoch}.pt"),
                                                                monitor="val_loss", save_top_k=2)])
    small_x, small_y = data(11)
    logs = model.evaluate(small_x, small_y, batch_size=5)
    rank = int(os.environ.get("RANK", "0"))
    torch.save({"weights": model.state_dict(), "history": history.to_dict("list"), "evaluate": logs,
                "validation_history": model.validation_history.to_dict("list"), "nonfinite": nonfinite_fit()},
               os.path.join(out_dir, f"rank{rank}.pt"))


def nonfinite_fit():
    """A NaN in the last sample: under 2 ranks only rank 1's last batch (2) sees it; both stop after epoch 1."""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(3, 1))
    model.compile("sgd", "mse", device="cpu")
    x, y = data(12)
    x[11, 0] = float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=2, epochs=3, shuffle=False, verbose=0)
    return {"loss": history["loss"].tolist(), "warnings": [str(w.message) for w in caught
                                                          if "Non-finite" in str(w.message)]}


if __name__ == "__main__":
    main(sys.argv[1], jit_compile="--jit-compile" in sys.argv[2:])
