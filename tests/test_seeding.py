"""seed_everything: two runs with shuffling, dropout and a 2-worker augmenting DataLoader are bit-identical."""
import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import kerastorch as kt


class Jittered(Dataset):
    """Each sample gets NumPy and torch noise in the worker that loads it."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(48, 4, generator=generator), torch.randn(48, 1, generator=generator)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        noise = torch.randn(4) * 0.1 + float(np.random.randn()) * 0.1
        return self.x[i] + noise, self.y[i]


def _train(seed):
    kt.seed_everything(seed)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1)))
    model.compile("adam", "mse", device="cpu")
    loader = DataLoader(Jittered(), batch_size=8, shuffle=True, num_workers=2)
    model.fit(loader, epochs=2, verbose=0)
    return [p.detach().clone() for p in model.parameters()]


def test_two_seeded_runs_are_bit_identical_and_another_seed_differs():
    first, second, other = _train(3), _train(3), _train(4)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_deterministic_sets_torchs_switches(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    try:
        assert kt.seed_everything(5, deterministic=True) is None  # a notebook cell ending with it shows nothing
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "7"])
def test_bad_seeds_name_the_range(seed):
    with pytest.raises(ValueError, match=r"`seed` must be an integer in \[0, 2\*\*32 - 1\]\. Received: seed="):
        kt.seed_everything(seed)
