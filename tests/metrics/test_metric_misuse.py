"""Metric misuse (issue 10, item 4): refused on the first batch, before the optimizer step a metric comes after."""
import pytest
import torch
from torch import nn

import kerastorch as kt
from misuse_support import assert_unchanged, snapshot


def classifier(metrics, classes=3):
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(4, classes))
    model.compile("adam", "cross_entropy", metrics=metrics, device="cpu")
    return model, torch.randn(12, 4), torch.arange(12) % classes


def test_top_k_larger_than_the_classes_is_refused_before_the_step():
    model, x, y = classifier([kt.metrics.TopKAccuracy(k=5)])
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"Top-k accuracy with k=5 needs at least 5 classes, but the model "
                                         r"outputs 3\. Received: output shape \(12, 3\)\. Use "
                                         r"TopKAccuracy\(k=\.\.\.\) with k <= 3"):
        model.fit(x, y, verbose=0)
    assert_unchanged(model, before)


def test_top_k_must_be_a_positive_integer():
    with pytest.raises(ValueError, match=r"`k` must be a positive integer\. Received: k=0"):
        kt.metrics.TopKAccuracy(k=0)


def test_a_metric_function_returning_none_is_refused_before_the_step():
    def forgot(y_pred, y_true):
        (y_pred.argmax(1) == y_true).float().mean()

    model, x, y = classifier({"acc": forgot})
    before = snapshot(model)
    with pytest.raises(TypeError, match=r"The metric function 'forgot' must return a tensor.*Received: None"):
        model.fit(x, y, verbose=0)
    assert_unchanged(model, before)


def test_a_metric_function_is_called_once_on_the_first_batch():
    calls = []

    def counted(y_pred, y_true):
        calls.append(y_pred.shape[0])
        return (y_pred.argmax(1) == y_true).float().mean()

    model, x, y = classifier({"acc": counted})
    history = model.fit(x, y, batch_size=4, verbose=0)
    assert calls == [4, 4, 4]  # the check's value is reused by the first update
    logits = model.predict(x)
    assert 0.0 <= history["acc"][0] <= 1.0 and logits.shape == (12, 3)


def test_a_metric_function_returning_a_number_is_allowed():
    model, x, y = classifier({"one": lambda y_pred, y_true: 1.0})
    assert model.fit(x, y, verbose=0)["one"].tolist() == [1.0]


def test_a_metric_class_instead_of_an_instance_says_add_parentheses():
    model = kt.Model.wrap(nn.Linear(4, 1))
    with pytest.raises(TypeError, match=r"A metric must be an object, not a class: pass AUC\(\)"):
        model.compile("adam", "bce_with_logits", metrics=[kt.metrics.AUC], device="cpu")
    assert model._config is None


def test_a_regression_metric_with_mismatched_targets_is_refused_before_the_step():
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(4, 2))
    model.compile("adam", "cross_entropy", metrics=["mae"], device="cpu")  # class indices: no MAE
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"same shape for metric MeanAbsoluteError.*output shape \(8, 2\), "
                                         r"target shape \(8,\)"):
        model.fit(torch.randn(8, 4), torch.arange(8) % 2, verbose=0)
    assert_unchanged(model, before)
