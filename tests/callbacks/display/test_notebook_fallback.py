"""A notebook executed headless with nbclient, read back as a viewer without widget state reads it.

The bar's stored ``text/plain`` / ``text/html`` (what GitHub, nbviewer and VS Code show when the
widget state is not saved) must be the bar's final line, and a Ctrl-C must show a short traceback
whose bar and message name the same batch.
"""
import re
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).parents[3]
WIDGET = "application/vnd.jupyter.widget-view+json"
CELLS = [
    """
    import os, signal, torch, kerastorch as kt
    from torch import nn
    from kerastorch.callbacks import Callback

    class InterruptAtBatch2(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    torch.manual_seed(0)
    net = kt.Model.wrap(nn.Linear(2, 1))
    net.compile("sgd", "mse", device="cpu")
    """,
    "net.fit(torch.randn(8, 2), torch.randn(8, 1), batch_size=4, epochs=2, verbose=1, plot=False);",
    "net.fit(torch.randn(80, 2), torch.randn(80, 1), batch_size=4, epochs=4, verbose=1, plot=False, "
    "callbacks=[InterruptAtBatch2()])",
]


@pytest.fixture(scope="module")
def executed():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(source).strip()) for source in CELLS]
    NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True,
                   resources={"metadata": {"path": str(REPO)}}).execute()
    return nb


def bar_output(cell):
    [bar] = [out for out in cell.outputs if WIDGET in out.get("data", {})]
    return bar["data"]


@pytest.mark.slow
def test_the_saved_bar_is_the_finished_bar_not_its_first_frame(executed):
    data = bar_output(executed.cells[1])
    assert data["text/plain"].startswith("Epoch 2/2: 100%|") and " 2/2 [" in data["text/plain"]
    assert "  0%" not in data["text/plain"]
    assert re.match(r'<div class="kerastorch-progress">Epoch 2/2: 100% <progress value="2" max="2"></progress> '
                    r'2/2 \[', data["text/html"])


@pytest.mark.slow
def test_ctrl_c_shows_the_bar_at_the_messages_batch_and_a_short_traceback(executed):
    cell = executed.cells[2]
    assert " 2/20 [" in bar_output(cell)["text/plain"]  # the bar stopped where the message says
    [error] = [out for out in cell.outputs if out.output_type == "error"]
    assert error.ename == "KeyboardInterrupt"
    assert error.evalue == "Training interrupted in epoch 3, batch 2 of 20; model.history keeps 2 finished epochs."
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error.traceback))
    assert "engine/fit.py" not in text and "engine/signals.py" not in text  # no batch loop, no signal plumbing
    assert text.splitlines()[-1].startswith("KeyboardInterrupt: Training interrupted in epoch 3, batch 2 of 20;")
