"""kt.interpret: predictions, targets and per-sample losses against sklearn and plain PyTorch."""
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as kt
from kerastorch.interpret import Interpretation

matplotlib.use("Agg")
metrics = pytest.importorskip("sklearn.metrics")
datasets = pytest.importorskip("sklearn.datasets")


def outputs(net, x):
    """The network's outputs in plain PyTorch (eval mode, no grad)."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        out = net(x)
    net.train(was_training)
    return out


def trained(net, loss, x, y):
    torch.manual_seed(0)
    model = kt.Model.wrap(net)
    model.compile("adam", loss, optimizer_kwargs={"lr": 1e-2}, device="cpu")
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    return model


def identity(loss=None):
    """A model whose output is its input (a 1x1 or CxC identity layer), optionally compiled."""
    def build(columns):
        layer = nn.Linear(columns, columns, bias=False)
        nn.init.eye_(layer.weight)
        model = kt.Model.wrap(layer)
        if loss is not None:
            model.compile("sgd", loss, device="cpu")
        return model
    return build


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = trained(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), "cross_entropy", x, y)
    return model, x, y, outputs(model, x)


@pytest.fixture(scope="module")
def digits_interp(digits):
    model, x, y, _ = digits
    return kt.interpret(model, x, y, batch_size=100)


def test_preds_targets_and_confusion_matrix_match_sklearn(digits, digits_interp):
    _, _, y, logits = digits
    expected = metrics.confusion_matrix(y.numpy(), logits.argmax(1).numpy(), labels=range(10))
    assert torch.equal(digits_interp.preds, logits.argmax(1))
    assert torch.equal(digits_interp.targets, y)
    matrix = digits_interp.confusion_matrix()
    assert np.array_equal(matrix.to_numpy(), expected)
    assert list(matrix.index) == list(matrix.columns) == [str(c) for c in range(10)]
    assert (matrix.index.name, matrix.columns.name) == ("actual", "predicted")
    assert 0.5 < digits_interp.accuracy < 1.0  # a model that learned, and still makes mistakes


def test_classification_report_matches_sklearn(digits_interp):
    interp = digits_interp
    expected = metrics.classification_report(interp.targets.numpy(), interp.preds.numpy(), labels=range(10),
                                             output_dict=True, zero_division=0)
    report = interp.classification_report()
    assert list(report.columns) == ["precision", "recall", "f1-score", "support"]
    assert list(report.index) == [str(c) for c in range(10)] + ["accuracy", "macro avg", "weighted avg"]
    for row in [str(c) for c in range(10)] + ["macro avg", "weighted avg"]:
        for column in ("precision", "recall", "f1-score"):
            assert report.loc[row, column] == pytest.approx(expected[row][column], abs=1e-12, rel=0)
        assert report.loc[row, "support"] == expected[row]["support"]
    assert report.loc["accuracy", "f1-score"] == pytest.approx(expected["accuracy"], abs=1e-12, rel=0)
    assert report.loc["accuracy", "support"] == 1797
    assert report.loc["accuracy", ["precision", "recall"]].isna().all()


def test_top_losses_are_the_largest_cross_entropies(digits, digits_interp):
    _, _, y, logits = digits
    reference = F.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(digits_interp.losses, reference, atol=1e-6)
    top = torch.topk(reference, 9)
    table = digits_interp.top_losses(9)
    assert list(table.columns) == ["index", "loss", "pred", "target"]
    assert table["index"].tolist() == top.indices.tolist()
    assert np.allclose(table["loss"].to_numpy(), top.values.numpy(), atol=1e-6)
    assert table["pred"].tolist() == logits.argmax(1)[top.indices].tolist()
    assert table["target"].tolist() == y[top.indices].tolist()
    assert len(digits_interp.top_losses(None)) == len(digits_interp.top_losses(5000)) == 1797


def test_most_confused_lists_the_off_diagonal_counts(digits_interp):
    counts = metrics.confusion_matrix(digits_interp.targets.numpy(), digits_interp.preds.numpy(), labels=range(10))
    expected = sorted(((str(t), str(p), int(counts[t, p])) for t in range(10) for p in range(10)
                       if t != p and counts[t, p] >= 2), key=lambda row: -row[2])
    assert digits_interp.most_confused(min_count=2) == expected
    assert sum(count for _, _, count in digits_interp.most_confused()) == (counts.sum() - np.trace(counts))


def test_one_hot_targets_and_a_dataloader_give_the_same_result(digits, digits_interp):
    model, x, y, _ = digits
    one_hot = kt.interpret(model, x, F.one_hot(y, 10).float())
    loader = kt.interpret(model, DataLoader(TensorDataset(x, y), batch_size=64))
    dataset = kt.interpret(model, TensorDataset(x, y), batch_size=500)
    collated = kt.interpret(model, DataLoader(list(zip(x, y)), batch_size=100))  # not a TensorDataset
    generator = kt.interpret(model, ((x[i:i + 100], y[i:i + 100]) for i in range(0, len(x), 100)))
    for other in (one_hot, loader, dataset, collated, generator):
        assert torch.equal(other.preds, digits_interp.preds)
        assert torch.equal(other.targets, digits_interp.targets)
        assert torch.allclose(other.losses, digits_interp.losses, atol=1e-6)


def test_softmax_outputs_are_read_as_probabilities(digits, digits_interp):
    model, x, y, _ = digits
    probabilities = kt.interpret(nn.Sequential(model, nn.Softmax(1)), x, y)
    assert probabilities.from_logits is False and digits_interp.from_logits is True
    assert torch.equal(probabilities.preds, digits_interp.preds)
    assert torch.allclose(probabilities.losses, digits_interp.losses, atol=1e-4)  # -log softmax = cross-entropy
    log_probabilities = kt.interpret(nn.Sequential(model, nn.LogSoftmax(1)), x, y)  # an "nll" model
    assert torch.allclose(log_probabilities.losses, digits_interp.losses, atol=1e-5)


def test_binary_logits_on_breast_cancer():
    data = datasets.load_breast_cancer()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target, dtype=torch.float32).unsqueeze(1)
    model = trained(nn.Linear(30, 1), "bce_with_logits", x, y)
    interp = kt.interpret(model, x, y, class_names=data.target_names)
    out = outputs(model, x)
    assert torch.equal(interp.preds, (out[:, 0] > 0).long())
    assert torch.equal(interp.targets, y[:, 0].long())
    assert torch.allclose(interp.losses, F.binary_cross_entropy_with_logits(out[:, 0], y[:, 0], reduction="none"),
                          atol=1e-6)
    expected = metrics.confusion_matrix(y[:, 0].numpy(), (out[:, 0] > 0).numpy(), labels=range(2))
    assert np.array_equal(interp.confusion_matrix().to_numpy(), expected)
    assert interp.class_names == ["malignant", "benign"]
    same = kt.interpret(model, x, y[:, 0].long())  # (N,) integer labels
    assert torch.equal(same.preds, interp.preds) and same.class_names == ["0", "1"]


@pytest.mark.parametrize(("loss", "preds"), [("bce", [0, 1, 0, 1]), ("bce_with_logits", [1, 1, 1, 1]),
                                             (None, [1, 1, 1, 1])])
def test_the_binary_threshold_follows_the_compiled_loss(loss, preds):
    scores = torch.tensor([[0.3], [0.7], [0.2], [0.9]])
    y = torch.tensor([0.0, 1.0, 1.0, 1.0])
    interp = kt.interpret(identity(loss)(1), scores, y)
    assert interp.preds.tolist() == preds
    expected = F.binary_cross_entropy(scores[:, 0], y, reduction="none") if loss == "bce" else \
        F.binary_cross_entropy_with_logits(scores[:, 0], y, reduction="none")
    assert torch.allclose(interp.losses, expected)
    assert interp.from_logits is (loss != "bce")


def test_sigmoid_outputs_with_bce_and_a_1d_output():
    torch.manual_seed(0)
    x = torch.randn(200, 4)
    y = (x[:, 0] + x[:, 1] > 0).float()
    model = trained(nn.Sequential(nn.Linear(4, 1), nn.Sigmoid(), nn.Flatten(0)), "bce", x, y)
    interp = kt.interpret(model, x, y)
    out = outputs(model, x)
    assert out.dim() == 1
    assert torch.equal(interp.preds, (out > 0.5).long())
    assert torch.allclose(interp.losses, F.binary_cross_entropy(out, y, reduction="none"), atol=1e-6)
    forced = kt.interpret(model, x, y, from_logits=True)
    assert torch.equal(forced.preds, (out > 0).long())


def test_equal_losses_are_ordered_by_index():
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    interp = kt.interpret(identity()(2), scores, torch.tensor([1, 1, 1, 0, 1]))
    assert interp.top_losses(5)["index"].tolist() == [4, 0, 2, 3, 1]
    assert interp.most_confused() == [("1", "0", 3), ("0", "1", 1)]


def test_plots_return_figures(digits, digits_interp):
    _, x, _, _ = digits
    figure = digits_interp.confusion_matrix(plot=True)
    assert len(figure.axes) == 1 and len(figure.axes[0].images) == 1
    assert len(figure.axes[0].texts) == 100
    assert figure._repr_png_()[1:4] == b"PNG"
    grid = digits_interp.plot_top_losses(x.view(-1, 8, 8), k=9)
    assert len(grid.axes) == 9 and all(len(axes.images) == 1 for axes in grid.axes)
    top = digits_interp.top_losses(1).iloc[0]
    assert grid.axes[0].get_title() == f"{int(top['pred'])}/{int(top['target'])}/{top['loss']:.2f}"
    colour = digits_interp.plot_top_losses(x.view(-1, 1, 8, 8).expand(-1, 3, -1, -1).numpy(), k=5)
    assert len(colour.axes) == 5 and colour.axes[0].images[0].get_array().shape == (8, 8, 3)


@pytest.mark.slow  # a fresh interpreter: another test of the suite may have imported pyplot in this one
def test_the_plots_never_import_pyplot():
    code = ("import sys, torch, kerastorch as kt; m = kt.Model.wrap(torch.nn.Identity()); "
            "i = kt.interpret(m, torch.eye(3) * 5, torch.arange(3)); i.confusion_matrix(plot=True)._repr_png_(); "
            "i.plot_top_losses(torch.rand(3, 4, 4), k=3)._repr_png_(); print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_train_mode_is_restored():
    model = identity("cross_entropy")(3)
    model.train()
    kt.interpret(model, torch.eye(3), torch.arange(3))
    assert model.training
    with pytest.raises(ValueError, match="must have shape"):  # raised inside the pass
        kt.interpret(model, torch.eye(3), torch.zeros(3, 2))
    assert model.training
    model.eval()
    with pytest.raises(ValueError, match="classification"):  # raised after the pass
        kt.interpret(model, torch.eye(3), torch.tensor([0.5, 1.0, 2.0]))
    assert not model.training


def test_repr_is_short(digits_interp):
    assert repr(digits_interp) == f"Interpretation(n=1797, classes=10, accuracy={digits_interp.accuracy:.4f})"
    assert "1797 samples" in digits_interp._repr_html_()


def test_missing_y_is_refused():
    with pytest.raises(ValueError, match=r"^`y` must be given when `x` is in-memory data .* Received: y=None"):
        kt.interpret(identity()(2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="must hold targets"):
        kt.interpret(identity()(2), TensorDataset(torch.zeros(4, 2)))


@pytest.mark.parametrize("y", [torch.randn(6, 1), torch.tensor([0.0, 1.0, 2.5, 1.0, 0.0, 1.0])])
def test_regression_targets_are_refused(y):
    columns = 1 if y.dim() == 2 else 3
    with pytest.raises(ValueError, match=r"^`y` must hold class labels.*interpret is for single-label "
                                         r"classification\. Received: y=tensor of shape"):
        kt.interpret(identity("mse")(columns), torch.randn(6, columns), y)


def test_out_of_range_classes_and_bad_arguments_are_refused():
    model = identity()(3)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        kt.interpret(model, torch.eye(3), torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match=r"^`class_names` must hold 3 different names.*Received: class_names="):
        kt.interpret(model, torch.eye(3), torch.arange(3), class_names=["a", "b"])
    interp = kt.interpret(model, torch.eye(3), torch.arange(3))
    with pytest.raises(ValueError, match=r"^`k` must be a positive integer\. Received: k=0$"):
        interp.top_losses(0)
    with pytest.raises(ValueError, match=r"^`k` must be a positive integer\. Received: k=-1$"):
        interp.plot_top_losses(torch.zeros(3, 4, 4), k=-1)
    with pytest.raises(ValueError, match=r"^`x` must hold the 3 interpreted samples as images"):
        interp.plot_top_losses(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"^`y` must have shape"):
        kt.interpret(model, torch.eye(3), torch.zeros(3, 2))


def test_interpretation_built_by_hand():
    interp = Interpretation(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.tensor([0.1, 0.2, 1.5]), ["a", "b"])
    assert interp.confusion_matrix().to_numpy().tolist() == [[1, 1], [0, 1]]
    assert interp.classification_report().loc["b", "precision"] == 0.5


@pytest.mark.slow  # a fresh interpreter imports torch: several seconds on a busy machine
def test_import_kerastorch_loads_neither_matplotlib_nor_sklearn():
    code = ("import sys, kerastorch; "
            "print(sorted({'matplotlib', 'sklearn', 'pandas'} & set(sys.modules)), kerastorch.interpret.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] interpret"
