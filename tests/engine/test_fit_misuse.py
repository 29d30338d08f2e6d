"""The engine's guards (issue 10, item 4): BatchNorm's last batch, failing batches named, predict's inputs.

Each refusal comes before any optimizer step: weights, optimizer state, history and files stay as they were.
"""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as kt
from misuse_support import assert_unchanged, snapshot


def mlp(norm=True, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(4, 8), *([nn.BatchNorm1d(8)] if norm else []), nn.ReLU(), nn.Linear(8, 1)]
    model = kt.Model.wrap(nn.Sequential(*layers))
    model.compile("adam", "mse", device="cpu")
    return model


def data(n):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=generator), torch.randn(n, 1, generator=generator)


# ---------------------------------------------------------------- BatchNorm and a last batch of 1
def test_a_last_batch_of_one_under_batchnorm_is_refused_with_the_numbers_and_the_fix(tmp_path):
    model = mlp()
    model.fit(*data(32), batch_size=8, verbose=0)
    before = snapshot(model, tmp_path)
    checkpoint = kt.callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch}.pt"))
    with pytest.raises(ValueError, match=r"BatchNorm1d cannot train on a batch of 1 sample.*33 samples with "
                                         r"batch_size=32\. Use batch_size=31, drop one sample, or pass a "
                                         r"DataLoader with drop_last=True\. Nothing was trained"):
        model.fit(*data(33), batch_size=32, epochs=2, verbose=0, callbacks=[checkpoint])
    assert_unchanged(model, before, tmp_path)  # BatchNorm's running statistics included


def test_a_dataloader_whose_last_batch_has_one_sample_is_refused_too():
    model = mlp()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"17 samples with batch_size=8"):
        model.fit(DataLoader(TensorDataset(*data(17)), batch_size=8, shuffle=True), verbose=0)
    assert_unchanged(model, before)


def test_the_batchnorm_guard_allows_what_trains():
    # allowed: drop_last, a cap that never reaches the last batch, images (many values per channel), no BatchNorm
    mlp().fit(DataLoader(TensorDataset(*data(17)), batch_size=8, drop_last=True), verbose=0)
    mlp().fit(*data(33), batch_size=32, steps_per_epoch=1, verbose=0)
    mlp(norm=False).fit(*data(33), batch_size=32, verbose=0)
    torch.manual_seed(0)
    conv = kt.Model.wrap(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 1)))
    conv.compile("sgd", "mse", device="cpu")
    history = conv.fit(torch.randn(5, 1, 4, 4), torch.randn(5, 1), batch_size=4, epochs=2, verbose=0)
    assert len(history) == 2


def test_the_batchnorm_guard_leaves_no_hook_behind():
    model = mlp()
    model.fit(*data(33), batch_size=32, steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match="cannot train on a batch of 1"):
        model.fit(*data(33), batch_size=32, verbose=0)
    assert all(not m._forward_pre_hooks for m in model.modules())


# ---------------------------------------------------------------- a failing batch is named
class Picky(nn.Module):
    """Fails inside forward in a way no check foresees."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        if x.shape[0] == 3:
            raise KeyError("no batches of three")
        return self.fc(x)


def test_an_unforeseen_error_keeps_its_type_and_gains_the_batch():
    model = kt.Model.wrap(Picky())
    model.compile("sgd", "mse", device="cpu")
    before = snapshot(model)
    with pytest.raises(KeyError, match=r"no batches of three.*while running training batch 0 of epoch 1: "
                                       r"x float32 \(3, 4\), y float32 \(3, 1\)") as caught:
        model.fit(*[t[:3] for t in data(3)], verbose=0)
    assert isinstance(caught.value.__cause__, KeyError)  # chained: the original traceback stays
    assert_unchanged(model, before)


def test_an_error_type_with_other_arguments_gets_a_note():
    class Coded(Exception):
        def __init__(self, code, text):
            super().__init__(code, text)

    class Raises(nn.Module):
        def forward(self, x):
            raise Coded(7, "custom")

    model = kt.Model.wrap(nn.Sequential(nn.Linear(4, 1), Raises()))
    model.compile("sgd", "mse", device="cpu")
    with pytest.raises(Coded) as caught:
        model.fit(*data(4), verbose=0)
    assert caught.value.args == (7, "custom")
    assert any("while running training batch 0" in note for note in getattr(caught.value, "__notes__", []))


# ---------------------------------------------------------------- predict
def test_predict_with_the_wrong_number_of_features_names_both():
    model = mlp(norm=False)
    model.fit(*data(8), verbose=0)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"The model expects 4 features per sample, but the input has 3\. "
                                         r"Received: x of shape \(5, 3\).*while running prediction batch 0"):
        model.predict(torch.randn(5, 3))
    assert_unchanged(model, before)


def test_a_wrong_in_features_inside_the_model_points_at_the_layer():
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(10, 1)))
    model.compile("sgd", "mse", device="cpu")
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"A linear layer inside the model expects 10 input features but "
                                         r"receives 8\. Received: input of shape \(4, 1, 4, 4\).*nn.Linear\(8, "):
        model.fit(torch.randn(4, 1, 4, 4), torch.randn(4, 1), verbose=0)
    assert_unchanged(model, before)


def test_predict_with_a_forward_returning_none_says_so():
    class Silent(nn.Module):
        def forward(self, x):
            return None

    with pytest.raises(TypeError, match=r"forward returned None, so predict\(\) has no outputs"):
        kt.Model.wrap(Silent()).predict(torch.randn(3, 4))
