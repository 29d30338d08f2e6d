"""Model: compile, fit, evaluate, predict, wrap, and bad input failing before any step."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import kerastorch as kt
from support import TinyNet


def test_fit_returns_history_frame_with_expected_columns(tiny, binary_data):
    x, y = binary_data
    tiny.compile("adam", "bce_with_logits", {"acc": "accuracy"}, device="cpu")
    history = tiny.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), verbose=0)
    assert list(history.columns) == ["epoch", "loss", "acc", "val_loss", "val_acc", "lr"]
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["lr"].tolist() == [0.001] * 3


def test_history_grows_across_fits(tiny, binary_data):
    x, y = binary_data
    tiny.compile("sgd", "mse", device="cpu")
    tiny.fit(x, y, epochs=2, verbose=0)
    history = tiny.fit(x, y, epochs=3, verbose=0)
    assert len(history) == 5 and len(tiny.history) == 5
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5]  # numbered on: one history over all fits


def test_epoch_loss_equals_whole_data_loss_with_uneven_last_batch():
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.0}, device="cpu")  # lr 0: weights fixed
    x, y = torch.randn(10, 2), torch.randn(10, 1)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    expected = nn.functional.mse_loss(model(x), y).item()
    assert history["loss"].iloc[0] == pytest.approx(expected, abs=1e-6)
    assert model.evaluate(x, y, batch_size=8)["loss"] == pytest.approx(expected, abs=1e-6)


def test_one_sgd_step_matches_hand_computation():
    torch.manual_seed(0)
    model = TinyNet()
    ref = TinyNet()
    ref.load_state_dict(model.state_dict())
    x, y = torch.randn(6, 2), torch.randn(6, 1)
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, device="cpu")
    model.fit(x, y, batch_size=6, epochs=1, verbose=0, shuffle=False)
    nn.functional.mse_loss(ref(x), y).backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    assert all(torch.allclose(p, q, atol=1e-7) for p, q in zip(model.parameters(), ref.parameters()))


def test_state_dict_is_the_networks_alone(tiny):
    tiny.compile("adam", kt.losses.FocalLoss(alpha=[0.3, 0.7]), ["accuracy"], device="cpu")
    assert list(tiny.state_dict()) == ["fc.weight", "fc.bias"]
    assert len(list(tiny.parameters())) == 2


def test_wrap_shares_parameters_and_keys():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    model = kt.Model.wrap(net)
    assert list(model.state_dict()) == list(net.state_dict())
    assert isinstance(model, nn.Sequential) and isinstance(model, kt.Model)
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.5}, device="cpu")
    before = net[0].weight.detach().clone()
    model.fit(torch.randn(8, 2), torch.randn(8, 1), epochs=1, verbose=0)
    assert not torch.equal(net[0].weight, before)  # the original module was trained too
    assert type(net) is nn.Sequential


def test_recompile_replaces_configuration(tiny, binary_data):
    x, y = binary_data
    tiny.compile("adam", "mse", ["mae"], device="cpu")
    tiny.compile("sgd", "bce_with_logits", {"acc": "accuracy"}, device="cpu")
    assert isinstance(tiny.optimizer, torch.optim.SGD)
    history = tiny.fit(x, y, epochs=1, verbose=0)
    assert "mae" not in history.columns and "acc" in history.columns


def test_optimizer_forms(tiny):
    tiny.compile(optimizer="adamw", loss="mse", optimizer_kwargs={"lr": 0.05, "weight_decay": 0.1}, device="cpu")
    assert tiny.optimizer.param_groups[0]["lr"] == 0.05 and tiny.optimizer.param_groups[0]["weight_decay"] == 0.1
    tiny.compile(optimizer=lambda params: torch.optim.RMSprop(params, lr=0.2), loss="mse", device="cpu")
    assert isinstance(tiny.optimizer, torch.optim.RMSprop)
    opt = torch.optim.Adagrad(tiny.parameters(), lr=0.3)
    tiny.compile(optimizer=opt, loss="mse", device="cpu")
    assert tiny.optimizer is opt


def test_named_adam_is_fused_and_trains_like_torch_adam(tiny, binary_data):
    x, y = binary_data
    start = {k: v.clone() for k, v in tiny.state_dict().items()}
    tiny.compile("adam", "mse", optimizer_kwargs={"lr": 0.01}, device="cpu")
    assert tiny.optimizer.param_groups[0]["fused"] is True
    tiny.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
    # The same three full-batch steps with torch's for-loop Adam on a copy of the start weights.
    reference = copy.deepcopy(tiny)
    reference.load_state_dict(start)
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01, foreach=False)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.mse_loss(reference(x), y.view(-1, 1)).backward()
        optimizer.step()
    for name, value in reference.state_dict().items():
        assert torch.allclose(tiny.state_dict()[name], value, atol=1e-6), name


def test_optimizer_implementation_chosen_by_the_user_is_kept(tiny):
    for kwargs in ({"fused": False}, {"foreach": True}, {"differentiable": False}):
        tiny.compile("adam", "mse", optimizer_kwargs=kwargs, device="cpu")
        assert not tiny.optimizer.param_groups[0]["fused"], kwargs
    tiny.compile("sgd", "mse", device="cpu")  # no fused default outside adam / adamw
    assert not tiny.optimizer.param_groups[0]["fused"]
    tiny.compile("adamw", "mse", device="cpu")
    assert tiny.optimizer.param_groups[0]["fused"] is True


def test_multiple_inputs_tuple_and_dict():
    class TwoIn(kt.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 1), nn.Linear(3, 1)

        def forward(self, left, right):
            return self.a(left) + self.b(right)

    model = TwoIn()
    model.compile("sgd", "mse", device="cpu")
    left, right, y = torch.randn(12, 2), torch.randn(12, 3), torch.randn(12, 1)
    model.fit((left, right), y, batch_size=5, epochs=1, verbose=0)
    out_tuple = model.predict((left, right), batch_size=5)
    out_dict = model.predict({"left": left, "right": right}, batch_size=5)
    assert out_tuple.shape == (12, 1) and torch.allclose(out_tuple, out_dict)
    assert torch.allclose(out_tuple, model(left, right).detach())


def test_predict_keeps_structure_on_cpu():
    class Multi(kt.Model):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            h = self.fc(x)
            return {"logits": h, "pair": (h[:, :1], h.sum(1))}

    model = Multi()
    out = model.predict(np.random.rand(7, 2), batch_size=3)
    assert out["logits"].shape == (7, 3) and out["pair"][0].shape == (7, 1) and out["pair"][1].shape == (7,)
    assert out["logits"].device.type == "cpu"
    assert not out["logits"].requires_grad and not out["logits"].is_inference()  # usable in later autograd


def test_predict_runs_in_eval_mode_and_restores_train_mode():
    model = kt.Model.wrap(nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.9)))
    model.train()
    x = torch.ones(20, 2)
    first, second = model.predict(x), model.predict(x)
    assert torch.equal(first, second)  # dropout off
    assert model.training


def test_pandas_and_numpy_inputs(tiny):
    frame = pd.DataFrame({"a": np.linspace(-1, 1, 20), "b": np.linspace(1, -1, 20)})
    target = pd.Series((frame["a"] > 0).astype(float))
    tiny.compile("adam", "bce_with_logits", ["accuracy"], device="cpu")
    history = tiny.fit(frame, target, batch_size=6, epochs=1, verbose=0)
    assert len(history) == 1 and tiny.predict(frame.to_numpy()).dtype == torch.float32


def test_validation_split_uses_last_fraction():
    model = Recorder()
    model.compile("sgd", "mse", device="cpu")
    x = torch.arange(10.).reshape(10, 1)
    model.fit(x, x, validation_split=0.3, batch_size=10, epochs=1, verbose=0, shuffle=False)
    assert model.seen == [list(range(7)), [7, 8, 9]]


class Recorder(kt.Model):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.flatten().long().tolist())
        return x * self.w


def test_stop_training_stops_after_current_batch(tiny, binary_data):
    x, y = binary_data
    calls = []

    class StopAt(kt.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            calls.append(batch)
            if batch == 1:
                self.model.stop_training = True

    tiny.compile("sgd", "mse", device="cpu")
    history = tiny.fit(x, y, batch_size=4, epochs=5, callbacks=[StopAt()], verbose=0)
    assert calls == [0, 1] and len(history) == 1


def test_fit_restores_training_mode(tiny, binary_data):
    x, y = binary_data
    tiny.compile("sgd", "mse", device="cpu")
    tiny.eval()
    tiny.fit(x, y, epochs=1, validation_data=(x, y), verbose=0)
    assert not tiny.training


def test_target_of_shape_n_is_aligned_with_output_n_1(tiny):
    x, y = torch.randn(9, 2), torch.randn(9)
    tiny.compile("sgd", "mse", optimizer_kwargs={"lr": 0.0}, device="cpu")
    loss = tiny.evaluate(x, y)["loss"]
    assert loss == pytest.approx(nn.functional.mse_loss(tiny(x).squeeze(1), y).item(), abs=1e-6)


def test_loss_dict_components_are_logged(tiny, binary_data):
    x, y = binary_data

    def loss_fn(y_pred, y_true):
        mse = nn.functional.mse_loss(y_pred, y_true)
        return {"loss": mse + 1.0, "mse": mse, "const": torch.tensor(1.0)}

    tiny.compile("sgd", loss_fn, device="cpu")
    history = tiny.fit(x, y, epochs=1, verbose=0)
    assert history["const"].iloc[0] == pytest.approx(1.0)
    assert history["loss"].iloc[0] == pytest.approx(history["mse"].iloc[0] + 1.0, abs=1e-6)


def test_regularizer_reg_loss_logged_and_val_loss_excludes_it(tiny, binary_data):
    x, y = binary_data
    tiny.compile("sgd", "mse", optimizer_kwargs={"lr": 0.0}, device="cpu",
                 regularizers=kt.regularizers.L2(0.5))
    history = tiny.fit(x, y, epochs=1, validation_data=(x, y), verbose=0, shuffle=False)
    expected_penalty = 0.5 * 0.5 * tiny.fc.weight.detach().pow(2).sum().item()
    assert history["reg_loss"].iloc[0] == pytest.approx(expected_penalty, abs=1e-6)
    assert history["val_loss"].iloc[0] == pytest.approx(history["loss"].iloc[0], abs=1e-6)


def test_lr_scheduler_callable_and_foreign_scheduler(tiny, binary_data):
    x, y = binary_data
    tiny.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, device="cpu",
                 lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    history = tiny.fit(x, y, epochs=3, verbose=0)
    assert history["lr"].tolist() == [0.1, 0.05, 0.025]  # lr read at epoch end, before the step
    stale = torch.optim.lr_scheduler.StepLR(tiny.optimizer, 1)
    with pytest.raises(ValueError, match="attached to another optimizer"):
        tiny.compile("sgd", "mse", lr_scheduler=stale, device="cpu")


def test_multi_output_losses_with_weights_are_logged_per_output():
    class TwoHeads(kt.Model):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(2, 4)
            self.reg, self.cls = nn.Linear(4, 1), nn.Linear(4, 3)

        def forward(self, x):
            h = torch.tanh(self.body(x))
            return {"value": self.reg(h), "kind": self.cls(h)}

    torch.manual_seed(0)
    model = TwoHeads()
    model.compile("sgd", {"value": "mse", "kind": "cross_entropy"}, loss_weights={"value": 2.0, "kind": 0.5},
                  optimizer_kwargs={"lr": 0.0}, device="cpu")
    x = torch.randn(12, 2)
    y = {"value": torch.randn(12, 1), "kind": torch.randint(0, 3, (12,))}
    history = model.fit(x, y, batch_size=12, epochs=1, verbose=0)
    out = model(x)
    mse = nn.functional.mse_loss(out["value"], y["value"]).item()
    ce = nn.functional.cross_entropy(out["kind"], y["kind"]).item()
    assert history["value_loss"].iloc[0] == pytest.approx(mse, abs=1e-6)
    assert history["kind_loss"].iloc[0] == pytest.approx(ce, abs=1e-6)
    assert history["loss"].iloc[0] == pytest.approx(2.0 * mse + 0.5 * ce, abs=1e-6)


def test_class_weight_weights_each_sample_by_its_class():
    model = kt.Model.wrap(nn.Linear(2, 3))
    model.compile("sgd", "cross_entropy", class_weight={0: 1.0, 1: 3.0, 2: 0.0}, optimizer_kwargs={"lr": 0.0},
                  device="cpu")
    torch.manual_seed(0)
    x, y = torch.randn(9, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    history = model.fit(x, y, batch_size=9, epochs=1, verbose=0)
    per_sample = nn.functional.cross_entropy(model(x), y, reduction="none")
    weights = torch.tensor([1.0, 3.0, 0.0])[y]
    assert history["loss"].iloc[0] == pytest.approx((per_sample * weights).sum().item() / 9, abs=1e-6)


def test_sample_weight_with_plain_function_loss_is_a_clear_error(tiny):
    tiny.compile("sgd", lambda p, t: (p - t).pow(2).mean(), device="cpu")
    with pytest.raises(ValueError, match="Sample or class weights need a built-in loss"):
        tiny.fit(torch.zeros(4, 2), torch.zeros(4, 1), sample_weight=torch.ones(4), verbose=0)
