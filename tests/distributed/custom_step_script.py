"""Custom steps under torchrun: the README's ``Regression``, the example's ``SmoothRegressor`` and a
torchkeras 2.x ``train_step(features, labels)`` (``self.forward``, ``loss.backward()``, ``optimizer.step()``).

Usage: python custom_step_script.py OUT_DIR BATCH   (or torchrun --nproc_per_node=2 ... OUT_DIR BATCH)
With 2 ranks and BATCH=4 each rank's batch k holds every other sample of the single process's batch k
with BATCH=8 (shuffle=False), so the averaged gradients, and the weights, must agree.
Writes OUT_DIR/<name>_rank<r>.pt with the final weights.
"""
import os
import re
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as kt

ROOT = Path(__file__).resolve().parents[2]


def readme_regression():
    """The README's ``class Regression`` exactly as printed there (its "Customising a step" block)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"### Customising a step.*?```python\n(.*?)```", readme, re.S).group(1)
    namespace = {"kt": kt, "torch": torch}
    exec(block, namespace)  # the README's code, not a copy of it
    return namespace["Regression"]


def example_regressor():
    sys.path.insert(0, str(ROOT / "examples"))
    from custom_train_step import SmoothRegressor
    return SmoothRegressor


class TorchkerasStep(kt.Model):
    """torchkeras 2.x's own train_step, as its users override it."""

    def train_step(self, features, labels):
        self.train()
        self.optimizer.zero_grad()
        predictions = self.forward(features)
        loss = self.loss_func(predictions, labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return {"loss": loss.item()}


def data(features):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, features, generator=g)
    return x, x.sum(1, keepdim=True) + 0.1 * torch.randn(32, 1, generator=g)


def main(out_dir, batch):
    rank = int(os.environ.get("RANK", "0"))
    results, initial = {}, {}
    torch.manual_seed(0)
    model = readme_regression()(nn.Linear(3, 1))
    initial["readme"] = next(iter(model.state_dict().values())).clone()
    model.compile(optimizer="sgd", optimizer_kwargs={"lr": 0.05}, loss="mse", device="cpu")
    model.fit(*data(3), batch_size=batch, epochs=2, shuffle=False, verbose=0)
    results["readme"] = model
    torch.manual_seed(0)
    model = example_regressor()(penalty_weight=0.01)
    initial["example"] = next(iter(model.state_dict().values())).clone()
    model.compile(optimizer="sgd", optimizer_kwargs={"lr": 0.05}, loss="mse", device="cpu")
    model.fit(*data(1), batch_size=batch, epochs=2, shuffle=False, verbose=0)
    results["example"] = model
    torch.manual_seed(0)
    model = TorchkerasStep(nn.Linear(3, 1))
    initial["torchkeras"] = next(iter(model.state_dict().values())).clone()
    model.compile(loss_func=nn.MSELoss(), optimizer=torch.optim.SGD(model.parameters(), lr=0.05))
    model.fit(2, DataLoader(TensorDataset(*data(3)), batch_size=batch))
    results["torchkeras"] = model
    if rank == 0:
        torch.save(initial, os.path.join(out_dir, "initial.pt"))
    for name, trained in results.items():
        torch.save(trained.state_dict(), os.path.join(out_dir, f"{name}_rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
