"""The misuse cases that were still raw or late (issue 17): each is said before any optimizer step, names
the fix, and a refused call leaves weights, optimizer state, history and files as they were.

Frozen models train nothing (as Keras), non-finite data and negative weights are warned of before the
first step, a list of per-sample tensors and mis-shaped validation targets are refused up front, a
failing metric is named by its key, and AUC takes one-hot multi-class targets.
"""
import warnings

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

import kerastorch as kt
from misuse_support import assert_unchanged, snapshot


def data(n=20, features=3, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return x, x.sum(1, keepdim=True)


def fitted(tmp_path, **compile_kwargs):
    """A model trained one epoch with a CSV log, so a later refused call has something to keep."""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(3, 1))
    model.compile("adam", "mse", device="cpu", **compile_kwargs)
    model.fit(*data(), batch_size=5, verbose=0, callbacks=[kt.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
    return model


def recorded(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in caught]


@pytest.mark.parametrize("frozen", ["all_frozen", "no_parameters"])
def test_a_model_with_nothing_to_train_compiles_fits_evaluates_and_predicts(frozen):
    if frozen == "all_frozen":
        model = kt.Model.wrap(nn.Linear(3, 1)).requires_grad_(False)
        expected = "The model has no trainable parameters (all 2 of its parameter tensors are frozen)"
    else:
        model = kt.Model.wrap(nn.Identity())
        expected = "The model has no trainable parameters (it has no parameters)"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.compile("adam", "mse", metrics=["mae"], device="cpu", precision="bf16-mixed")  # as Keras: no error
    x, y = data(features=1 if frozen == "no_parameters" else 3)
    history, messages = recorded(lambda: model.fit(x, y, batch_size=5, epochs=2, verbose=0))
    assert [m for m in messages if "trainable" in m] == [expected + ": fit() runs the epochs and logs the loss "
                                                         "and metrics but changes no weight. To train, set "
                                                         "requires_grad_(True) on the parameters to train, then "
                                                         "compile() again; evaluate() and predict() work as they are."]
    assert list(history["epoch"]) == [1, 2]
    assert history["loss"].iloc[0] == pytest.approx(history["loss"].iloc[1], rel=1e-6)  # the same loss, reshuffled
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    expected_loss = torch.nn.functional.mse_loss(model.predict(x), y).item()
    assert model.evaluate(x, y)["loss"] == pytest.approx(expected_loss, rel=1e-2)  # bf16 forward


def test_nan_inputs_are_named_before_training_and_the_loss_warning_blames_the_batch():
    x, y = data()
    x[13, 1] = float("nan")  # batch 2 of 5-sample batches in order
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(3, 1))
    model.compile("sgd", "mse", device="cpu")
    _, messages = recorded(lambda: model.fit(x, y, batch_size=5, verbose=0, shuffle=False))
    assert messages[0] == ("`x` holds non-finite values (NaN or inf) in 1 sample (the first: sample 13). A batch "
                           "that holds one gets a non-finite loss (training stops there) or a NaN metric. Clean the "
                           "data first: e.g. x = torch.nan_to_num(x), or drop those rows (df.dropna()).")
    assert messages[1].startswith("Non-finite training loss at epoch 1, batch 2 ")
    assert messages[1].endswith("Batch 2 holds a sample of `x` with NaN or inf: the data, not the model, made the "
                                "loss non-finite (see the warning given before training).")
    assert model.history.empty or model._record.history_rows[-1]["epoch"] == 1


def test_the_shuffled_batch_holding_an_infinite_target_is_found_by_redrawing_the_epoch_order():
    x, y = data(40)
    y[29, 0] = float("inf")
    torch.manual_seed(5)
    model = kt.Model.wrap(nn.Linear(3, 1))
    model.compile("sgd", "mse", device="cpu")
    generator_seed = torch.initial_seed()
    _, messages = recorded(lambda: model.fit(x, y, batch_size=4, verbose=0))
    order = torch.randperm(40, generator=torch.Generator().manual_seed(int(model._record.generator.initial_seed())))
    expected_batch = int((order == 29).nonzero()) // 4  # the hand-drawn epoch order
    assert messages[0].startswith("`y` holds non-finite values (NaN or inf) in 1 sample (the first: sample 29).")
    assert f"batch {expected_batch} " in messages[1] and f"Batch {expected_batch} holds a sample of `y`" in messages[1]
    assert generator_seed == 5


def test_nan_in_validation_data_and_in_evaluate_data_is_said_before_the_first_batch():
    x, y = data()
    x_val = x.clone()
    x_val[0, 0] = float("inf")
    model = kt.Model.wrap(nn.Linear(3, 1))
    model.compile("sgd", "mse", device="cpu")
    _, messages = recorded(lambda: model.fit(x, y, verbose=0, validation_data=(x_val, y)))
    assert messages == ["`x_val` holds non-finite values (NaN or inf) in 1 sample (the first: sample 0). A batch "
                        "that holds one gets a non-finite loss (training stops there) or a NaN metric. Clean the "
                        "data first: e.g. x = torch.nan_to_num(x), or drop those rows (df.dropna())."]
    _, messages = recorded(lambda: model.evaluate(x_val, y))
    assert messages[0].startswith("`x` holds non-finite values (NaN or inf) in 1 sample (the first: sample 0).")


def test_negative_sample_weights_warn_before_the_first_step():
    x, y = data()
    weights = torch.ones(20)
    weights[[3, 7]] = -1.0
    model = kt.Model.wrap(nn.Linear(3, 1))
    model.compile("sgd", "mse", device="cpu")
    _, messages = recorded(lambda: model.fit(x, y, sample_weight=weights, verbose=0))
    assert messages == ["`sample_weight` holds negative values in 2 samples (the first: sample 3). A negative "
                        "weight makes the optimizer climb that sample's loss (gradient ascent), which is almost "
                        "always a bug. Pass weights >= 0, e.g. sample_weight.clamp(min=0)."]
    _, messages = recorded(lambda: model.fit(x, y, sample_weight=weights.abs(), verbose=0))
    assert messages == []


def test_a_list_of_per_sample_tensors_says_how_to_stack_it(tmp_path):
    model = fitted(tmp_path)
    before = snapshot(model, tmp_path)
    x, y = data()
    with pytest.raises(ValueError, match=r"^`x` is a Python list of 20 items \(the first of shape \(3,\)\), which "
                       r"kerastorch reads as 20 separate model inputs \(forward\(\*x\)\) of 3 samples each; `y` has "
                       r"20 samples. If each item is one sample, stack them into one tensor: x = torch.stack\(x\)"):
        model.fit(list(x), y, verbose=0)
    assert_unchanged(model, before, tmp_path)
    assert model.fit(torch.stack(list(x)), y, verbose=0).shape[0] == 2  # the advice works


def test_validation_targets_that_cannot_match_are_refused_before_the_first_step(tmp_path):
    model = fitted(tmp_path)
    before = snapshot(model, tmp_path)
    x, y = data()
    with pytest.raises(ValueError, match=r"^`validation_data` targets have shape \(3,\) per sample, but the training "
                       r"targets have \(1,\), so the validation loss could not compare them"):
        model.fit(x, y, verbose=0, validation_data=(x, torch.zeros(20, 3)),
                  callbacks=[kt.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
    assert_unchanged(model, before, tmp_path)
    model.fit(x, y, verbose=0, validation_data=(x, y.flatten()))  # (N,) against (N, 1): aligned, accepted


def test_a_failing_metric_is_named_by_its_key(tmp_path):
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(3, 1))
    model.compile("adam", "mse", metrics={"worst_feature": lambda y_pred, y: y_pred[:, 5].mean()}, device="cpu")
    before = snapshot(model, tmp_path)
    with pytest.raises(IndexError, match=r"index 5 is out of bounds for dimension 1 with size 1 \(in the metric "
                       r"'worst_feature' of compile\(metrics=\.\.\.\)\) \(while running training batch 0 of epoch 1"):
        model.fit(*data(), batch_size=5, verbose=0)
    assert_unchanged(model, before, tmp_path)  # the first-batch check runs before the optimizer step


def test_a_metric_failing_at_the_epoch_end_is_named_by_its_key():
    class Broken(kt.metrics.Metric):
        def update(self, y_pred, y_true, sample_weight=None):
            self._state("n", y_pred).add_(1)

        def result(self):
            raise ZeroDivisionError("no samples")

    model = kt.Model.wrap(nn.Linear(3, 1))
    model.compile("sgd", "mse", metrics={"ratio": Broken()}, device="cpu")
    with pytest.raises(ZeroDivisionError, match=r"^no samples \(computing the metric 'ratio' of "
                                                r"compile\(metrics=\.\.\.\) at the epoch's end\)$"):
        model.evaluate(*data())


def test_auc_takes_one_hot_multiclass_targets_as_one_vs_rest_macro():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 3, generator=g)
    labels = torch.arange(60) % 3
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    model = kt.Model.wrap(nn.Identity())
    model.compile("sgd", "cross_entropy", metrics=["auc"], device="cpu")
    expected = roc_auc_score(labels.numpy(), logits.softmax(1).numpy(), multi_class="ovr", average="macro")
    assert model.evaluate(logits, one_hot)["auc"] == pytest.approx(expected, abs=1e-12)
    assert model.evaluate(logits, labels)["auc"] == pytest.approx(expected, abs=1e-12)


def test_a_notebook_without_matplotlib_is_told_once_how_to_get_the_live_plot(monkeypatch):
    import importlib.util

    import kerastorch.engine.displays as displays
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(displays, "in_notebook", lambda: True)  # the environment, not the code under test
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib"
                        else real_find_spec(name, *a))
    monkeypatch.setattr(displays, "_SAID", set())
    model = kt.Model.wrap(nn.Linear(3, 1))
    model.compile("sgd", "mse", device="cpu")
    _, first = recorded(lambda: model.fit(*data(), verbose=2))
    _, second = recorded(lambda: model.fit(*data(), verbose=2))
    assert [m for m in first if "live plot" in m] == [
        "fit(plot='auto') draws no live plot: matplotlib is not installed. Get it with `pip install "
        "kerastorch[notebook]` (widgets and plots), or pass plot=False to silence this."]
    assert [m for m in second if "live plot" in m] == []
