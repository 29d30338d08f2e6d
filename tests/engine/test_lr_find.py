"""lr_find: the sweep's known answers, and everything exactly as before afterwards."""
import copy
import math
import random
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as kt
from kerastorch.amp import SkipCountingGradScaler
from kerastorch.callbacks import Callback
from kerastorch.callbacks.base import HOOKS
from kerastorch.checkpointing.rng import capture_rng_state
from kerastorch.engine.lr_find import LRFinderResult

RATIO = 1e8 ** (1 / 99)  # lr growth per step with the defaults: 1e-7 .. 10 over 100 steps


# ------------------------------------------------------------------ the sweep's known answers
def test_gradient_descent_on_a_quadratic_diverges_just_above_its_stability_limit():
    # loss(w) = m2 (w - 3)^2 with m2 = mean(x^2); one full-batch SGD step multiplies w - 3 by
    # (1 - 2 lr m2): stable for lr < t = 1 / m2, and past t the loss grows by (2 lr m2 - 1)^2 per
    # step. The raw loss is lowest at the first lr above t; the factors of the next steps are at
    # least 1.96 and 3.6 (lr >= 1.2 t, 1.45 t), so the 4x rule fires within 4 steps past t.
    torch.manual_seed(0)
    x = torch.randn(1024, 1)
    threshold = 1 / float((x ** 2).mean())
    net = kt.Model.wrap(nn.Linear(1, 1, bias=False))
    net.compile("sgd", "mse", device="cpu")
    result = net.lr_find(x, 3 * x, batch_size=1024)
    assert threshold < result.diverged_at < threshold * RATIO ** 4  # about 1 < diverged_at < 2
    first_unstable = min(lr for lr in result.lrs if lr > threshold)
    assert result.suggestion in (float(f"{lr / 10:.2e}") for lr in (first_unstable, first_unstable * RATIO))
    assert 0.9 < threshold < 1.1 and 0.09 < result.suggestion < 0.14  # stable, 4x below the best 0.5 t
    assert result.losses[:3] == pytest.approx([float(((net.weight.detach() - 3) * x).pow(2).mean())] * 3,
                                              rel=1e-5)  # lr 1e-7: nothing moves yet, from the initial weight


def test_lrs_follow_the_exponential_formula_and_the_data_is_cycled():
    calls = []

    class Counting(nn.Linear, kt.Model):
        def train_step(self, batch):
            calls.append(batch[0].shape[0])
            return super().train_step(batch)

    net = Counting(2, 1)
    net.compile("sgd", "mse", device="cpu", grad_accum_steps=2)
    steps = []
    net.optimizer.register_step_post_hook(lambda opt, args, kwargs: steps.append(opt.param_groups[0]["lr"]))
    result = net.lr_find(torch.randn(12, 2), torch.randn(12, 1), batch_size=4, start_lr=1e-4, end_lr=1e-2,
                         num_steps=9)
    expected = [1e-4 * 100 ** (i / 8) for i in range(9)]
    assert result.lrs == expected and steps == expected  # one optimizer step per accumulation window
    assert calls == [4] * 18 and result.diverged_at is None  # 3 batches cycled over 18 batches


def test_smoothing_is_the_bias_corrected_moving_average_and_stops_at_four_times_the_best():
    values = iter([4.0, 2.0, 1.0, 3.0, 20.0, 1.0])

    class Scripted(nn.Linear, kt.Model):
        def train_step(self, batch):
            return {"loss": torch.tensor(next(values))}

    net = Scripted(1, 1)
    net.compile("sgd", "mse", device="cpu")
    result = net.lr_find(torch.zeros(4, 1), torch.zeros(4, 1), num_steps=6, smoothing=0.5)
    # s = 0.5 s + 0.5 loss from 0; smoothed = s / (1 - 0.5^(i+1)):
    # 2/0.5, 2/0.75, 1.5/0.875, 2.25/0.9375, 11.125/0.96875
    assert result.smoothed == pytest.approx([4.0, 8 / 3, 12 / 7, 2.4, 11.125 / 0.96875])
    assert result.losses == [4.0, 2.0, 1.0, 3.0, 20.0]
    assert result.diverged_at == result.lrs[4] == pytest.approx(1e-7 * 1e8 ** 0.8)  # 11.48 > 4 * 12/7


def test_a_non_finite_loss_stops_the_sweep_and_zero_smoothing_keeps_the_raw_losses():
    values = iter([3.0, 2.0, math.nan, 1.0])

    class Scripted(nn.Linear, kt.Model):
        def train_step(self, batch):
            return {"loss": torch.tensor(next(values))}

    net = Scripted(1, 1)
    net.compile("sgd", "mse", device="cpu")
    result = net.lr_find(torch.zeros(4, 1), torch.zeros(4, 1), num_steps=4, smoothing=0)
    assert result.smoothed[:2] == [3.0, 2.0] and math.isnan(result.smoothed[2])
    assert result.diverged_at == result.lrs[2] and len(result.lrs) == 3
    assert result.suggestion is None and "only 2 finite" in result.note


def test_the_suggestion_needs_five_points_and_a_loss_that_went_down():
    lrs = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    assert LRFinderResult(lrs, [5, 4, 1, 2, 9], [5, 4, 1, 2, 9], None).suggestion == pytest.approx(1e-2)
    few = LRFinderResult(lrs[:4], [5, 4, 1, 2], [5, 4, 1, 2], 1.0)
    assert few.suggestion is None and few.note.startswith("No suggestion: only 4 finite loss(es)")
    rising = LRFinderResult(lrs, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], None)
    assert rising.suggestion is None and "never went below its value at the first" in rising.note
    assert repr(few) == "LRFinderResult(steps=4, lr=1.00e-03..1.00e+00, suggestion=None, diverged_at=1.00e+00)"


def test_the_suggestion_is_one_number_with_three_significant_digits_wherever_it_shows():
    lrs = [1e-3 * 10 ** (i / 4) for i in range(9)]  # the lowest loss at lrs[5] = 10 ** -1.75
    result = LRFinderResult(lrs, [5, 4, 3, 2, 1.5, 1, 3, 9, 20], [5, 4, 3, 2, 1.5, 1, 3, 9, 20], lrs[-1])
    assert lrs[5] == pytest.approx(0.017782794) and result.suggestion == 0.00178  # the value used: 3 digits
    assert repr(result) == ("LRFinderResult(steps=9, lr=1.00e-03..1.00e-01, suggestion=1.78e-03, "
                            "diverged_at=1.00e-01)")
    assert result.note == "The learning rate at the lowest smoothed loss (1.78e-02), divided by 10."
    axes = result.plot().axes[0]
    assert axes.get_title() == "suggestion 1.78e-03"
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["loss", "smoothed loss",
                                                                            "suggestion 1.78e-03"]
    assert LRFinderResult(lrs[:2], [1, 2], [1, 2], None).plot().axes[0].get_title() == "suggestion None"


def test_shuffling_uses_a_private_generator_not_torchs_global_rng():
    x, y = torch.randn(40, 2), torch.randn(40, 1)
    net = kt.Model.wrap(nn.Linear(2, 1))
    net.compile("sgd", "mse", device="cpu")
    torch.manual_seed(1)
    first = net.lr_find(x, y, batch_size=8, num_steps=10)
    torch.manual_seed(2)
    second = net.lr_find(x, y, batch_size=8, num_steps=10)
    assert first.losses == second.losses  # same batches whatever the global seed


# ------------------------------------------------------------------ everything exactly as before
def _model(seed=0):
    torch.manual_seed(seed)
    net = kt.Model.wrap(nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2),
                                      nn.Linear(8, 1)))
    net.compile("adam", "mse", metrics=["mae"], device="cpu", lr_scheduler=lambda opt: StepLR(opt, 1, gamma=0.5))
    return net


def _data():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(64, 2, generator=generator)
    return x, x.sum(1, keepdim=True)


def _state(net):
    """Deep copies of everything lr_find must leave as it was."""
    config, record = net._config, net._record
    return {
        "tensors": [t.detach().clone() for t in [*net.parameters(), *net.buffers()]],
        "grads": [None if p.grad is None else p.grad.clone() for p in net.parameters()],
        "optimizer": copy.deepcopy(config.optimizer.state_dict()),
        "scheduler": copy.deepcopy(config.lr_scheduler.state_dict()),
        "scaler": copy.deepcopy(config.precision.scaler.state_dict()),
        "metrics": {name: m.state_dict() for name, m in config.metrics.items()},
        "metric_objects": dict(config.metrics),
        "record": (copy.deepcopy(record.history_rows), record.epoch, record.global_step,
                   record.generator.get_state().clone() if record.generator is not None else None),
        "flags": (net.training, net[1].training, net.stop_training, net._session),
        "rng": (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()),
    }


def _assert_same(before, after):
    def same(a, b):
        if isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        if isinstance(a, np.ndarray):
            return np.array_equal(a, b)
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return a is b or a == b

    for key in before:
        assert same(before[key], after[key]), f"{key} changed"


def test_after_lr_find_everything_is_bit_identical_and_the_next_fit_matches_a_twin():
    x, y = _data()
    net = _model()
    net.fit(x, y, batch_size=16, verbose=0)
    net.eval()
    net[1].train()  # a submodule in its own mode
    net.stop_training = True
    before = _state(net)
    assert before["optimizer"]["state"][0]["step"] == 4 and before["scheduler"]["last_epoch"] == 1
    result = net.lr_find(x, y, batch_size=16, num_steps=30, end_lr=1.0)
    assert len(result.lrs) >= 10 and net._config.lr_scheduler is not None
    _assert_same(before, _state(net))
    assert net.optimizer.param_groups[0]["lr"] == 5e-4  # Adam's 1e-3 halved by StepLR after epoch 1

    net.train()
    net.fit(x, y, batch_size=16, epochs=2, initial_epoch=1, verbose=0)
    twin = _model()
    twin.fit(x, y, batch_size=16, verbose=0)
    twin.fit(x, y, batch_size=16, epochs=2, initial_epoch=1, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), twin.state_dict().values()))
    assert net._record.history_rows == twin._record.history_rows


def test_a_grad_scaler_and_the_numpy_and_python_rngs_are_restored():
    class Draws(nn.Sequential, kt.Model):
        def train_step(self, batch):
            random.random(), np.random.rand()  # a step that draws from every RNG (Dropout: torch's)
            return super().train_step(batch)

    x, y = _data()
    torch.manual_seed(0)
    net = Draws(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    net.compile("sgd", "mse", device="cpu")
    net._config.precision.scaler = SkipCountingGradScaler("cpu", init_scale=256.0)
    net.fit(x, y, batch_size=16, verbose=0)
    scaler = net._config.precision.scaler
    before, rng = copy.deepcopy(scaler.state_dict()), capture_rng_state()
    result = net.lr_find(x, y, batch_size=16, num_steps=20, end_lr=1e6)
    assert result.diverged_at is not None
    after = capture_rng_state()
    assert scaler.state_dict() == before and before["scale"] == 256.0 and before["skipped_steps"] == 0.0
    assert after["python"] == rng["python"] and torch.equal(after["numpy"][1], rng["numpy"][1])
    assert after["numpy"][2:] == rng["numpy"][2:] and torch.equal(after["torch"], rng["torch"])


def test_a_sweep_that_raises_is_restored_and_the_error_propagates():
    x, y = _data()

    class Breaks(nn.Sequential, kt.Model):
        calls = 0

        def train_step(self, batch):
            Breaks.calls += 1
            if Breaks.calls == 5 + 4:  # 4 batches in the fit before, then the 5th sweep step
                self(batch[0]).sum().backward()  # leaves gradients behind, and changes the record
                record = self._session.record
                record.history_rows[0]["loss"] = -1.0
                record.history_rows.append({"epoch": 99})
                record.epoch, record.global_step = 7, 70
                torch.randn(3, generator=record.generator)
                raise RuntimeError("boom at step 5")
            return super().train_step(batch)

    torch.manual_seed(0)
    net = Breaks(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
    net.compile("adam", "mse", metrics=["mae"], device="cpu", lr_scheduler=lambda opt: StepLR(opt, 1))
    net.fit(x, y, batch_size=16, verbose=0)
    before = _state(net)
    with pytest.raises(RuntimeError, match="boom at step 5"):
        net.lr_find(x, y, batch_size=16, num_steps=20)
    assert Breaks.calls == 9
    _assert_same(before, _state(net))


def test_the_callbacks_of_an_earlier_fit_are_not_called():
    calls = []

    class Recorder(Callback):
        pass

    for hook in HOOKS:
        setattr(Recorder, hook, lambda self, *args, _hook=hook, **kwargs: calls.append(_hook))
    x, y = _data()
    net = _model()
    net.fit(x, y, batch_size=16, verbose=0, callbacks=[Recorder()])
    assert "on_backward_end" in calls
    calls.clear()
    net.lr_find(x, y, batch_size=16, num_steps=10)
    assert calls == []


def test_a_user_dataloaders_generator_is_restored():
    generator = torch.Generator().manual_seed(5)
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=generator)
    net = _model()
    state = generator.get_state()
    result = net.lr_find(loader, num_steps=10, end_lr=1e-2)
    assert len(result.lrs) == 10 and torch.equal(generator.get_state(), state)


# ------------------------------------------------------------------ misuse
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"start_lr": 0.0}, r"`start_lr` must be > 0. Received: start_lr=0.0"),
    ({"start_lr": "1e-3"}, r"`start_lr` must be a finite number. Received: start_lr='1e-3'"),
    ({"end_lr": math.inf}, r"`end_lr` must be a finite number. Received: end_lr=inf"),
    ({"start_lr": 1.0, "end_lr": 0.1}, r"`end_lr` must be greater than `start_lr`. Received: start_lr=1.0, "
                                       r"end_lr=0.1"),
    ({"num_steps": 1}, r"`num_steps` must be an integer >= 2. Received: num_steps=1"),
    ({"num_steps": 10.0}, r"`num_steps` must be an integer >= 2. Received: num_steps=10.0"),
    ({"diverge_factor": 1.0}, r"`diverge_factor` must be > 1 .*Received: diverge_factor=1.0"),
    ({"smoothing": 1.0}, r"`smoothing` must be a float in \[0, 1\). Received: smoothing=1.0"),
    ({"smoothing": -0.1}, r"`smoothing` must be a float in \[0, 1\). Received: smoothing=-0.1"),
])
def test_bad_arguments_are_refused_before_anything_changes(kwargs, match):
    x, y = _data()
    net = _model()
    before = _state(net)
    with pytest.raises(ValueError, match=match):
        net.lr_find(x, y, **kwargs)
    _assert_same(before, _state(net))


def test_an_uncompiled_model_raises_what_fit_raises():
    net = kt.Model.wrap(nn.Linear(2, 1))
    with pytest.raises(RuntimeError) as from_fit:
        net.fit(torch.zeros(4, 2), torch.zeros(4, 1))
    with pytest.raises(RuntimeError, match=r"^You must call `compile\(\)` before `lr_find\(\)`. "
                                           r"Example: model.compile\(optimizer='adam', loss='mse'\)$") as caught:
        net.lr_find(torch.zeros(4, 2), torch.zeros(4, 1))
    assert str(caught.value) == str(from_fit.value).replace("`fit()`", "`lr_find()`")


def test_a_train_step_without_a_loss_is_named():
    class NoLoss(nn.Linear, kt.Model):
        def train_step(self, batch):
            return {"mse": torch.tensor(1.0)}

    net = NoLoss(1, 1)
    net.compile("sgd", "mse", device="cpu")
    with pytest.raises(ValueError, match=r"needs `train_step` to return a dict with a 'loss' tensor. "
                                         r"Received: \['mse'\]"):
        net.lr_find(torch.zeros(4, 1), torch.zeros(4, 1))


# ------------------------------------------------------------------ the plot
def test_the_plot_draws_lrs_against_losses_on_a_log_axis_and_marks_the_suggestion():
    from matplotlib.figure import Figure

    torch.manual_seed(0)
    x = torch.randn(256, 1)
    net = kt.Model.wrap(nn.Linear(1, 1, bias=False))
    net.compile("sgd", "mse", device="cpu")
    result = net.lr_find(x, 3 * x, batch_size=256)
    figure = Figure()
    assert result.plot(figure) is figure
    axes = figure.axes[0]
    raw, smoothed, marker = axes.lines[:3]
    assert list(raw.get_xdata()) == result.lrs and list(raw.get_ydata()) == result.losses
    assert list(smoothed.get_ydata()) == result.smoothed and axes.get_xscale() == "log"
    assert list(marker.get_xdata()) == [result.suggestion] * 2
    assert isinstance(LRFinderResult([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], None).plot(), Figure)


def test_the_plot_without_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.delitem(sys.modules, "kerastorch.callbacks.display.figure", raising=False)  # imports matplotlib
    with pytest.raises(ImportError, match="pip install matplotlib"):
        LRFinderResult([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], None).plot()
