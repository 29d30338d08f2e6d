"""compile(): strict arguments, every check before any change, the configuration it builds."""
import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.compiling import COMPILE_ARGUMENTS
from support import TinyNet


def test_misspelled_argument_is_a_type_error_naming_the_closest_option():
    model = TinyNet()
    with pytest.raises(TypeError, match=r"compile\(\) got an unexpected keyword argument 'lerning_rate'\. "
                                        r"Optimizer hyperparameters go in optimizer_kwargs"):
        model.compile(optimizer="sgd", loss="mse", lerning_rate=3)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'lr'\. Optimizer hyperparameters go in "
                                        r"optimizer_kwargs, e\.g\. compile\(optimizer='adam', "
                                        r"optimizer_kwargs=\{'lr': 1e-3\}\)"):
        model.compile(optimizer="sgd", loss="mse", lr=0.1)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'metric'\. Did you mean `metrics`\?"):
        model.compile(optimizer="sgd", loss="mse", metric=["mae"])
    with pytest.raises(TypeError, match=r"'epochs'.*`epochs` is an argument of fit\(\), not compile\(\)"):
        model.compile(optimizer="sgd", loss="mse", epochs=3)


def test_several_unknown_arguments_are_all_named():
    with pytest.raises(TypeError, match=r"'lr' \(and 1 more: foo\)"):
        TinyNet().compile(optimizer="sgd", loss="mse", lr=0.1, foo=1)


def test_the_valid_argument_list_is_compiles_signature():
    assert {"optimizer", "loss", "metrics", "optimizer_kwargs", "scheduler_monitor", "loss_func",
            "metrics_dict", "data_on_device"} <= set(COMPILE_ARGUMENTS)
    assert "model" not in COMPILE_ARGUMENTS and "self" not in COMPILE_ARGUMENTS


@pytest.mark.parametrize("bad", [
    {"metrics": ["no_such_metric"]},
    {"loss": "no_such_loss"},
    {"optimizer_kwargs": {"no_such_option": 1}},
    {"precision": "8-bit"},
    {"grad_accum_steps": 0},
    {"grad_clip_norm": -1.0},
    {"scheduler_interval": "batch"},
    {"jit_compile": "yes"},
    {"data_on_device": "maybe"},
    {"regularizers": "l2"},
])
def test_a_failed_compile_keeps_the_previous_configuration(bad):
    model = TinyNet()
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"], device="cpu")
    before, weights = model._config, [p.detach().clone() for p in model.parameters()]
    arguments = {"optimizer": "adam", "loss": "mae", "device": "cpu", **bad}
    with pytest.raises((ValueError, TypeError)):
        model.compile(**arguments)
    assert model._config is before and list(model.compiled_metrics) == ["mae"]
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), weights))
    history = model.fit(torch.zeros(4, 2), torch.zeros(4, 1), epochs=1, verbose=0)
    assert list(history.columns) == ["epoch", "loss", "mae", "lr"]


def test_scheduler_monitor_is_a_real_option():
    model = TinyNet()
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"], device="cpu",
                  lr_scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5),
                  scheduler_monitor="mae")
    x, y = torch.zeros(4, 2), torch.ones(4, 1)
    model.fit(x, y, epochs=1, verbose=0)
    assert model._config.scheduler_monitor == "mae"
    with pytest.raises(ValueError, match=r"`scheduler_monitor` must be a logged name"):
        model.compile(optimizer="sgd", loss="mse", scheduler_monitor="")


def test_the_config_is_no_submodule_and_the_state_dict_is_the_networks():
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model = kt.Model.wrap(net)
    model.compile(optimizer="adam", loss=kt.losses.FocalLoss(from_logits=True), metrics=["auc"],
                  regularizers=kt.regularizers.L2(1e-3), device="cpu")
    assert list(model.state_dict()) == list(net.state_dict())
    assert [id(p) for p in model.parameters()] == [id(p) for p in net.parameters()]


def test_sync_batchnorm_outside_ddp_warns_and_changes_nothing():
    model = kt.Model.wrap(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)))
    with pytest.warns(RuntimeWarning, match=r"sync_batchnorm=True has no effect outside DistributedDataParallel"):
        model.compile("sgd", "mse", device="cpu", sync_batchnorm=True)
    assert type(model[1]) is nn.BatchNorm1d


def test_sync_batchnorm_under_torchrun_converts_before_wrapping(monkeypatch):
    from kerastorch import distributed

    monkeypatch.setattr(distributed, "launched_distributed", lambda: True)
    monkeypatch.setattr(distributed, "ensure_process_group", lambda device: None)
    wrapped = {}

    def wrap_ddp(module, device):
        wrapped.update(module=module, bn_type=type(module[1]).__name__)  # what DDP would wrap
        return module

    monkeypatch.setattr(distributed, "wrap_ddp", wrap_ddp)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)))
    weight, running_mean = model[1].weight, model[1].running_mean
    model.compile("sgd", "mse", device="cpu", sync_batchnorm=True)
    assert wrapped == {"module": model, "bn_type": "SyncBatchNormAnyDevice"} and model._config.ddp is model
    assert model[1].weight is weight and model[1].running_mean is running_mean  # the same tensors
