"""The "perplexity" metric: exp of the epoch's token-mean cross entropy from (logits, labels), -100 left out."""
import math

import pytest
import torch
from torch.nn import functional as F

from kerastorch import metrics


def token_losses(logits, labels):
    """Per-token cross entropy by hand, with the causal shift; None where the label is -100."""
    out = []
    for n in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            label = int(labels[n, t + 1])
            if label != -100:
                out.append(float(-torch.log_softmax(logits[n, t].double(), 0)[label]))
    return out


def test_the_name_is_registered():
    metric = metrics.get("perplexity")
    assert isinstance(metric, metrics.Perplexity) and metric.shift and metric.ignore_index == -100
    assert "perplexity" in metrics.available()


def test_uniform_logits_give_the_vocabulary_size():
    metric = metrics.Perplexity()
    metric.update(torch.zeros(2, 4, 7), torch.tensor([[1, 2, 3, -100], [4, 5, -100, -100]]))
    assert float(metric.result()) == pytest.approx(7.0)


def test_an_epoch_weighs_every_token_the_same_over_uneven_batches():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 6, 9), torch.randint(0, 9, (5, 6))
    labels[0, 3:] = labels[3, 5:] = -100
    metric = metrics.Perplexity()
    for part in (slice(0, 2), slice(2, 5)):
        metric.update(logits[part], labels[part])
    assert float(metric.result()) == pytest.approx(math.exp(sum(token_losses(logits, labels)) /
                                                            len(token_losses(logits, labels))), rel=1e-6)
    metric.reset()
    metric.update(logits, labels)  # a reset epoch starts over: exp of what GPT-2's loss computes
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 9), labels[:, 1:].reshape(-1), ignore_index=-100).exp()
    assert float(metric.result()) == pytest.approx(float(expected), rel=1e-6)


def test_without_the_shift_logits_and_labels_line_up():
    torch.manual_seed(1)
    logits, labels = torch.randn(3, 4, 5), torch.randint(0, 5, (3, 4))
    labels[1, 0] = -100
    metric = metrics.Perplexity(shift=False)
    metric.update(logits, labels)
    expected = F.cross_entropy(logits.reshape(-1, 5), labels.reshape(-1), ignore_index=-100).exp()
    assert float(metric.result()) == pytest.approx(float(expected), rel=1e-6)


def test_sample_weights_weigh_every_token_of_their_sample():
    torch.manual_seed(2)
    logits, labels = torch.randn(2, 3, 4), torch.randint(0, 4, (2, 3))
    metric = metrics.Perplexity()
    metric.update(logits, labels, torch.tensor([1.0, 3.0]))
    first, second = token_losses(logits[:1], labels[:1]), token_losses(logits[1:], labels[1:])
    expected = math.exp((sum(first) + 3 * sum(second)) / (len(first) + 3 * len(second)))
    assert float(metric.result()) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("logits, labels", [
    (torch.zeros(2, 5), torch.tensor([0, 1])),  # classification logits: no token dimension to shift
    (torch.zeros(2, 4, 5), torch.zeros(2, 4)),  # float labels
    (torch.zeros(2, 1, 5), torch.zeros(2, 1, dtype=torch.long)),  # one token: nothing to predict after the shift
])
def test_inputs_that_are_not_token_logits_and_labels_are_refused(logits, labels):
    with pytest.raises(ValueError, match=r"Perplexity needs \(N, T, V\) logits and \(N, T\) integer labels, T >= 2\. "
                                         r"Received: output shape"):
        metrics.Perplexity().check(logits, labels)
