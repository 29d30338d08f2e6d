"""Bad input fails before any optimizer step, with a message naming the problem."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from support import TinyNet, params_of, same_params


def compiled(out_features=1, loss="mse"):
    torch.manual_seed(0)
    model = TinyNet(out_features)
    model.compile("sgd", loss, device="cpu")
    return model


def assert_fails_before_step(model, match, exc=ValueError, **fit_kwargs):
    before = params_of(model)
    with pytest.raises(exc, match=match):
        model.fit(verbose=0, **fit_kwargs)
    assert same_params(before, params_of(model))


def test_fit_before_compile():
    with pytest.raises(RuntimeError, match=r"You must call `compile\(\)` before `fit\(\)`"):
        TinyNet().fit(torch.zeros(4, 2), torch.zeros(4, 1), verbose=0)


def test_evaluate_before_compile():
    with pytest.raises(RuntimeError, match=r"before `evaluate\(\)`"):
        TinyNet().evaluate(torch.zeros(4, 2), torch.zeros(4, 1))


def test_x_y_length_mismatch():
    assert_fails_before_step(compiled(), r"`x` and `y` must have the same number of samples. "
                             r"Received: x has 10, y has 9", x=torch.zeros(10, 2), y=torch.zeros(9, 1))


def test_empty_data():
    assert_fails_before_step(compiled(), r"is empty \(0 samples\)", x=torch.zeros(0, 2), y=torch.zeros(0, 1))
    empty_loader = DataLoader(TensorDataset(torch.zeros(0, 2), torch.zeros(0, 1)), batch_size=4)
    assert_fails_before_step(compiled(), "the DataLoader yields no batches", x=empty_loader)


def test_unknown_names():
    model = TinyNet()
    with pytest.raises(ValueError, match="Unknown loss name 'mse2'"):
        model.compile("adam", "mse2", device="cpu")
    with pytest.raises(ValueError, match="Unknown metric name 'acc2'"):
        model.compile("adam", "mse", ["acc2"], device="cpu")
    with pytest.raises(ValueError, match="Unknown optimizer name 'adamm'"):
        model.compile("adamm", "mse", device="cpu")


def test_output_shape_cannot_match_target():
    assert_fails_before_step(compiled(1), r"output shape \(4, 1\), target shape \(4, 2\)",
                             x=torch.zeros(8, 2), y=torch.zeros(8, 2), batch_size=4)


def test_other_silent_broadcasting_is_an_error():
    assert_fails_before_step(compiled(2), r"output shape \(4, 2\), target shape \(4,\)",
                             x=torch.zeros(8, 2), y=torch.zeros(8), batch_size=4)


def test_float_targets_for_cross_entropy():
    assert_fails_before_step(compiled(3, "cross_entropy"), "expects integer class indices",
                             x=torch.zeros(8, 2), y=torch.zeros(8), batch_size=4)


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="device='cuda' was requested but CUDA is not available"):
        TinyNet().compile("adam", "mse", device="cuda")


def test_bad_fit_arguments():
    model = compiled()
    x, y = torch.zeros(4, 2), torch.zeros(4, 1)
    with pytest.raises(ValueError, match="`epochs` must be a positive integer. Received: epochs=0"):
        model.fit(x, y, epochs=0, verbose=0)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="`verbose` must be 0, 1, 2"):
        model.fit(x, y, verbose=3)
    with pytest.raises(ValueError, match="`validation_split` must be a float in"):
        model.fit(x, y, validation_split=1.5, verbose=0)
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    with pytest.raises(ValueError, match="`batch_size` must not be given when `x` is a DataLoader"):
        model.fit(loader, batch_size=2, verbose=0)


def test_optimizer_of_another_model_is_refused_only_when_fit_would_step_it():
    model = TinyNet()
    other = TinyNet()
    with pytest.warns(RuntimeWarning, match=r"The optimizer holds 2 parameter\(s\) that are not this model's, so "
                                            r"fit\(\) would train another model\..* evaluate\(\) and predict\(\) work"):
        model.compile(torch.optim.SGD(other.parameters(), lr=0.1), "mse", device="cpu")
    x, y = torch.zeros(4, 2), torch.zeros(4, 1)
    assert set(model.evaluate(x, y)) == {"loss"} and model.predict(x).shape == (4, 1)
    before = [p.detach().clone() for p in other.parameters()]
    with pytest.raises(ValueError, match="not this model's, so fit\\(\\) would train another model"):
        model.fit(x, y, verbose=0)
    assert all(torch.equal(p, q) for p, q in zip(other.parameters(), before))


def test_non_numeric_data():
    import numpy as np
    model = compiled()
    with pytest.raises(TypeError, match="must hold numbers"):
        model.fit(np.array([["a", "b"]] * 4), np.zeros((4, 1)), verbose=0)


def test_loss_without_targets():
    model = compiled()
    with pytest.raises(ValueError, match="The loss needs targets"):
        model.fit(torch.zeros(4, 2), verbose=0)
