"""The examples run and reach what their docstrings promise.

Each example is imported by path and its ``main`` is called, with fewer epochs
where the example's result allows it; the two-rings demo runs with its real
settings, because its bars (validation accuracy and minority recall) are the
point of it. One test runs the demo as ``make demo`` does, in a subprocess.
"""
import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SEED_COLUMNS = ["loss", "accuracy", "val_loss", "val_accuracy"]  # torchkeras 2.1.2's pd.DataFrame(self.history)


def load_example(name):
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"kerastorch_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def one_thread():
    # The example models are tiny: one thread is as fast, and several threads
    # slow down by an order of magnitude when other work shares the cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_two_rings_reaches_accuracy_and_minority_recall(capsys):
    result = load_example("two_rings").main()
    out = capsys.readouterr().out

    assert result["val_accuracy"] >= 0.95
    assert result["minority_recall"] >= 0.8
    history = result["history"]
    assert list(history.columns) == [
        "epoch", "loss", "reg_loss", "acc", "recall", "precision", "auc",
        "val_loss", "val_acc", "val_recall", "val_precision", "val_auc", "lr"]
    assert len(history) == 40
    assert history["reg_loss"].gt(0).all()
    # The report (from predict) agrees with evaluate and with the last epoch's validation metrics.
    assert result["evaluate"]["acc"] == pytest.approx(result["val_accuracy"], abs=1e-6)
    assert result["evaluate"]["recall"] == pytest.approx(result["minority_recall"], abs=1e-6)
    assert history["val_acc"].iloc[-1] == pytest.approx(result["val_accuracy"], abs=1e-6)
    assert result["report"][1]["support"] == 60 and result["report"][0]["support"] == 1800
    # Captured output is not a terminal: one plain line per epoch instead of the table.
    assert re.search(r"^Epoch 1/40 - \d+\.\ds - loss: [\d.]+ - reg_loss: [\d.]+ - acc: ", out, re.MULTILINE)
    assert "per-class report" in out
    assert f"final validation accuracy: {result['val_accuracy']:.4f}" in out


def test_two_rings_in_bf16_on_cpu_reaches_the_same_bars(capsys):
    result = load_example("two_rings").main(precision="bf16-mixed", verbose=0)
    assert result["val_accuracy"] >= 0.95
    assert result["minority_recall"] >= 0.8


def test_two_rings_quick_run_and_missing_matplotlib(tmp_path, capsys):
    path = tmp_path / "rings.png"
    with mock.patch.dict(sys.modules, {"matplotlib": None, "matplotlib.pyplot": None}):  # import fails
        result = load_example("two_rings").main(quick=True, plot=str(path), verbose=0)
    assert len(result["history"]) == 5
    assert not path.exists()
    assert "matplotlib is not installed" in capsys.readouterr().out


def test_two_rings_plot_calls_matplotlib(tmp_path):
    # matplotlib is optional and not installed here: check the plotting code
    # (tensor work and the calls it makes) against a stand-in module.
    example = load_example("two_rings")
    pyplot = mock.MagicMock()
    fig, ax = mock.MagicMock(), mock.MagicMock()
    pyplot.subplots.return_value = (fig, ax)
    matplotlib = mock.MagicMock(pyplot=pyplot)
    x, y = example.make_rings(20, 30)
    path = str(tmp_path / "rings.png")
    with mock.patch.dict(sys.modules, {"matplotlib": matplotlib, "matplotlib.pyplot": pyplot}):
        assert example.save_decision_plot(example.RingNet(), x, y, path) is True
    matplotlib.use.assert_called_once_with("Agg")
    gx, gy, region = ax.contourf.call_args.args[:3]
    assert gx.shape == gy.shape == region.shape == (300, 300)
    assert set(region.flatten().tolist()) <= {0.0, 1.0}
    assert ax.scatter.call_count == 2
    fig.savefig.assert_called_once()
    assert fig.savefig.call_args.args[0] == path
    pyplot.close.assert_called_once_with(fig)


def test_two_rings_seed_form(capsys):
    dfhistory = load_example("two_rings_seed").main(epochs=2)
    out = capsys.readouterr().out

    assert list(dfhistory.columns) == SEED_COLUMNS
    assert dfhistory.index.tolist() == [0, 1]
    assert "Start Training ..." in out and "Finished Training..." in out
    assert out.count("{'step': 30,") == 2  # 44 steps per epoch: one step log each
    assert "| epoch |" in out
    assert "Total params: 61" in out  # the seed's summary


def test_text_cnn_seed_learns_the_planted_signal(capsys):
    result = load_example("text_cnn_seed").main(epochs=2)
    out = capsys.readouterr().out

    dfhistory = result["dfhistory"]
    assert list(dfhistory.columns) == SEED_COLUMNS
    assert "Total params: 40,625" in result["summary"]
    assert "Embedding-1" in result["summary"] and "Sigmoid-10" in result["summary"]
    assert dfhistory["val_accuracy"].iloc[-1] >= 0.8
    assert list(result["evaluation"]) == ["val_loss", "val_accuracy"]  # torchkeras's evaluate keys
    assert result["evaluation"]["val_accuracy"] == pytest.approx(dfhistory["val_accuracy"].iloc[-1], abs=1e-6)
    assert result["evaluation"]["val_loss"] == pytest.approx(dfhistory["val_loss"].iloc[-1], rel=1e-5)
    predictions = result["predictions"]
    assert predictions.shape == (1000, 1)
    assert predictions.min() >= 0 and predictions.max() <= 1
    assert out.count("{'step': 200,") == 2  # 200 steps per epoch
    assert "| epoch |" in out


def test_lenet_imagefolder(capsys):
    result = load_example("lenet_imagefolder").main(epochs=4)
    out = capsys.readouterr().out

    assert result["val_accuracy"] >= 0.9
    assert result["evaluate"]["accuracy"] == pytest.approx(result["val_accuracy"], abs=1e-6)
    assert list(result["history"].columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert "Total params: 61,706" in result["summary"]
    assert "wrote 1347 training and 450 validation PNGs" in out
    root = re.search(r"PNGs under (\S+)", out).group(1)
    assert not Path(root).exists()  # the temporary image folder is removed


def test_custom_train_step_logs_its_extra_term(capsys):
    example = load_example("custom_train_step")
    result = example.main(epochs=3)
    out = capsys.readouterr().out

    history = result["history"]
    assert list(history.columns) == ["epoch", "loss", "grad_penalty", "mae", "val_loss", "val_mae", "lr"]
    assert all(math.isfinite(v) and v > 0 for v in history["grad_penalty"])
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert "grad_penalty:" in out  # in the per-epoch lines too


def test_custom_train_step_penalty_is_the_mean_squared_slope():
    example = load_example("custom_train_step")
    torch.manual_seed(0)
    model = example.SmoothRegressor(penalty_weight=0.0)
    model.compile(optimizer="sgd", optimizer_kwargs={"lr": 0.0}, loss="mse", device="cpu")
    x = torch.linspace(-1, 1, 8).reshape(-1, 1)
    history = model.fit(x, torch.zeros(8, 1), batch_size=8, epochs=1, shuffle=False, verbose=0)
    x_req = x.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(model(x_req).sum(), x_req)
    assert history["grad_penalty"].iloc[0] == pytest.approx(slope.pow(2).mean().item(), rel=1e-5)


@pytest.mark.slow  # about 15-20 s here, most of it starting Python and importing torch
def test_demo_runs_as_a_script():
    # What `make demo` runs.
    proc = subprocess.run([sys.executable, "examples/two_rings.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stdout  # piped: plain lines, no bar
    assert re.search(r"^Epoch 40/40 - \d+\.\ds - loss: ", proc.stdout, re.MULTILINE)  # the last epoch's line
    accuracy = float(re.search(r"final validation accuracy: ([\d.]+)", proc.stdout).group(1))
    recall = float(re.search(r"minority-class \(positive\) recall: ([\d.]+)", proc.stdout).group(1))
    assert accuracy >= 0.95 and recall >= 0.8
