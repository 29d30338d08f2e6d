"""Gradient accumulation equals the big batch: windows of unequal batches weighted by their items."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as kt


def net(seed=0):
    """In float64, so that the comparison shows the weighting, not float32 rounding."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()


def data(n):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, (x ** 2).sum(1, keepdim=True)


def full_batch_gradients(x, y):
    """The hand answer: the gradient of the mean loss over the concatenated batch."""
    reference = net()
    nn.functional.mse_loss(reference(x), y).backward()
    return [p.grad.clone() for p in reference.parameters()]


def gradients_at_each_update(model):
    seen = []
    model.optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(
        [p.grad.clone() for group in opt.param_groups for p in group["params"]]))
    return seen


@pytest.mark.parametrize("kind", ["tensors", "dataloader"])
def test_a_window_of_unequal_batches_has_the_gradient_of_their_concatenation(kind):
    x, y = data(10)  # batches of 4, 4, 2: one window of 3
    model = kt.Model.wrap(net())
    model.compile("sgd", "mse", device="cpu", grad_accum_steps=3)
    seen = gradients_at_each_update(model)
    source = {"x": x, "y": y, "batch_size": 4, "shuffle": False} if kind == "tensors" else \
        {"x": DataLoader(TensorDataset(x, y), batch_size=4)}
    model.fit(**source, epochs=1, verbose=0)
    assert len(seen) == 1
    for got, expected in zip(seen[0], full_batch_gradients(x, y), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_a_short_last_window_is_the_gradient_of_its_own_batches():
    x, y = data(14)  # batches 4, 4, 4, 2: windows (4, 4, 4) and (2)
    model = kt.Model.wrap(net())
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.0}, device="cpu", grad_accum_steps=3)
    seen = gradients_at_each_update(model)
    model.fit(x, y, batch_size=4, shuffle=False, epochs=1, verbose=0)
    assert len(seen) == 2
    for got, expected in zip(seen[1], full_batch_gradients(x[12:], y[12:]), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_a_custom_step_reports_what_its_loss_averaged_over():
    """A loss over the non-masked entries: num_items=the entries, so the window averages over all its entries."""
    x, y = data(8)
    mask = torch.tensor([1, 1, 1, 0, 1, 0, 0, 0], dtype=torch.bool).reshape(8, 1)  # 3 of batch 1, 1 of batch 2

    class Masked(kt.Model):
        def __init__(self):
            super().__init__()
            self.body = net()

        def forward(self, x):
            return self.body(x)

        def train_step(self, batch):
            x, (y, m) = batch[0], (batch[1][:, :1], batch[1][:, 1:].bool())
            error = (self(x) - y).pow(2)[m]
            loss = error.mean()
            self.backward_and_step(loss, num_items=m.sum())
            return {"loss": loss.detach()}

    model = Masked()
    model.compile("sgd", device="cpu", grad_accum_steps=2)
    seen = gradients_at_each_update(model)
    model.fit(x, torch.cat([y, mask.double()], 1), batch_size=4, shuffle=False, epochs=1, verbose=0)
    reference = net()
    (reference(x) - y).pow(2)[mask].mean().backward()
    for got, expected in zip(seen[0], [p.grad for p in reference.parameters()], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
