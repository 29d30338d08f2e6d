"""fit(processes=2) from a notebook: a model class defined in the notebook, trained on 2 spawned CPU processes,
gets the weights, optimizer state and history of the same code run under ``torchrun --nproc_per_node=2``.

The notebook is written to tmp_path and executed with nbclient (this venv's python3 kernel); the torchrun
script is the notebook's cells without ``processes=2``. Two fits of one epoch: the second continues from
what the first brought back (momentum buffers, epoch and step counts, shuffling generator). Shuffling is
on, so the seed fit draws from the notebook's RNG must reach the workers, and the RNG the notebook
continues with must be rank 0's.
"""
import os
import re
import socket
import subprocess
import sys

import nbformat
import pytest
import torch
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

DEFINITIONS = """\
import torch
from torch import nn
import kerastorch as kt


class Net(kt.Model):
    def __init__(self):
        super().__init__()
        self.hidden, self.out = nn.Linear(3, 8), nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))
"""

SETUP = """\
torch.manual_seed(0)
model = Net()
generator = torch.Generator().manual_seed(7)
x = torch.randn(40, 3, generator=generator)
y = (x.sum(1, keepdim=True) > 0).float()
model.compile("sgd", "bce_with_logits", {"acc": "accuracy"}, optimizer_kwargs={"lr": 0.1, "momentum": 0.9},
              device="cpu")
"""

FITS = ("history = model.fit(x, y, epochs=1, batch_size=4, verbose=0{processes})",
        "history = model.fit(x, y, epochs=1, batch_size=4, verbose=2{processes})")

SAVE = """\
torch.save({{"weights": model.state_dict(), "history": history.to_dict("list"), "rng_after": torch.rand(3),
            "optimizer": model.optimizer.state_dict(), "global_step": model._record.global_step}}, {path!r})
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_torchrun(directory):
    script = directory / "train.py"
    save_on_rank_zero = "    " + SAVE.format(path=str(directory / "torchrun.pt")).replace("\n", "\n    ")
    script.write_text("\n".join(["import os", DEFINITIONS, SETUP, *(fit.format(processes="") for fit in FITS),
                                 'if os.environ["RANK"] == "0":', save_on_rank_zero]))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={free_port()}",
               str(script)]
    return subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def execute_notebook(directory):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in
                (DEFINITIONS, SETUP, *(fit.format(processes=", processes=2") for fit in FITS),
                 SAVE.format(path=str(directory / "notebook.pt")))]
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(directory)}}).execute()
    return nb


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("notebook_processes")
    torchrun = start_torchrun(directory)  # alongside the notebook: each side is deterministic on its own
    try:
        nb = execute_notebook(directory)
    finally:
        out, _ = torchrun.communicate(timeout=400)
    assert torchrun.returncode == 0, out
    return nb, *(torch.load(directory / name, weights_only=False) for name in ("notebook.pt", "torchrun.pt"))


def test_the_notebook_model_trained_in_two_processes_equals_torchrun(runs):
    _, notebook, torchrun = runs
    assert list(notebook["weights"]) == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    for name, value in torchrun["weights"].items():
        assert torch.allclose(notebook["weights"][name], value, rtol=0, atol=1e-6), name
    assert notebook["history"]["epoch"] == [1, 2]
    assert list(notebook["history"]) == list(torchrun["history"]) == ["epoch", "loss", "acc", "lr"]
    for column, values in torchrun["history"].items():
        assert notebook["history"][column] == pytest.approx(values, abs=1e-6), column
    momentum = {key: state["momentum_buffer"] for key, state in notebook["optimizer"]["state"].items()}
    for key, state in torchrun["optimizer"]["state"].items():
        assert torch.allclose(momentum[key], state["momentum_buffer"], rtol=0, atol=1e-6), key
    assert notebook["global_step"] == torchrun["global_step"] == 10  # 40 samples / (2 ranks x 4) x 2 fits
    assert torch.equal(notebook["rng_after"], torchrun["rng_after"])  # the notebook continues with rank 0's RNG


def test_rank_zeros_epoch_lines_are_the_fit_cells_output_and_verbose_0_prints_nothing(runs):
    nb, notebook, _ = runs
    quiet, verbose = (next(cell for cell in nb.cells if cell.source == fit.format(processes=", processes=2"))
                      for fit in FITS)
    assert [out for cell in nb.cells if cell is not verbose for out in cell.outputs] == []
    assert {(out.output_type, out.get("name")) for out in verbose.outputs} == {("stream", "stdout")}
    lines = "".join(out.text for out in verbose.outputs).splitlines()
    assert len(lines) == 1 and lines[0].startswith("Epoch 2/2 - "), lines
    assert float(re.search(r" - loss: (\d+\.\d+)", lines[0])[1]) == round(notebook["history"]["loss"][1], 4)
