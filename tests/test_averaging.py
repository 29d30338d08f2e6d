"""kerastorch.averaging: WeightAverage's updates against the formulas, exact in-place swaps, saved state,
BatchNorm recomputation against torch.optim.swa_utils.update_bn."""
import io

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from kerastorch.averaging import WeightAverage, averaged_weights, batchnorm_buffers, recompute_batchnorm
from support import TinyNet


def bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2), nn.BatchNorm1d(2))


def trajectory(module, steps, seed=1):
    """Random parameter values written into ``module`` one step at a time (a stand-in for training)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn(p.shape, generator=g))
        yield [p.detach().clone() for p in module.parameters()]


def test_ema_update_is_the_exponential_moving_average_and_the_first_update_copies():
    module, decay = TinyNet(), 0.8
    average = WeightAverage(module, "ema")
    expected = None
    for weights in trajectory(module, 6):
        average.update(1 - decay)
        expected = weights if expected is None else [decay * e + (1 - decay) * w for e, w in zip(expected, weights)]
    assert average.count == 6
    for got, want in zip(average.averages, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_equal_weight_updates_are_the_mean():
    module = TinyNet()
    average = WeightAverage(module, "swa")
    seen = []
    for weights in trajectory(module, 5):
        average.update(1 / (average.count + 1))
        seen.append(weights)
    for index, got in enumerate(average.averages):
        torch.testing.assert_close(got, torch.stack([w[index] for w in seen]).mean(0), rtol=0, atol=1e-6)


def test_the_averages_live_on_the_parameters_device_and_dtype():
    module = TinyNet().double()
    average = WeightAverage(module, "ema")
    assert [(a.device, a.dtype) for a in average.averages] == [(p.device, p.dtype) for p in module.parameters()]
    assert all(a.data_ptr() != p.data_ptr() for a, p in zip(average.averages, module.parameters()))


def test_swapped_in_writes_in_place_and_restores_exactly_also_after_an_exception():
    module = bn_net()
    average = WeightAverage(module, "swa")
    list(trajectory(module, 1))
    average.update(1.0)
    list(trajectory(module, 1))  # the module moves on: now its values differ from the average's
    before = {k: v.clone() for k, v in module.state_dict().items()}
    pointers = [t.data_ptr() for t in module.state_dict().values()]
    with average.swapped_in(module):
        assert all(torch.equal(p, a) for p, a in zip(module.parameters(), average.averages))
        assert [t.data_ptr() for t in module.state_dict().values()] == pointers  # no reallocation
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    with pytest.raises(ZeroDivisionError), average.swapped_in(module):
        _ = 1 / 0
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_swapped_in_is_reentrant_and_refuses_updates_meanwhile():
    module = TinyNet()
    average = WeightAverage(module, "ema")
    average.update(1.0)
    list(trajectory(module, 1))
    raw = module.fc.weight.detach().clone()
    with average.swapped_in(module):
        with average.swapped_in(module):  # nested: already swapped, nothing more happens
            assert torch.equal(module.fc.weight, average.averages[0])
        assert torch.equal(module.fc.weight, average.averages[0])
        with pytest.raises(RuntimeError, match="swapped into the model: updating the average now"):
            average.update(0.5)
    assert torch.equal(module.fc.weight, raw)


def test_swapping_into_a_different_module_or_before_any_update_is_refused():
    average = WeightAverage(TinyNet(), "ema")
    with pytest.raises(RuntimeError, match=r"The EMA average holds no weights yet \(no update so far\)"), \
            average.swapped_in(TinyNet()):
        pass
    average.update(1.0)
    with pytest.raises(RuntimeError, match=r"belong to a module with parameters \['fc.weight', 'fc.bias'\]; "
                                           r"this one has \['weight', 'bias'\]"), average.swapped_in(nn.Linear(2, 1)):
        pass


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match=r"`kind` must be one of \('ema', 'swa'\). Received: kind='mean'"):
        WeightAverage(TinyNet(), "mean")


def test_ema_keeps_no_buffers_swa_keeps_the_batchnorm_statistics():
    module = bn_net()
    assert WeightAverage(module, "ema").buffers == []
    swa = WeightAverage(module, "swa")
    assert swa.buffer_names == [name for name, _ in batchnorm_buffers(module)] == [
        "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "4.running_mean", "4.running_var", "4.num_batches_tracked"]


def test_state_dict_loads_with_weights_only_and_restores_the_average():
    module = bn_net()
    average = WeightAverage(module, "swa")
    for _ in trajectory(module, 3):
        average.update(1 / (average.count + 1))
    buffer = io.BytesIO()
    torch.save(average.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = WeightAverage(bn_net(), "swa")
    restored.load_state_dict(state)
    assert restored.count == 3
    held, saved = restored.averages + restored.buffers, average.averages + average.buffers
    assert all(torch.equal(a, b) for a, b in zip(held, saved))


def test_loading_the_state_of_another_average_names_the_fix():
    state = WeightAverage(TinyNet(), "ema").state_dict()
    with pytest.raises(RuntimeError, match=r"The saved EMA average of parameters \['fc.weight', 'fc.bias'\] does not "
                                           r"fit this SWA average .* resume with the same model and averaging"):
        WeightAverage(TinyNet(), "swa").load_state_dict(state)


def test_copy_to_writes_the_average_for_good():
    module = TinyNet()
    average = WeightAverage(module, "ema")
    average.update(1.0)
    list(trajectory(module, 1))
    average.copy_to(module)
    assert all(torch.equal(p, a) for p, a in zip(module.parameters(), average.averages))


def test_recompute_batchnorm_equals_torch_update_bn_and_restores_modes_and_momenta():
    ours, reference = bn_net(), bn_net()
    ours.eval()
    ours[4].train()  # a mixed state: each layer's own mode comes back
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(7, 3, generator=g) * 3 + 1 for _ in range(5)]
    assert recompute_batchnorm(ours, batches, ours) == 5
    update_bn(batches, reference)
    for (name, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert [m.training for m in ours.modules()] == [False, False, False, False, False, True]
    assert ours[1].momentum == 0.1 and ours[4].momentum == 0.1
    assert recompute_batchnorm(nn.Linear(3, 2), batches, lambda x: None) == 0  # no BatchNorm: nothing run


def test_averaged_weights_before_any_fit_names_the_fix():
    with pytest.raises(RuntimeError, match=r"needs weights averaged during fit, and no fit of this model has run an "
                                           r"averaging callback\. Train with one first, e\.g\. model\.fit\(\.\.\., "
                                           r"callbacks=\[kt\.callbacks\.EMA\(\)\]\)"), averaged_weights(TinyNet()):
        pass
