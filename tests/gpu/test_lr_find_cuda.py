"""lr_find on CUDA with fp16: the GradScaler, the CUDA RNG and the device tensors come back exactly."""
import copy

import pytest
import torch
from torch import nn

import kerastorch as kt

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_fp16_lr_find_restores_the_scaler_the_cuda_rng_and_the_weights():
    torch.manual_seed(0)
    net = kt.Model.wrap(nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.Dropout(0.2), nn.Linear(32, 1)))
    net.compile("adam", "mse", precision="16-mixed", device="cuda")
    x = torch.randn(256, 8)
    y = x.sum(1, keepdim=True)
    net.fit(x, y, batch_size=32, verbose=0)
    scaler = net._config.precision.scaler
    tensors = [t.detach().clone() for t in [*net.parameters(), *net.buffers()]]
    optimizer = copy.deepcopy(net.optimizer.state_dict())
    scaler_state, cuda_rng = copy.deepcopy(scaler.state_dict()), torch.cuda.get_rng_state_all()
    result = net.lr_find(x, y, batch_size=32, num_steps=40, end_lr=1e4)
    assert result.diverged_at is not None
    assert all(torch.equal(a, b) for a, b in zip(tensors, [*net.parameters(), *net.buffers()]))
    after = net.optimizer.state_dict()
    assert after["param_groups"] == optimizer["param_groups"]
    assert all(torch.equal(after["state"][i][k], optimizer["state"][i][k])
               for i in optimizer["state"] for k in optimizer["state"][i])
    assert scaler.state_dict() == scaler_state
    assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), cuda_rng))
