"""Tests for kerastorch.losses.FocalLoss and its registry entry."""
import re

import pytest
import torch
import torch.nn.functional as F

from kerastorch import losses
from kerastorch.losses import FocalLoss


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _multiclass_batch(seed: int = 0, n: int = 6, c: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 2
    target = torch.randint(0, c, (n,), generator=g)
    return logits, target


# --- seed tutorial numbers -------------------------------------------------

def test_seed_hard_samples():
    loss = FocalLoss(gamma=2, alpha=0.75, from_logits=False)
    p, y = torch.tensor([[0.5], [0.5]]), torch.tensor([[1.0], [0.0]])
    # 0.75*0.25*ln2 and 0.25*0.25*ln2, averaged
    assert round(loss(p, y).item(), 4) == 0.0866


def test_seed_easy_samples():
    loss = FocalLoss(gamma=2, alpha=0.75, from_logits=False)
    p, y = torch.tensor([[0.9], [0.1]]), torch.tensor([[1.0], [0.0]])
    assert round(loss(p, y).item(), 4) == 0.0005


# --- gamma=0, alpha=None reduces to cross-entropy ---------------------------

def test_gamma0_binary_logits_equals_bce_with_logits():
    z = torch.randn(8, 3) * 3
    y = torch.rand(8, 3).round()
    got = FocalLoss(gamma=0, alpha=None)(z, y)
    torch.testing.assert_close(got, F.binary_cross_entropy_with_logits(z, y), rtol=0, atol=1e-6)


def test_gamma0_binary_soft_labels_equals_bce_with_logits():
    z, y = torch.randn(10) * 3, torch.rand(10)
    got = FocalLoss(gamma=0, alpha=None)(z, y)
    torch.testing.assert_close(got, F.binary_cross_entropy_with_logits(z, y), rtol=0, atol=1e-6)


def test_gamma0_binary_probs_equals_bce():
    p = torch.rand(8, 3) * 0.98 + 0.01
    y = torch.rand(8, 3).round()
    got = FocalLoss(gamma=0, alpha=None, from_logits=False)(p, y)
    torch.testing.assert_close(got, F.binary_cross_entropy(p, y), rtol=0, atol=1e-6)


def test_gamma0_multiclass_equals_cross_entropy():
    z, t = _multiclass_batch()
    got = FocalLoss(gamma=0, alpha=None)(z, t)
    torch.testing.assert_close(got, F.cross_entropy(z, t), rtol=0, atol=1e-6)


def test_gamma0_multiclass_ignore_index_equals_cross_entropy():
    z, t = _multiclass_batch()
    t[[1, 4]] = -100
    got = FocalLoss(gamma=0, alpha=None)(z, t)
    torch.testing.assert_close(got, F.cross_entropy(z, t, ignore_index=-100), rtol=0, atol=1e-6)


def test_gamma0_multiclass_spatial_equals_cross_entropy():
    z = torch.randn(2, 3, 4, 5)
    t = torch.randint(0, 3, (2, 4, 5))
    t[0, 0, :2] = 7
    got = FocalLoss(gamma=0, alpha=None, ignore_index=7)(z, t)
    torch.testing.assert_close(got, F.cross_entropy(z, t, ignore_index=7), rtol=0, atol=1e-6)


# --- logits vs probabilities -------------------------------------------------

def test_binary_logits_match_probabilities():
    z = torch.empty(20).uniform_(-4.9, 4.9)
    y = torch.rand(20).round()
    from_logits = FocalLoss(gamma=2, alpha=0.3)(z, y)
    from_probs = FocalLoss(gamma=2, alpha=0.3, from_logits=False)(torch.sigmoid(z), y)
    torch.testing.assert_close(from_logits, from_probs, rtol=0, atol=1e-5)


def test_multiclass_logits_match_probabilities():
    z = torch.empty(12, 5).uniform_(-4.9, 4.9)
    t = torch.randint(0, 5, (12,))
    from_logits = FocalLoss(gamma=1.5, alpha=None)(z, t)
    from_probs = FocalLoss(gamma=1.5, alpha=None, from_logits=False)(z.softmax(1), t)
    torch.testing.assert_close(from_logits, from_probs, rtol=0, atol=1e-5)


# --- numerical stability ---------------------------------------------------

@pytest.mark.parametrize("scale", [100.0, 1e4])
@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_binary_extreme_logits_finite(scale, gamma):
    z = torch.tensor([scale, -scale, scale, -scale], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])  # two right, two confidently wrong
    loss = FocalLoss(gamma=gamma)(z, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    # Confidently wrong: p_t ~ 0, so loss ~ alpha_t * |z|; mean over 4
    expected = (0.75 * scale + 0.25 * scale) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("scale", [100.0, 1e4])
@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_multiclass_extreme_logits_finite(scale, gamma):
    z = torch.tensor([[scale, -scale, 0.0], [scale, -scale, 0.0]], requires_grad=True)
    t = torch.tensor([0, 1])  # one right, one confidently wrong
    loss = FocalLoss(gamma=gamma, alpha=None)(z, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    assert loss.item() == pytest.approx(2 * scale / 2, rel=1e-4)


# --- ignore_index, reductions, alpha --------------------------------------

def _hand_focal(z, t, gamma, alpha_of):
    """Per-element focal loss computed one item at a time."""
    out = []
    for row, k in zip(z, t.tolist()):
        p = torch.softmax(row.double(), 0)[k].item()
        out.append(alpha_of(k) * (1 - p) ** gamma * -torch.log(torch.tensor(p)).item())
    return out


def test_multiclass_ignore_index_matches_hand_computation():
    z, t = _multiclass_batch(seed=1)
    t[[0, 3]] = -1
    got = FocalLoss(gamma=2, alpha=0.5, ignore_index=-1)(z, t)
    keep = [i for i in range(len(t)) if t[i] != -1]
    per_item = _hand_focal(z[keep], t[keep], 2.0, lambda k: 0.5)
    assert got.item() == pytest.approx(sum(per_item) / len(keep), abs=1e-6)


def test_multiclass_all_ignored_mean_is_zero():
    z = torch.randn(3, 4, requires_grad=True)
    loss = FocalLoss()(z, torch.full((3,), -100))
    loss.backward()
    assert loss.item() == 0.0 and (z.grad == 0).all()


def test_reductions_binary():
    z, y = torch.randn(4, 3), torch.rand(4, 3).round()
    none = FocalLoss(reduction="none")(z, y)
    assert none.shape == (4, 3)
    torch.testing.assert_close(FocalLoss(reduction="sum")(z, y), none.sum())
    torch.testing.assert_close(FocalLoss(reduction="mean")(z, y), none.mean())


def test_reductions_multiclass_with_ignore():
    z, t = _multiclass_batch(seed=2)
    t[2] = -100
    none = FocalLoss(reduction="none")(z, t)
    assert none.shape == t.shape and none[2].item() == 0.0
    torch.testing.assert_close(FocalLoss(reduction="sum")(z, t), none.sum())
    torch.testing.assert_close(FocalLoss(reduction="mean")(z, t), none.sum() / 5)


def test_per_class_alpha_matches_hand_computation():
    weights = [0.1, 0.2, 0.3, 0.4]
    z, t = _multiclass_batch(seed=3)
    got = FocalLoss(gamma=2, alpha=weights, reduction="none")(z, t)
    expected = _hand_focal(z, t, 2.0, lambda k: weights[k])
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32),
                               rtol=0, atol=1e-6)


def test_per_class_alpha_is_a_buffer_that_moves():
    loss = FocalLoss(alpha=[0.2, 0.8])
    assert "alpha" in dict(loss.named_buffers())
    assert "alpha" not in loss.state_dict()  # hyperparameter, not learned state
    assert loss.double().alpha.dtype == torch.float64


def test_per_class_alpha_wrong_length():
    with pytest.raises(ValueError, match="3 class weights but y_pred has 4 classes"):
        FocalLoss(alpha=[0.1, 0.2, 0.3])(*_multiclass_batch())


def test_per_class_alpha_rejected_in_binary_mode():
    with pytest.raises(ValueError, match="per-class alpha needs multiclass"):
        FocalLoss(alpha=[0.1, 0.9])(torch.randn(3), torch.ones(3))


# --- dtypes, errors, registry -------------------------------------------------

def test_bf16_inputs_give_float32_loss():
    z = torch.randn(4, 3, dtype=torch.bfloat16)
    assert FocalLoss()(z, torch.rand(4, 3).round().bfloat16()).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, t = _multiclass_batch()
        assert FocalLoss()(z.bfloat16(), t).dtype == torch.float32


def test_float64_stays_float64():
    z, t = _multiclass_batch()
    assert FocalLoss()(z.double(), t).dtype == torch.float64


def test_int32_targets_work():
    z, t = _multiclass_batch()
    torch.testing.assert_close(FocalLoss()(z, t.int()), FocalLoss()(z, t))


@pytest.mark.parametrize("y_pred, y_true", [
    (torch.randn(4, 1), torch.ones(4)),                  # (N,1) vs (N,) float
    (torch.randn(4, 3), torch.zeros(4, dtype=torch.float32)),  # float class indices
    (torch.randn(4, 3), torch.zeros(5, dtype=torch.long)),     # batch mismatch
])
def test_shape_mismatch_raises(y_pred, y_true):
    shapes = re.escape(str(tuple(y_pred.shape))) + ".*" + re.escape(str(tuple(y_true.shape)))
    with pytest.raises(ValueError, match=shapes):
        FocalLoss()(y_pred, y_true)


@pytest.mark.parametrize("kwargs, match", [
    ({"reduction": "avg"}, "reduction must be one of"),
    ({"gamma": -1}, "gamma must be >= 0"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ({"alpha": [0.5, -0.1]}, "per-class alpha must be >= 0"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FocalLoss(**kwargs)


def test_registry_returns_focal_loss():
    assert isinstance(losses.get("focal"), FocalLoss)
    assert "focal" in losses.available()
