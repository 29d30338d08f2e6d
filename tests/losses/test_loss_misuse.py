"""Misuse of losses (issue 10, items 2 and 4): refused on the first batch of the call, before any optimizer step.

Every refusal leaves the weights, the optimizer state, the history and the step count as they
were (``misuse_support``): each model first trains one epoch, so there is state to lose.
"""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import kerastorch as kt
from misuse_support import assert_unchanged, snapshot


def trained(out=1, loss="mse", n=16, **compile_kwargs):
    """A 4 -> out model compiled with ``loss`` and trained one epoch on matching data."""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, out)))
    model.compile("adam", loss, device="cpu", **compile_kwargs)
    x = torch.randn(n, 4)
    if loss in ("cross_entropy", "nll"):
        y = torch.arange(n) % out
    elif loss in ("bce", "bce_with_logits"):
        y = (x[:, :1] > 0).float()
    else:
        y = torch.randn(n, out)
    if loss == "bce":  # probabilities: the output goes through a sigmoid
        model = kt.Model.wrap(nn.Sequential(nn.Linear(4, out), nn.Sigmoid()))
        model.compile("adam", loss, device="cpu", **compile_kwargs)
    model.fit(x, y, batch_size=8, verbose=0)
    return model, x


# ---------------------------------------------------------------- item 2: shapes on every call
SHAPE = "must have the same shape for loss 'mse'"


def test_a_second_fit_with_targets_that_cannot_match_is_refused():
    model, x = trained()
    before = snapshot(model)
    with pytest.raises(ValueError, match=rf"{SHAPE}.*output shape \(8, 1\), target shape \(8, 3\)"):
        model.fit(x, torch.randn(16, 3), batch_size=8, verbose=0)
    assert_unchanged(model, before)


def test_validation_targets_are_checked_even_when_training_targets_were_aligned():
    # training y (N,) is aligned to (N, 1); validation y (N, 2) must not reuse that decision
    model, x = trained()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"`validation_data` targets have shape \(2,\) per sample, but the "
                       r"training targets have \(\), so the validation loss could not compare them"):
        model.fit(x, torch.randn(16), batch_size=8, epochs=1, verbose=0,
                  validation_data=(x, torch.randn(16, 2)))
    # refused before the first training step (it used to fail after the training epoch)
    assert_unchanged(model, before)


def test_evaluate_after_fit_checks_its_own_targets():
    model, x = trained()
    before = snapshot(model)
    with pytest.raises(ValueError, match=rf"{SHAPE}.*target shape \(8, 1, 1\).*evaluation batch 0"):
        model.evaluate(x, torch.randn(16, 1, 1), batch_size=8)
    assert_unchanged(model, before)


def test_evaluate_with_column_targets_after_fit_with_vector_targets_is_exact():
    # the alignment decision is per call: (N,) in fit, (N, 1) in evaluate, (N,) again: no (N, N) broadcast
    model, x = trained()
    y = torch.randn(16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when mse broadcasts
        model.fit(x, y, batch_size=8, verbose=0)
        column = model.evaluate(x, y[:, None], batch_size=16)["loss"]
        vector = model.evaluate(x, y, batch_size=16)["loss"]
    expected = torch.nn.functional.mse_loss(model.predict(x), y[:, None]).item()
    assert column == pytest.approx(expected, rel=1e-6) and vector == pytest.approx(expected, rel=1e-6)


def test_an_evaluate_inside_fit_leaves_the_training_alignment_alone():
    model, x = trained()
    y = torch.randn(16)

    class EvaluateWithColumns(kt.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.evaluate(x, y[:, None], batch_size=16)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[EvaluateWithColumns()])
    assert len(history) == 3 and np.isfinite(history["loss"]).all()


# ---------------------------------------------------------------- item 4: binary losses
def test_integer_labels_with_bce_with_logits_say_cast_or_use_cross_entropy():
    model, x = trained(loss="bce_with_logits")
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"'bce_with_logits' needs float targets.*dtype torch.int64.*y.float\(\)"
                                         r".*loss='cross_entropy'"):
        model.fit(x, (x[:, :1] > 0).long(), batch_size=8, verbose=0)
    assert_unchanged(model, before)


def test_bce_on_logits_says_use_bce_with_logits():
    torch.manual_seed(0)
    logits = kt.Model.wrap(nn.Linear(4, 1))  # no sigmoid: the outputs are logits
    logits.compile("adam", "bce", device="cpu")
    x = torch.randn(16, 4) * 10
    before = snapshot(logits)
    with pytest.raises(ValueError, match=r"'bce' expects probabilities in \[0, 1\].*range from .* to .*"
                                         r"logits\. Use loss='bce_with_logits'"):
        logits.fit(x, (x[:, :1] > 0).float(), batch_size=8, verbose=0)
    assert_unchanged(logits, before)


@pytest.mark.parametrize("labels", [[-1.0, 1.0], [0.0, 2.0]])
def test_binary_targets_outside_0_1_are_refused(labels):
    model, x = trained(loss="bce_with_logits")
    before = snapshot(model)
    y = torch.tensor(labels).repeat(8)[:, None]
    with pytest.raises(ValueError, match=rf"expects targets in \[0, 1\]\. Received: targets from {labels[0]:g} "
                                         rf"to {labels[1]:g}.*\(y \+ 1\) / 2"):
        model.fit(x, y, batch_size=8, verbose=0)
    assert_unchanged(model, before)


# ---------------------------------------------------------------- item 4: class-index losses
def test_cross_entropy_with_integer_one_hot_targets_says_argmax_or_float():
    model, x = trained(out=3, loss="cross_entropy")
    before = snapshot(model)
    one_hot = nn.functional.one_hot(torch.arange(16) % 3, 3)
    with pytest.raises(ValueError, match=r"integer targets of the output's shape \(8, 3\): one-hot labels.*"
                                         r"y\.argmax\(1\).*y\.float\(\)"):
        model.fit(x, one_hot, batch_size=8, verbose=0)
    assert_unchanged(model, before)


def test_cross_entropy_with_float_one_hot_targets_is_allowed():
    model, x = trained(out=3, loss="cross_entropy")
    one_hot = nn.functional.one_hot(torch.arange(16) % 3, 3).float()
    assert len(model.fit(x, one_hot, batch_size=8, verbose=0)) == 2


def test_a_class_index_beyond_the_outputs_names_both_counts():
    model, x = trained(out=3, loss="cross_entropy")
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"got class index 4, but the model outputs 3 classes \(indices 0 to 2\)"
                                         r".*targets from 0 to 4.*Give the last layer 5 outputs"):
        model.fit(x, torch.arange(16) % 5, batch_size=16, verbose=0)
    assert_unchanged(model, before)


def test_float_class_indices_say_long():
    model, x = trained(out=3, loss="cross_entropy")
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"expects integer class indices.*y\.long\(\)"):
        model.fit(x, (torch.arange(16) % 3).float(), batch_size=8, verbose=0)
    assert_unchanged(model, before)


def test_cross_entropy_on_softmax_outputs_warns_once_per_call():
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)))
    model.compile("adam", "cross_entropy", device="cpu")
    with pytest.warns(UserWarning, match=r"expects logits.*sums to 1.*softmax is applied twice") as record:
        model.fit(torch.randn(16, 4), torch.arange(16) % 3, batch_size=4, epochs=2, verbose=0)
    assert sum("expects logits" in str(w.message) for w in record) == 1


# ---------------------------------------------------------------- item 4: outputs
class ForgetsReturn(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        self.fc(x)


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 1), nn.Linear(4, 2)

    def forward(self, x):
        return self.a(x), self.b(x)


def test_a_forward_returning_none_says_add_return():
    model = kt.Model.wrap(ForgetsReturn())
    model.compile("adam", "mse", device="cpu")
    before = snapshot(model)
    with pytest.raises(TypeError, match=r"forward returned None.*Received: output=None.*Return the output"):
        model.fit(torch.randn(8, 4), torch.randn(8, 1), verbose=0)
    assert_unchanged(model, before)


def test_two_outputs_and_one_builtin_loss_say_one_loss_per_output():
    model = kt.Model.wrap(TwoHeads())
    model.compile("adam", "mse", device="cpu")
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"returned 2 outputs \(a tuple\) but one loss, 'mse'.*"
                                         r"tensor \(8, 1\), tensor \(8, 2\).*loss=\['mse', 'mse'\]"):
        model.fit(torch.randn(8, 4), torch.randn(8, 1), verbose=0)
    assert_unchanged(model, before)


def test_more_outputs_than_a_list_of_losses_is_refused():
    model = kt.Model.wrap(TwoHeads())
    model.compile("adam", ["mse"], device="cpu")
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"returned 2 outputs but 1 losses were compiled"):
        model.fit(torch.randn(8, 4), (torch.randn(8, 1),), verbose=0)
    assert_unchanged(model, before)


def test_a_user_loss_function_may_take_several_outputs():
    # allowed: a function loss decides what it takes (e.g. a VAE's (reconstruction, mu, logvar))
    model = kt.Model.wrap(TwoHeads())
    model.compile("sgd", lambda out, y: (out[0] - y).pow(2).mean() + out[1].pow(2).mean(), device="cpu")
    assert len(model.fit(torch.randn(8, 4), torch.randn(8, 1), verbose=0)) == 1


# ---------------------------------------------------------------- item 4: class weights
def test_class_weight_may_leave_a_class_out_which_weighs_one_as_in_keras():
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(4, 3))
    model.compile("sgd", "cross_entropy", optimizer_kwargs={"lr": 0.0}, device="cpu")
    x, y = torch.randn(8, 4), torch.arange(8) % 3
    history = model.fit(x, y, batch_size=8, verbose=0, class_weight={"0": 1.0, 1.0: 2.0})  # Keras's key forms too
    per_sample = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
    weights = torch.tensor([1.0, 2.0, 1.0])[y]  # class 2 left out: weight 1
    assert history["loss"].iloc[0] == pytest.approx(((per_sample * weights).sum() / 8).item(), rel=1e-6)


def test_class_weight_with_a_key_beyond_the_classes_is_refused():
    model = kt.Model.wrap(nn.Linear(4, 1))
    model.compile("adam", "bce_with_logits", class_weight={0: 1.0, 1: 2.0, 2: 3.0}, device="cpu")
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"keys must be classes of the output: 0 to 1 \(2 classes.*key\(s\) \[2\] "
                                         r"are not classes"):
        model.fit(torch.randn(8, 4), torch.ones(8, 1), verbose=0)
    assert_unchanged(model, before)


def test_class_weight_with_numpy_keys_and_one_hot_targets_weighs_by_argmax():
    # sklearn's compute_class_weight gives NumPy keys; one-hot targets take the class of their argmax
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(4, 3))
    model.compile("sgd", "cross_entropy", class_weight={np.int64(0): 1.0, np.int64(1): 3.0, np.int64(2): 1.0},
                  device="cpu")
    x, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 1, 0, 2])
    one_hot = nn.functional.one_hot(labels, 3).float()
    got = model.evaluate(x, one_hot, batch_size=6)["loss"]
    per_sample = nn.functional.cross_entropy(model.predict(x), labels, reduction="none")
    assert got == pytest.approx((per_sample * torch.tensor([1.0, 3, 1, 3, 1, 1])).mean().item(), rel=1e-6)
