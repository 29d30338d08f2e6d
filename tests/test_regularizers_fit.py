"""Regularizers inside fit: the update equals minimising loss + penalty; reg_loss is logged exactly."""
import pytest
import torch
from torch import nn

import kerastorch as kt


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 1))


def data():
    g = torch.Generator().manual_seed(2)
    return torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g)


def test_l2_step_in_fit_equals_sgd_weight_decay_on_weights():
    x, y = data()
    model = kt.Model.wrap(net())
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, regularizers=kt.regularizers.L2(0.05), device="cpu")
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    ref = net()
    weights = [ref[0].weight, ref[3].weight]
    others = [p for p in ref.parameters() if all(p is not w for w in weights)]
    opt = torch.optim.SGD([{"params": weights, "weight_decay": 0.05}, {"params": others}], lr=0.1)
    nn.functional.mse_loss(ref(x), y).backward()
    opt.step()
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_l1l2_update_equals_autograd_of_the_penalty():
    x, y = data()
    reg = kt.regularizers.L1L2(l1=0.03, l2=0.02)
    model = kt.Model.wrap(net())
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, regularizers=reg, device="cpu")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    ref = net()
    penalty = kt.regularizers.bind(reg, ref)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(2):
        for i in (0, 8):
            (nn.functional.mse_loss(ref(x[i:i + 8]), y[i:i + 8]) + penalty()).backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_logged_reg_loss_is_the_penalty_of_the_epochs_final_weights():
    x, y = data()
    model = kt.Model.wrap(net())
    reg = kt.regularizers.L1L2(l1=0.01, l2=0.1)
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.05}, regularizers=reg, device="cpu")
    history = model.fit(x, y, batch_size=6, epochs=2, verbose=0, validation_data=(x, y))
    w1, w2 = model[0].weight.detach(), model[3].weight.detach()  # biases and BatchNorm are not covered
    hand = 0.01 * (w1.abs().sum() + w2.abs().sum()) + 0.5 * 0.1 * (w1.pow(2).sum() + w2.pow(2).sum())
    assert history["reg_loss"].iloc[-1] == pytest.approx(hand.item(), abs=1e-6)
    assert list(history.columns[:3]) == ["epoch", "loss", "reg_loss"] and "val_reg_loss" not in history


def test_accumulation_adds_the_penalty_once_per_update():
    x, y = data()
    reg = kt.regularizers.L1L2(l1=0.05, l2=0.5)

    def plain(seed=0):
        torch.manual_seed(seed)
        return kt.Model.wrap(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)))

    accumulated, whole = plain(), plain()
    accumulated.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, regularizers=reg, grad_accum_steps=2,
                        device="cpu")
    whole.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, regularizers=reg, device="cpu")
    accumulated.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    whole.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(accumulated.parameters(), whole.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
