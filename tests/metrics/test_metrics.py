"""Epoch metrics equal whole-data metrics, also with an uneven last batch (10 samples, batch 8)."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from torch import nn

import kerastorch as kt
from kerastorch import metrics as M


class Fixed(kt.Model):
    """Returns a precomputed output row per sample index, so metrics see known predictions."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = nn.Parameter(outputs.clone(), requires_grad=False)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, index):
        return self.outputs[index] + 0 * self.dummy


def evaluate_fixed(outputs, targets, metrics, loss="mse", batch_size=8, **kw):
    model = Fixed(outputs)
    model.compile("sgd", loss, metrics, device="cpu")
    return model.evaluate(torch.arange(len(targets)), targets, batch_size=batch_size, **kw)


def test_binary_metrics_exact_over_uneven_batches():
    torch.manual_seed(0)
    probs = torch.rand(10, 1)
    y = torch.tensor([1., 0, 1, 1, 0, 0, 1, 0, 1, 1])
    logs = evaluate_fixed(probs, y, ["accuracy", "auc", "precision", "recall", "f1", "mae", "mse", "rmse"], loss="bce")
    p, t = probs.squeeze(1).numpy(), y.numpy()
    pred = (p > 0.5).astype(float)
    assert logs["accuracy"] == pytest.approx((pred == t).mean(), abs=1e-6)
    assert logs["auc"] == pytest.approx(roc_auc_score(t, p), abs=1e-6)
    assert logs["precision"] == pytest.approx(precision_score(t, pred), abs=1e-6)
    assert logs["recall"] == pytest.approx(recall_score(t, pred), abs=1e-6)
    assert logs["f1"] == pytest.approx(f1_score(t, pred), abs=1e-6)
    assert logs["mae"] == pytest.approx(np.abs(p - t).mean(), abs=1e-6)
    assert logs["mse"] == pytest.approx(((p - t) ** 2).mean(), abs=1e-6)
    assert logs["rmse"] == pytest.approx(math.sqrt(((p - t) ** 2).mean()), abs=1e-6)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    assert logs["loss"] == pytest.approx(bce, abs=1e-6)


def test_auc_with_ties_matches_sklearn():
    scores = torch.tensor([[0.1], [0.4], [0.4], [0.8], [0.8], [0.8], [0.2], [0.9], [0.4], [0.3]])
    y = torch.tensor([0., 1, 0, 1, 0, 1, 0, 1, 1, 0])
    logs = evaluate_fixed(scores, y, ["auc"], loss="bce")
    assert logs["auc"] == pytest.approx(roc_auc_score(y.numpy(), scores.squeeze(1).numpy()), abs=1e-9)


def test_logits_rule_follows_the_loss():
    logits = torch.tensor([[-0.2], [0.3], [2.0], [-3.0]])
    y = torch.tensor([0., 1, 1, 1])
    # As logits (bce_with_logits): predicted positive when > 0 -> [0, 1, 1, 0] -> 3/4 correct.
    assert evaluate_fixed(logits, y, ["binary_accuracy"], loss="bce_with_logits")["binary_accuracy"] == 0.75
    # As probabilities (mse): positive when > 0.5 -> [0, 0, 1, 0] -> 2/4 correct.
    assert evaluate_fixed(logits, y, ["binary_accuracy"], loss="mse")["binary_accuracy"] == 0.5
    # An explicit metric object overrides the rule.
    explicit = M.BinaryAccuracy(from_logits=True)
    assert evaluate_fixed(logits, y, {"acc": explicit}, loss="mse")["acc"] == 0.75


def test_multiclass_metrics_exact():
    torch.manual_seed(3)
    logits = torch.randn(10, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3, 3])
    logs = evaluate_fixed(logits, y, ["accuracy", "sparse_categorical_accuracy", "precision", "recall", "f1"],
                          loss="cross_entropy")
    pred = logits.argmax(1).numpy()
    acc = (pred == y.numpy()).mean()
    assert logs["accuracy"] == pytest.approx(acc, abs=1e-6)
    assert logs["sparse_categorical_accuracy"] == pytest.approx(acc, abs=1e-6)
    assert logs["precision"] == pytest.approx(precision_score(y, pred, average="macro", zero_division=0), abs=1e-6)
    assert logs["recall"] == pytest.approx(recall_score(y, pred, average="macro", zero_division=0), abs=1e-6)
    assert logs["f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-6)
    assert logs["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), abs=1e-6)


def test_top_k_and_categorical_accuracy():
    logits = torch.tensor([[3., 2, 1, 0], [0, 1, 2, 3], [1, 3, 2, 0]])
    y = torch.tensor([1, 0, 2])
    top2 = M.TopKAccuracy(k=2)
    top2.update(logits, y)
    assert float(top2.result()) == pytest.approx(2 / 3)  # 1 in {0,1}: yes; 0 in {3,2}: no; 2 in {1,2}: yes
    onehot = nn.functional.one_hot(y, 4).float()
    cat = M.get("categorical_accuracy")
    cat.update(logits, onehot)
    assert float(cat.result()) == pytest.approx(0.0)  # argmaxes are 0, 3, 1 against 1, 0, 2


def test_function_metric_is_sample_weighted_mean():
    values = torch.arange(10.).reshape(10, 1)
    y = torch.zeros(10)

    def mean_output(y_pred, y_true):
        return y_pred.mean()
    # Per-batch means 3.5 (8 samples) and 8.5 (2 samples); the epoch value is the mean of all: 4.5,
    # not the mean of the batch means (6.0).
    logs = evaluate_fixed(values, y, {"m": mean_output})
    assert logs["m"] == pytest.approx(4.5, abs=1e-9)


def test_sample_weights_in_metrics_and_loss():
    preds = torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    y = torch.tensor([1., 1, 0, 0])
    w = torch.tensor([1., 3, 1, 0])
    logs = evaluate_fixed(preds, y, ["binary_accuracy"], loss="mse", sample_weight=w, batch_size=3)
    # correct: [1, 0, 1, 0] weighted by [1, 3, 1, 0] -> 2 / 5
    assert logs["binary_accuracy"] == pytest.approx(0.4)
    # mse per sample [0, 1, 0, 1]; Keras weighting: sum(l*w)/n per batch, batches (3 and 1 samples):
    # batch 1: (0*1 + 1*3 + 0*1)/3 = 1, batch 2: (1*0)/1 = 0 -> epoch mean (1*3 + 0*1)/4 = 0.75
    assert logs["loss"] == pytest.approx(0.75)


def test_torchmetrics_adapter():
    torchmetrics = pytest.importorskip("torchmetrics")
    torch.manual_seed(0)
    probs = torch.rand(10, 1)
    y = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1]).float()
    logs = evaluate_fixed(probs, y, {"tm_acc": torchmetrics.classification.BinaryAccuracy()}, loss="bce")
    assert logs["tm_acc"] == pytest.approx(((probs.squeeze(1) > 0.5).float() == y).float().mean().item(), abs=1e-6)


def test_unknown_metric_name():
    with pytest.raises(ValueError, match="Unknown metric name 'acuracy'"):
        M.get("acuracy")


def test_metric_reset_zeroes_in_place():
    metric = M.get("mae")
    metric.update(torch.ones(4, 1), torch.zeros(4, 1))
    state = metric._states["total"]
    metric.reset()
    assert metric._states["total"] is state and float(state) == 0.0
