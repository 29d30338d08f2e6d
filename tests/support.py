"""Small models and helpers shared by the tests (importable: tests/ is on pythonpath)."""
import os
import signal
from pathlib import Path

import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback


class TinyNet(kt.Model):
    """Linear 2 -> out_features: small enough to compute things by hand."""

    def __init__(self, out_features: int = 1) -> None:
        super().__init__()
        self.fc = nn.Linear(2, out_features)

    def forward(self, x):
        return self.fc(x)


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def same_params(a, b):
    return all(torch.equal(p, q) for p, q in zip(a, b))


REPO_ROOT = Path(__file__).resolve().parents[1]


def run_notebook(cells, folder):
    """Write ``cells`` (code strings) as a notebook in ``folder``, execute it in a python3 Jupyter kernel.

    A first cell puts this checkout first on the kernel's sys.path (so it imports this kerastorch).
    Returns (the executed notebook's cells after that first one, the client).
    """
    import nbformat
    from nbclient import NotebookClient

    setup = f"import sys\nsys.path.insert(0, {str(REPO_ROOT)!r})"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in (setup, *cells)])
    path = folder / "check.ipynb"
    nbformat.write(notebook, path)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(folder)}})
    client.execute()
    return notebook.cells[1:], client


def exploding_model():
    """Keras's callback tests' model whose loss goes non-finite in the first epoch (kernels of 1e5 through 5
    ReLU layers), compiled with SGD and MSE, and its data: ``(model, (x, y))``."""
    torch.manual_seed(1337)
    layers = []
    for i in range(6):
        linear = nn.Linear(3 if i == 0 else 2, 2)
        if i < 5:
            nn.init.constant_(linear.weight, 1e5)
        layers += [linear] + ([nn.ReLU()] if i < 5 else [])
    model = kt.Model.wrap(nn.Sequential(*layers))
    model.compile("sgd", "mse", device="cpu")
    x, y = torch.rand(10, 3), torch.nn.functional.one_hot(torch.randint(0, 2, (10,)), 2).float()
    return model, (x, y)


class InterruptAt(Callback):
    """Sends this process SIGINT at the end of training batch ``batch`` of 0-based ``epoch`` (fit then stops at the
    end of the accumulation window and writes its interrupt checkpoints)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_train_batch_end(self, batch, logs=None):
        if (self.session.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGINT)
