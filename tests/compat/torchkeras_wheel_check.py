"""Manual check: the same torchkeras-form calls on the published torchkeras 2.1.2 wheel and on kerastorch.

Not collected by pytest (it needs the wheel from PyPI). Usage:

    .venv/bin/python -m pip download --no-deps torchkeras==2.1.2 -d /tmp/tk
    (cd /tmp/tk && unzip -o -q torchkeras-2.1.2-py3-none-any.whl -d pkg)
    .venv/bin/python tests/compat/torchkeras_wheel_check.py /tmp/tk/pkg

It compares the history columns and index, evaluate's keys, predict's shape and the
state_dict keys (and prints both histories), and exits 1 if any differs. torchkeras's
package imports pytorch_lightning for an unrelated class; a stub stands in for it.
"""
import sys
import types

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def run(library):
    torch.manual_seed(0)
    x = torch.randn(60, 2)
    y = (x.sum(1, keepdim=True) > 0).float()
    dl_train = DataLoader(TensorDataset(x[:40], y[:40]), batch_size=10, shuffle=True)
    dl_val = DataLoader(TensorDataset(x[40:], y[40:]), batch_size=10)
    model = library.Model(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid()))

    def accuracy(y_pred, y_true):
        return ((y_pred > 0.5).float() == y_true).float().mean()

    model.compile(loss_func=nn.BCELoss(), optimizer=torch.optim.Adam(model.parameters(), lr=0.05),
                  metrics_dict={"accuracy": accuracy})
    history = model.fit(2, dl_train, dl_val, log_step_freq=2)
    logs = model.evaluate(dl_val)
    facts = {"history columns": list(history.columns), "history index": list(history.index),
             "evaluate keys": list(logs), "predict shape": tuple(model.predict(dl_val).shape),
             "state_dict keys": list(model.state_dict())}
    return facts, history


def main(wheel_dir):
    sys.modules.setdefault("pytorch_lightning", types.SimpleNamespace(LightningModule=object))
    sys.path.insert(0, wheel_dir)
    import torchkeras
    sys.path.pop(0)
    import kerastorch

    (theirs, their_history), (ours, our_history) = run(torchkeras), run(kerastorch)
    for name in theirs:
        verdict = "SAME" if theirs[name] == ours[name] else "DIFFERENT"
        print(f"{name:16} torchkeras {torchkeras.__version__}: {theirs[name]}  kerastorch: {ours[name]}  {verdict}")
    print(their_history, our_history, sep="\n")
    return 0 if theirs == ours else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
