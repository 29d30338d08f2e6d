"""Tests for kerastorch.regularizers: selection, values, gradients, errors."""
import copy

import pytest
import torch
from torch import nn

from kerastorch import regularizers
from kerastorch.regularizers import L1, L1L2, L2, BoundPenalty, bind


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))


def _names(penalty: BoundPenalty) -> list[str]:
    return [name for name, _ in penalty.parameters]


# --- values ----------------------------------------------------------------

def test_l2_default_covers_weights_only():
    model = _mlp()
    penalty = L2(0.1).bind(model)
    assert _names(penalty) == ["0.weight", "2.weight"]
    w0, w2 = model[0].weight, model[2].weight
    expected = 0.5 * 0.1 * ((w0 ** 2).sum() + (w2 ** 2).sum())
    torch.testing.assert_close(penalty(), expected)


def test_l1_default_covers_weights_only():
    model = _mlp()
    expected = 0.01 * (model[0].weight.abs().sum() + model[2].weight.abs().sum())
    torch.testing.assert_close(L1(0.01).bind(model)(), expected)


def test_l1l2_is_l1_plus_l2():
    model = _mlp()
    both = L1L2(l1=0.01, l2=0.1).bind(model)()
    torch.testing.assert_close(both, L1(0.01).bind(model)() + L2(0.1).bind(model)())


def test_zero_coefficients_give_zero():
    penalty = L1L2().bind(_mlp())
    assert penalty().item() == 0.0 and penalty().shape == ()


def test_embedding_and_norm_layers():
    model = nn.ModuleDict({"emb": nn.Embedding(10, 3), "ln": nn.LayerNorm(3),
                           "gn": nn.GroupNorm(1, 3), "inorm": nn.InstanceNorm1d(3, affine=True)})
    assert _names(L2().bind(model)) == ["emb.weight"]


def test_frozen_parameters_are_skipped():
    model = _mlp()
    model[0].weight.requires_grad_(False)
    assert _names(L2().bind(model)) == ["2.weight"]


# --- include / exclude -------------------------------------------------------

def test_include_glob_replaces_default():
    model = _mlp()
    penalty = L2(1.0, include="*.bias").bind(model)
    assert _names(penalty) == ["0.bias", "1.bias", "2.bias"]
    expected = 0.5 * sum((model[i].bias ** 2).sum() for i in range(3))
    torch.testing.assert_close(penalty(), expected)


def test_exclude_glob():
    assert _names(L2(exclude="2.*").bind(_mlp())) == ["0.weight"]


def test_include_module_type_and_exclude_glob():
    penalty = L1(include=nn.Linear, exclude="*.bias").bind(_mlp())
    assert _names(penalty) == ["0.weight", "2.weight"]


def test_include_mixed_list():
    penalty = L2(include=[nn.BatchNorm1d, "0.weight"]).bind(_mlp())
    assert _names(penalty) == ["0.weight", "1.weight", "1.bias"]


def test_exclude_module_type():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    assert _names(L2(exclude=nn.Embedding).bind(model)) == ["1.weight"]


# --- bind() specs --------------------------------------------------------------

def test_dict_targets_submodule():
    model = _mlp()
    penalty = bind({"2": L2(0.3)}, model)
    assert _names(penalty) == ["2.weight"]
    torch.testing.assert_close(penalty(), 0.15 * (model[2].weight ** 2).sum())


def test_dict_empty_name_is_whole_model():
    model = _mlp()
    torch.testing.assert_close(bind({"": L2(0.1)}, model)(), L2(0.1).bind(model)())


def test_list_penalties_add():
    model = _mlp()
    penalty = bind([L1(0.01), {"0": L2(0.2)}], model)
    expected = L1(0.01).bind(model)() + 0.1 * (model[0].weight ** 2).sum()
    torch.testing.assert_close(penalty(), expected)


def test_none_and_empty_specs_give_none():
    assert bind(None, _mlp()) is None
    assert bind([], _mlp()) is None
    assert bind({}, _mlp()) is None


def test_shared_parameter_counted_once():
    shared = nn.Linear(3, 3, bias=False)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    tied = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    tied[1].weight = tied[0].weight
    for m in (model, tied):
        penalty = L2(1.0).bind(m)
        assert len(penalty.parameters) == 1
        torch.testing.assert_close(penalty(), 0.5 * (m[0].weight ** 2).sum())


def test_follows_dtype_change_after_bind():
    model = _mlp()
    penalty = L2(0.1).bind(model)
    weight = model[0].weight
    model.double()
    assert model[0].weight is weight  # Module._apply keeps parameter identity
    value = penalty()
    assert value.dtype == torch.float64
    expected = 0.05 * ((model[0].weight ** 2).sum() + (model[2].weight ** 2).sum())
    torch.testing.assert_close(value, expected)


# --- gradients ---------------------------------------------------------------

def test_l2_gradient_is_l2_times_w():
    model = _mlp()
    L2(0.3).bind(model)().backward()
    for lin in (model[0], model[2]):
        torch.testing.assert_close(lin.weight.grad, 0.3 * lin.weight.detach(),
                                   rtol=0, atol=1e-6)
        assert lin.bias.grad is None or (lin.bias.grad == 0).all()
    assert model[1].weight.grad is None


def test_l1_gradient_is_l1_times_sign():
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight[0, 0] = 0.0
    L1(0.5).bind(model)().backward()
    torch.testing.assert_close(model.weight.grad, 0.5 * model.weight.detach().sign())


def test_sgd_step_with_l2_equals_weight_decay():
    l2, lr = 0.05, 0.1
    x, y = torch.randn(8, 4), torch.randn(8, 2)
    model_a = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    model_b = copy.deepcopy(model_a)

    penalty = L2(l2).bind(model_a)
    opt_a = torch.optim.SGD(model_a.parameters(), lr=lr)
    loss = nn.functional.mse_loss(model_a(x), y) + penalty()
    loss.backward()
    opt_a.step()

    weights = [p for n, p in model_b.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model_b.named_parameters() if n.endswith("bias")]
    opt_b = torch.optim.SGD([{"params": weights, "weight_decay": l2},
                             {"params": biases, "weight_decay": 0.0}], lr=lr)
    nn.functional.mse_loss(model_b(x), y).backward()
    opt_b.step()

    for (name, pa), pb in zip(model_a.named_parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6, msg=name)


# --- errors -------------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda: L1(-0.1), "l1 must be a finite number >= 0"),
    (lambda: L2(float("nan")), "l2 must be a finite number >= 0"),
    (lambda: L1L2(l1=0.1, l2=-1), "l2 must be a finite number >= 0"),
])
def test_negative_coefficient_raises(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_empty_selection_raises():
    with pytest.raises(ValueError, match="L2 regularizer selects no parameters"):
        L2(include="nothing.*").bind(_mlp())


def test_unknown_submodule_lists_valid_names():
    with pytest.raises(ValueError, match=r"no submodule named 'enc'; valid names: '', '0', '1', '2'"):
        bind({"enc": L2()}, _mlp())


@pytest.mark.parametrize("spec", [0.01, "l2", {"0": 0.01}])
def test_bad_spec_type_raises(spec):
    with pytest.raises(TypeError, match="regularizers"):
        bind(spec, _mlp())


def test_bad_selector_type_raises():
    with pytest.raises(TypeError, match="include= takes a glob string"):
        L2(include=3)


def test_lazy_parameters_raise():
    model = nn.Sequential(nn.LazyLinear(3))
    with pytest.raises(ValueError, match="bind after one forward pass"):
        L2().bind(model)


def test_module_exports():
    assert issubclass(L1L2, regularizers.Regularizer)
    assert repr(L2(0.5, exclude="fc*")) == "L2(l2=0.5, exclude=['fc*'])"
