"""Models that compute their own loss (kerastorch.losses.model_loss), with plain torch modules.

The Hugging Face forms are mimicked: a dict with "loss" and "logits", an object with ``.loss`` and
``.logits``, a ``(loss, logits)`` tuple; tests/test_hf.py runs the real transformers models.
"""
import dataclasses
import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import kerastorch as kt
from kerastorch.losses.model_loss import carries_loss, model_predictions, split_output

torch.manual_seed(0)
X = torch.randn(12, 4)
Y = (X[:, 0] > 0).long()


@dataclasses.dataclass
class Output:
    """What a transformers ModelOutput looks like to attribute access."""
    loss: torch.Tensor | None
    logits: torch.Tensor


class SelfScoring(nn.Module):
    """A classifier whose forward computes its loss when given labels, in one of several output forms."""

    def __init__(self, form="dict", offset=0.0):
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(4, 2)
        self.form, self.offset = form, offset

    def forward(self, features, labels=None):
        logits = self.fc(features)
        loss = None if labels is None else F.cross_entropy(logits, labels) + self.offset
        if self.form == "dict":
            return {"logits": logits} if loss is None else {"loss": loss, "logits": logits}
        if self.form == "object":
            return Output(loss, logits)
        return (logits,) if loss is None else (loss, logits)


class Samples(torch.utils.data.Dataset):
    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        return {"features": X[i], "labels": Y[i]}


def loader(batch_size=4):
    return torch.utils.data.DataLoader(Samples(), batch_size=batch_size)


def hand_trained(epochs=2, lr=0.1):
    net = SelfScoring()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in loader():
            F.cross_entropy(net.fc(batch["features"]), batch["labels"]).backward()
            optimizer.step()
            optimizer.zero_grad()
    return net.fc.weight.detach()


@pytest.mark.parametrize("form", ["dict", "object", "tuple"])
def test_fit_trains_on_the_model_loss_and_metrics_get_the_logits(form):
    model = kt.Model.wrap(SelfScoring(form))
    model.compile("sgd", optimizer_kwargs={"lr": 0.1}, metrics=["accuracy"], device="cpu")
    history = model.fit(loader(), epochs=2, verbose=0, validation_data=loader())
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert torch.equal(model.fc.weight.detach(), hand_trained())
    logits = model.fc(X).detach()
    result = model.evaluate(loader())
    assert result["loss"] == pytest.approx(float(F.cross_entropy(logits, Y)), rel=1e-6)
    assert result["accuracy"] == pytest.approx(float((logits.argmax(1) == Y).float().mean()))


def test_predict_returns_the_logits_of_a_dict_with_a_loss_and_keeps_plain_dicts():
    model = kt.Model.wrap(SelfScoring("dict"))
    logits = model.fc(X).detach()
    assert torch.allclose(model.predict(loader()), logits)  # labels in the batch: {"loss", "logits"} -> logits
    assert torch.allclose(model.predict(X)["logits"], logits)  # no labels, no loss: the plain dict as it was


def test_split_output_rules():
    loss, logits = torch.tensor(0.5), torch.ones(3, 2)
    assert split_output({"loss": loss, "logits": logits}) == (logits, loss)
    assert split_output({"loss": loss, "scores": logits})[0] is logits  # no "logits": the first entry after the loss
    assert split_output(Output(loss, logits)) == (logits, loss)
    plain = OrderedDict(out=logits, aux=logits)  # e.g. torchvision's segmentation output: no loss, left as it is
    assert split_output(plain) == (plain, None) and model_predictions(plain) is plain
    assert split_output((loss, logits), y=torch.zeros(3)) == (logits, loss)
    assert split_output((loss, logits))[1] is None  # no targets: a plain multi-output tuple
    assert split_output((logits, logits), y=torch.zeros(3))[1] is None  # the first element is not a scalar
    assert split_output({"loss": None, "logits": logits}) == ({"loss": None, "logits": logits}, None)
    assert not carries_loss(logits, None) and carries_loss(Output(loss, logits), None)


def test_no_loss_anywhere_keeps_the_message_and_names_the_model_loss():
    model = kt.Model.wrap(SelfScoring("dict"))
    model.compile("sgd", device="cpu")
    with pytest.raises(RuntimeError, match=r"^No loss was compiled\. Call compile\(loss=\.\.\.\) before "
                                           r"fit/evaluate, or let the model compute its own loss: .*'labels' entry.*"
                                           r"Received: output dict \{'logits': tensor \(4, 2\)\}\. \(while running"):
        model.fit(X, verbose=0, batch_size=4)  # no labels: forward gets none, returns no loss
    plain = kt.Model.wrap(nn.Linear(4, 2))
    plain.compile("sgd", device="cpu")
    with pytest.raises(RuntimeError, match=r"'labels': \.\.\.}\)\. \(while running"):  # a tensor: no "Received"
        plain.fit(X, Y, verbose=0)
    assert plain.evaluate(X, Y) == {}  # evaluate without any loss logs nothing, as before


def test_a_compiled_loss_wins_once_per_fit_and_gets_the_logits():
    model = kt.Model.wrap(SelfScoring("dict", offset=10.0))  # its own loss is the cross entropy + 10
    model.compile("sgd", loss="cross_entropy", device="cpu")
    for _ in range(2):  # each fit says it once (training batches and validation passes together)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(loader(), epochs=2, validation_data=loader(), verbose=0)
        assert [str(w.message)[:60] for w in caught] == \
            ["The model returned its own loss (in its output dict) and a l"]
    logits = model.fc(X).detach()
    assert model.evaluate(loader())["loss"] == pytest.approx(float(F.cross_entropy(logits, Y)), rel=1e-6)
    assert model.history["loss"].max() < 10


def test_sample_weights_need_a_compiled_loss():
    class Weighted(Samples):
        def __getitem__(self, i):
            return {**super().__getitem__(i), "sample_weight": torch.tensor(2.0)}

    model = kt.Model.wrap(SelfScoring("dict"))
    model.compile("sgd", device="cpu")
    before = model.fc.weight.detach().clone()
    with pytest.raises(ValueError, match=r"`sample_weight` needs a compiled loss: the model's own loss is already "
                                         r"reduced"):
        model.fit(torch.utils.data.DataLoader(Weighted(), batch_size=4), verbose=0)
    assert torch.equal(model.fc.weight, before)


def test_a_model_loss_that_is_not_a_scalar_is_refused():
    class PerSample(SelfScoring):
        def forward(self, features, labels=None):
            logits = self.fc(features)
            return {"loss": F.cross_entropy(logits, labels, reduction="none"), "logits": logits}

    model = kt.Model.wrap(PerSample())
    model.compile("sgd", device="cpu")
    with pytest.raises(ValueError, match=r"The model's own loss must be a scalar \(0-dim\) tensor\. Received: loss "
                                         r"of shape \(4,\)\. Reduce it in forward"):
        model.fit(loader(), verbose=0)


def test_a_metric_that_cannot_read_the_predictions_fails_before_any_step():
    model = kt.Model.wrap(SelfScoring("dict"))
    model.compile("sgd", metrics=["mse"], device="cpu")  # (4, 2) logits against (4,) labels
    before = model.fc.weight.detach().clone()
    with pytest.raises(ValueError, match=r"same shape for metric MeanSquaredError.*in the metric 'mse'"):
        model.fit(loader(), verbose=0)
    assert torch.equal(model.fc.weight, before)
