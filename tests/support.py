"""Small models and helpers shared by the tests (importable: tests/ is on pythonpath)."""
import torch
from torch import nn

import kerastorch as kt


class TinyNet(kt.Model):
    """Linear 2 -> out_features: small enough to compute things by hand."""

    def __init__(self, out_features: int = 1) -> None:
        super().__init__()
        self.fc = nn.Linear(2, out_features)

    def forward(self, x):
        return self.fc(x)


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def same_params(a, b):
    return all(torch.equal(p, q) for p, q in zip(a, b))
