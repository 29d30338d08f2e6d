"""Shared fixtures: small models and data with known answers."""
import pytest
import torch

from support import TinyNet


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def binary_data():
    torch.manual_seed(1)
    x = torch.randn(40, 2)
    y = (x.sum(1) > 0).float()
    return x, y
