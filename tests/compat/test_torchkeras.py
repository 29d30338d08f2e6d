"""torchkeras-era scripts run with only the import changed (the seed tutorial's snippets)."""
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
    assert list(dfhistory.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    out = capsys.readouterr().out
    assert out.count("{'step': 2, 'loss':") == 3 and out.count("Finished Training...") == 1
    logs = model.evaluate(dl_valid)
    assert set(logs) == {"loss", "accuracy"}
    assert logs["accuracy"] == dfhistory["val_accuracy"].iloc[-1]
    assert model.predict(dl_valid).shape == (18, 1)
