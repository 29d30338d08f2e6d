"""compile(strategy=...) in one process: argument checks, the FSDP sharding plan, the deprecated
data_parallel=, and the FSDP helpers' single-process fallbacks (2-process FSDP: tests/distributed/test_fsdp.py)."""
import warnings

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.fsdp import (
    FSDP,
    check_shardable,
    full_model_state,
    full_optimizer_state,
    is_sharded,
    mixed_precision_policy,
    sharded_bytes,
    sharding_plan,
)
from kerastorch.strategy import DataParallelIds, legacy_strategy, resolve_strategy


class Block(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.inner = nn.Linear(width, width)

    def forward(self, x):
        return self.inner(x)


class Tower(nn.Module):
    """A block holding blocks: nested units are sharded before the unit around them."""

    def __init__(self):
        super().__init__()
        self.first, self.second = Block(), Block()

    def forward(self, x):
        return self.second(self.first(x))


class Net(kt.Model):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 8)                                   # 40 parameters
        self.layers = nn.ModuleList([Block(), Tower()])                # 72 and 144
        self.heads = nn.ModuleDict({"a": nn.Linear(8, 1), "b": nn.Linear(8, 30)})  # 9 and 270
        self.norm = nn.LayerNorm(8)                                    # 16

    def forward(self, x):
        x = self.embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.heads["a"](self.norm(x))


def test_the_default_plan_takes_large_direct_children_looking_inside_module_lists_and_dicts():
    net = Net()
    assert sharding_plan(net, FSDP(min_params=72)) == ["layers.0", "layers.1", "heads.b", ""]
    assert sharding_plan(net, FSDP(min_params=100)) == ["layers.1", "heads.b", ""]
    assert sharding_plan(net, FSDP()) == [""]  # nothing reaches 1M parameters: the root is the one unit


def test_a_plan_by_class_shards_nested_blocks_first_then_the_root():
    assert sharding_plan(Net(), FSDP(modules=(Block,))) == ["layers.1.first", "layers.1.second", "layers.0", ""]
    assert sharding_plan(Net(), FSDP(modules=(Tower, nn.LayerNorm))) == ["layers.1", "norm", ""]
    assert FSDP(modules=Block).modules == (Block,)  # one class alone is taken as a tuple


def test_a_plan_by_class_that_matches_nothing_names_the_classes_there_are():
    with pytest.raises(ValueError, match=r"FSDP\(modules=\('Conv2d',\)\) matches no submodule of Net; its "
                                         r"submodule classes are: Block, LayerNorm, Linear, ModuleDict, "
                                         r"ModuleList, Tower\."):
        sharding_plan(Net(), FSDP(modules=(nn.Conv2d,)))


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"min_params": 0}, ValueError, r"`min_params` must be a positive int. Received: min_params=0"),
    ({"min_params": 2.5}, ValueError, r"Received: min_params=2.5"),
    ({"modules": ("Block",)}, TypeError, r"`modules` must be a tuple of nn.Module classes. Received: "
                                         r"modules=\('Block',\)"),
    ({"modules": (int,)}, TypeError, r"tuple of nn.Module classes"),
    ({"reshard_after_forward": "yes"}, TypeError, r"Received: reshard_after_forward='yes'"),
])
def test_fsdp_options_are_checked_when_made(kwargs, error, message):
    with pytest.raises(error, match=message):
        FSDP(**kwargs)


def test_strategy_names_resolve_and_a_typo_gets_the_closest_name():
    assert resolve_strategy("auto") == ("auto", None)
    assert resolve_strategy("ddp") == ("ddp", None)
    assert resolve_strategy("dp") == ("dp", True)
    assert resolve_strategy("fsdp") == ("fsdp", FSDP())
    options = FSDP(modules=(Block,), reshard_after_forward=False)
    assert resolve_strategy(options) == ("fsdp", options)
    assert resolve_strategy(DataParallelIds((0, 1))) == ("dp", [0, 1])
    with pytest.raises(ValueError, match=r"`strategy` must be one of 'auto', 'ddp', 'fsdp', 'dp' or a "
                                         r"kt.FSDP\(\.\.\.\). Received: strategy='FSDP2'. Did you mean 'fsdp'\?"):
        resolve_strategy("FSDP2")
    with pytest.raises(ValueError, match=r"Received: strategy='zero3'. 'auto' is DDP under torchrun"):
        resolve_strategy("zero3")
    with pytest.raises(TypeError, match=r"Received: strategy=True. E.g. strategy=kt.FSDP"):
        resolve_strategy(True)


def test_a_bad_strategy_fails_compile_before_anything_changes():
    model = kt.Model.wrap(nn.Linear(2, 1))
    model.compile("sgd", "mse", device="cpu")
    before = model._config
    with pytest.raises(ValueError, match="Received: strategy='fdsp'. Did you mean 'fsdp'"):
        model.compile("adam", "mse", device="cpu", strategy="fdsp")
    assert model._config is before


@pytest.mark.parametrize("strategy", ["fsdp", "ddp", FSDP(modules=(nn.Linear,))])
def test_fsdp_or_ddp_outside_torchrun_warns_and_trains_in_one_process(strategy):
    model = kt.Model.wrap(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)))
    name = "fsdp" if isinstance(strategy, FSDP) else strategy
    with pytest.warns(RuntimeWarning, match=rf"strategy='{name}' needs several processes \(run the script with "
                                            r"torchrun.*training in this single process"):
        model.compile("sgd", "mse", device="cpu", strategy=strategy)
    config = model._config
    assert config.forward_fn is model and config.fsdp is None and config.ddp is None and not is_sharded(model)
    model.fit(torch.randn(8, 2), torch.randn(8, 1), batch_size=4, verbose=0)
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_data_parallel_is_a_deprecated_synonym_of_strategy_dp():
    model = kt.Model.wrap(nn.Linear(2, 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile("sgd", "mse", device="cpu", data_parallel=True)
    deprecations = [w for w in caught if w.category is DeprecationWarning]
    assert len(deprecations) == 1 and deprecations[0].filename == __file__  # points at the caller's line
    assert str(deprecations[0].message) == ("compile(data_parallel=True) is deprecated: pass strategy=\"dp\" "
                                            "(nn.DataParallel over the visible GPUs); under torchrun, "
                                            "strategy='ddp' or 'fsdp'.")
    # then exactly what strategy="dp" does: no GPU here, so a warning and no wrapper
    assert any("0 CUDA device(s) are visible" in str(w.message) for w in caught)
    assert model._compile_call[1]["strategy"] == "dp"  # what fit(processes=N) recompiles with


def test_legacy_data_parallel_values():
    with pytest.warns(DeprecationWarning):
        assert legacy_strategy("auto", {"data_parallel": [0, 1]}) == DataParallelIds((0, 1))
    with pytest.warns(DeprecationWarning):
        assert legacy_strategy("fsdp", {"data_parallel": False}) == "fsdp"
    assert legacy_strategy("ddp", {}) == "ddp"
    with pytest.warns(DeprecationWarning), pytest.raises(
            ValueError, match=r"Pass `strategy=` or the deprecated `data_parallel=`, not both. Received: "
                              r"strategy='fsdp', data_parallel=True"):
        legacy_strategy("fsdp", {"data_parallel": True})
    with pytest.warns(DeprecationWarning), pytest.raises(
            TypeError, match=r"`data_parallel` must be True or a list of GPU ids. Received: data_parallel='0,1'"):
        legacy_strategy("auto", {"data_parallel": "0,1"})


def test_an_optimizer_that_has_stepped_cannot_be_sharded():
    net = nn.Linear(2, 1)
    optimizer = torch.optim.Adam(net.parameters())
    check_shardable(net, FSDP(), optimizer)
    net(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    with pytest.raises(ValueError, match="strategy='fsdp' needs an optimizer without state"):
        check_shardable(net, FSDP(), optimizer)


def test_precision_maps_to_fsdps_mixed_precision_policy():
    bf16, fp16, fp32 = (mixed_precision_policy(p) for p in ("bf16-mixed", "16-mixed", "32"))
    assert (bf16.param_dtype, bf16.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert (fp16.param_dtype, fp16.reduce_dtype) == (torch.float16, torch.float32)
    assert (fp32.param_dtype, fp32.reduce_dtype) == (None, None)


def test_without_fsdp_the_state_helpers_are_the_plain_state_dicts():
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)))
    model.compile("adam", "mse", device="cpu")
    model.fit(torch.randn(8, 3), torch.randn(8, 2), batch_size=4, verbose=0)
    assert full_model_state(model).keys() == model.state_dict().keys()
    assert all(torch.equal(full_model_state(model)[k], v) for k, v in model.state_dict().items())
    assert full_optimizer_state(model, model.optimizer) == model.optimizer.state_dict()


def test_sharded_bytes_counts_parameters_gradients_and_optimizer_state():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # 16 + 10 parameters
    optimizer = torch.optim.Adam(net.parameters())
    assert sharded_bytes(net, optimizer) == {"parameters": 104, "gradients": 0, "optimizer_state": 0, "total": 104}
    net(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    # Adam: exp_avg and exp_avg_sq like the parameters, plus one float32 step per parameter tensor
    assert sharded_bytes(net, optimizer) == {"parameters": 104, "gradients": 104, "optimizer_state": 208 + 16,
                                             "total": 432}
