"""torchkeras-era scripts run with only the import changed (the seed tutorial's snippets)."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as torchkeras


class SeedConvNet(nn.Module):
    """The seed's TensorBoard-section network, summarised with the module-level summary."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=3, out_channels=32, kernel_size=3)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=5)
        self.dropout = nn.Dropout2d(p=0.1)
        self.adaptive_pool = nn.AdaptiveMaxPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(64, 32)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(32, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        x = self.pool(self.conv2(self.pool(self.conv1(x))))
        x = self.flatten(self.adaptive_pool(self.dropout(x)))
        return self.sigmoid(self.linear2(self.relu(self.linear1(x))))


def test_module_level_summary_of_the_seed_net(capsys):
    text = torchkeras.summary(SeedConvNet(), input_shape=(3, 32, 32))
    assert "Total params: 54,273" in text and "Trainable params: 54,273" in text
    assert "AdaptiveMaxPool2d-6" in text and "[-1, 64, 1, 1]" in text
    assert capsys.readouterr().out == text + "\n"


def test_seed_fit_evaluate_predict_forms(capsys):
    class DNNModel(torchkeras.Model):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(2, 4)
            self.fc2 = nn.Linear(4, 1)

        def forward(self, x):
            return nn.Sigmoid()(self.fc2(torch.relu(self.fc1(x))))

    def accuracy(y_pred, y_true):
        y_pred = torch.where(y_pred > 0.5, torch.ones_like(y_pred, dtype=torch.float32),
                             torch.zeros_like(y_pred, dtype=torch.float32))
        return torch.mean(1 - torch.abs(y_true - y_pred))

    torch.manual_seed(0)
    x = torch.randn(60, 2)
    y = (x[:, :1] > 0).float()
    ds = TensorDataset(x, y)
    ds_train, ds_valid = torch.utils.data.random_split(ds, [42, 18])
    dl_train, dl_valid = DataLoader(ds_train, batch_size=10, shuffle=True), DataLoader(ds_valid, batch_size=10)
    model = DNNModel()
    model.compile(loss_func=nn.BCELoss(), optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
                  metrics_dict={"accuracy": accuracy})
    dfhistory = model.fit(3, dl_train=dl_train, dl_val=dl_valid, log_step_freq=2)
    # torchkeras 2.1.2 returns pd.DataFrame(self.history): no epoch or lr column, a RangeIndex.
    assert list(dfhistory.columns) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert list(dfhistory.index) == [0, 1, 2]
    out = capsys.readouterr().out
    assert out.count("{'step': 2, 'loss':") == 3 and out.count("Finished Training...") == 1
    logs = model.evaluate(dl_valid)  # torchkeras: {"val_loss": ..., "val_<metric>": ...}
    assert list(logs) == ["val_loss", "val_accuracy"]
    assert logs["val_accuracy"] == dfhistory["val_accuracy"].iloc[-1]
    assert model.predict(dl_valid).shape == (18, 1)


def _ring_loaders():
    torch.manual_seed(0)
    x = torch.randn(60, 2)
    y = (x.sum(1, keepdim=True) > 0).float()
    return (DataLoader(TensorDataset(x[:40], y[:40]), batch_size=10, shuffle=True),
            DataLoader(TensorDataset(x[40:], y[40:]), batch_size=10))


def test_model_of_net_wraps_an_existing_module_as_torchkeras_did(capsys):
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
    model = torchkeras.Model(net)
    assert model.net is net and list(model.state_dict()) == ["net.0.weight", "net.0.bias", "net.2.weight",
                                                             "net.2.bias"]
    x = torch.randn(5, 2)
    assert torch.equal(model(x), net(x))
    loss_func = nn.BCELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.compile(loss_func=loss_func, optimizer=optimizer, metrics_dict={"mae": "mae"})
    assert model.loss_func is loss_func and model.optimizer is optimizer and model.metrics_dict == {"mae": "mae"}
    dl_train, dl_val = _ring_loaders()
    dfhistory = model.fit(2, dl_train, dl_val)
    assert list(dfhistory.columns) == ["loss", "mae", "val_loss", "val_mae"] and len(dfhistory) == 2
    out = capsys.readouterr().out
    assert out.count("{'step': ") == 2 * len(dl_train)  # torchkeras's default log_step_freq is 1
    assert set(model.evaluate(dl_val)) == {"val_loss", "val_mae"}
    assert model.predict(dl_val).shape == (20, 1)


def test_a_subclass_passes_the_net_to_super():
    class Wrapped(torchkeras.Model):
        def __init__(self, net):
            super().__init__(net)

    model = Wrapped(nn.Linear(2, 1))
    assert isinstance(model.net, nn.Linear) and model(torch.zeros(3, 2)).shape == (3, 1)


def test_model_without_net_or_forward_says_what_to_do():
    model = torchkeras.Model()
    with pytest.raises(NotImplementedError, match=r"Model has no forward\(\)\. Define forward\(\) in your Model "
                                                  r"subclass, or wrap an existing module: kerastorch\.Model\(net\)"):
        model(torch.zeros(1, 2))
    with pytest.raises(TypeError, match=r"Model\(net\) wraps an nn\.Module\. Received: net=3"):
        torchkeras.Model(3)


def test_positional_torchkeras_compile_a_loss_first():
    model = torchkeras.Model(nn.Linear(2, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    metric = lambda y_pred, y_true: (y_pred - y_true).abs().mean()  # noqa: E731
    model.compile(nn.MSELoss(), optimizer, {"l1": metric}, "cpu")
    assert isinstance(model.loss_func, nn.MSELoss) and model.optimizer is optimizer
    assert model.metrics_dict == {"l1": metric} and model.device == torch.device("cpu")
    model.compile(lambda y_pred, y: ((y_pred - y) ** 2).mean())  # a two-argument function is a loss
    assert isinstance(model.optimizer, torch.optim.Adam) and model.optimizer.defaults["lr"] == 1e-3
    with pytest.raises(TypeError, match="compile\\(\\) got `optimizer` twice"):
        model.compile(nn.MSELoss(), optimizer, optimizer=optimizer)
    # The Keras form is unchanged: an optimizer (name, object or one-argument factory) first.
    model.compile("sgd", "mse", ["mae"], device="cpu")
    assert not model._config.torchkeras_form and set(model.evaluate(torch.zeros(4, 2), torch.zeros(4, 1))) == \
        {"loss", "mae"}
    model.compile(lambda params: torch.optim.SGD(params, lr=0.5), "mse", device="cpu")
    assert model.optimizer.defaults["lr"] == 0.5


def test_torchkeras_state_dicts_load_into_the_bare_network_and_back(tmp_path):
    wrapped = torchkeras.Model(nn.Linear(2, 1))
    wrapped.save_weights(tmp_path / "torchkeras.pt")  # keys net.weight, net.bias
    bare = torchkeras.Model.wrap(nn.Linear(2, 1))
    bare.load_weights(tmp_path / "torchkeras.pt")
    assert torch.equal(bare.weight, wrapped.net.weight) and torch.equal(bare.bias, wrapped.net.bias)
    torch.save(nn.Linear(2, 1).state_dict(), tmp_path / "plain.pt")  # keys weight, bias
    wrapped.load_weights(tmp_path / "plain.pt")
    assert torch.equal(wrapped.net.weight, torch.load(tmp_path / "plain.pt", weights_only=True)["weight"])


def test_print_bar_prints_torchkeras_time_bar(capsys):
    torchkeras.Model.print_bar()
    out = capsys.readouterr().out
    assert out.startswith("\n" + "=" * 80 + "20") and len(out) == 1 + 80 + 19 + 1


def test_overridden_torchkeras_steps_are_used(capsys):
    calls = {"train": 0, "evaluate": 0}

    class Custom(torchkeras.Model):
        """torchkeras 2.x's own step code, as a user would override it."""

        def train_step(self, features, labels):
            calls["train"] += 1
            self.train()
            self.optimizer.zero_grad()
            predictions = self.forward(features)
            loss = self.loss_func(predictions, labels)
            metrics = {"loss": loss.item()}
            for name, metric_func in self.metrics_dict.items():
                metrics[name] = metric_func(predictions, labels).item()
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
            return metrics

        @torch.no_grad()
        def evaluate_step(self, features, labels):
            calls["evaluate"] += 1
            self.eval()
            predictions = self.forward(features)
            metrics = {"val_loss": self.loss_func(predictions, labels).item()}
            for name, metric_func in self.metrics_dict.items():
                metrics["val_" + name] = metric_func(predictions, labels).item()
            return metrics

    def mae(y_pred, y_true):
        return (y_pred - y_true).abs().mean()

    x = torch.arange(8.0).reshape(8, 1)
    y = 2 * x
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    model = Custom(nn.Linear(1, 1, bias=False))
    nn.init.zeros_(model.net.weight)
    model.compile(loss_func=nn.MSELoss(), optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                  metrics_dict={"mae": mae})
    dfhistory = model.fit(1, loader, dl_val=loader)
    assert calls == {"train": 2, "evaluate": 2}  # two batches each
    # Weight 0, lr 0: the prediction is 0, so mae = mean|2x| = 7 and mse = mean(4x^2) = 70 over both batches.
    assert dfhistory.iloc[0].to_dict() == {"loss": 70.0, "mae": 7.0, "val_loss": 70.0, "val_mae": 7.0}
    assert model.evaluate(loader) == {"val_loss": 70.0, "val_mae": 7.0} and calls["evaluate"] == 4


def test_torchkeras_summary_positional_batch_size(capsys):
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    text = torchkeras.summary(net, (2,), torch.FloatTensor, -1)
    assert "Total params: 17" in text and "[-1, 4]" in text
    model = torchkeras.Model(net)
    assert model.summary((2,), torch.FloatTensor, -1).splitlines()[3:] == text.splitlines()[3:]  # same rows
    assert "[-1, 1]" in torchkeras.summary(net, input_shape=(2,), batch_size=8, print_fn=None)


def test_torchkeras_form_falls_back_to_the_cpu_as_torchkeras_did(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = torchkeras.Model(nn.Linear(2, 1))
    with pytest.warns(RuntimeWarning, match=r"device='cuda:0' but CUDA is not available: training on the CPU"):
        model.compile(loss_func=nn.MSELoss(), device="cuda:0")
    assert model.device == torch.device("cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):  # the Keras form keeps its clear error
        model.compile("adam", "mse", device="cuda:0")
