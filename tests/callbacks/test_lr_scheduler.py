"""LearningRateScheduler: the schedule sets each epoch's lr at its start (history's lr column)."""
import pytest
import torch

from kerastorch.callbacks import LearningRateScheduler
from support import TinyNet


def _model(optimizer=None, **kwargs):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile(optimizer(model) if optimizer else "sgd", "mse", device="cpu", **kwargs)
    return model


def _data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(8, 2, generator=g), torch.randn(8, 1, generator=g)


def test_history_lr_is_the_scheduled_value():
    calls = []

    def schedule(epoch, lr):
        calls.append((epoch, lr))
        return lr / 2 if epoch > 0 else lr

    model = _model(optimizer_kwargs={"lr": 0.0625})
    history = model.fit(*_data(), batch_size=4, epochs=4, verbose=0, callbacks=[LearningRateScheduler(schedule)])
    assert list(history["lr"]) == [0.0625, 0.03125, 0.015625, 0.0078125]
    assert calls == [(0, 0.0625), (1, 0.0625), (2, 0.03125), (3, 0.015625)]


def test_epoch_is_the_absolute_index_with_initial_epoch():
    model = _model()
    history = model.fit(*_data(), batch_size=4, epochs=4, initial_epoch=2, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.001 * epoch)])
    assert list(history["epoch"]) == [3, 4] and list(history["lr"]) == [0.001 * 2, 0.001 * 3]


def test_the_lr_is_used_by_the_optimizer_step():
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    model.fit(*_data(), batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[LearningRateScheduler(lambda epoch, lr: 0.0)])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_each_param_group_gets_its_own_call():
    def two_groups(model):
        return torch.optim.SGD([{"params": [model.fc.weight], "lr": 1.0}, {"params": [model.fc.bias], "lr": 0.5}])

    model = _model(optimizer=two_groups)
    model.fit(*_data(), batch_size=4, epochs=2, verbose=0,
              callbacks=[LearningRateScheduler(lambda epoch, lr: lr * 0.5)])
    assert [g["lr"] for g in model.optimizer.param_groups] == [0.25, 0.125]


def test_tensor_lr_is_updated_in_place():
    lr = torch.tensor(0.5)
    model = _model(optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=lr))
    model.fit(*_data(), batch_size=4, epochs=1, verbose=0,
              callbacks=[LearningRateScheduler(lambda epoch, lr: torch.tensor(0.25))])
    group_lr = model.optimizer.param_groups[0]["lr"]
    assert isinstance(group_lr, torch.Tensor) and float(group_lr) == 0.25


@pytest.mark.parametrize("bad", ["0.1", None, float("nan"), -1.0, True])
def test_bad_schedule_output(bad):
    model = _model()
    with pytest.raises(ValueError, match="must return a finite number >= 0. Received: .* for epoch 0"):
        model.fit(*_data(), epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda epoch, lr: bad)])


def test_schedule_must_be_callable():
    with pytest.raises(TypeError, match="`schedule` must be a function"):
        LearningRateScheduler(0.1)


def test_verbose(capsys):
    model = _model()
    model.fit(*_data(), epochs=2, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: 0.5 ** e, verbose=1)])
    assert capsys.readouterr().out == ("Epoch 1: LearningRateScheduler setting learning rate to 1.\n"
                                       "Epoch 2: LearningRateScheduler setting learning rate to 0.5.\n")


def test_a_one_argument_schedule_gets_the_epoch_only():
    calls = []

    def by_epoch(epoch):
        calls.append(epoch)
        return 0.5 ** epoch

    model = _model()
    history = model.fit(*_data(), batch_size=4, epochs=3, verbose=0, callbacks=[LearningRateScheduler(by_epoch)])
    assert calls == [0, 1, 2] and list(history["lr"]) == [1.0, 0.5, 0.25]


def test_a_type_error_inside_a_two_argument_schedule_is_not_swallowed():
    def broken(epoch, lr):
        raise TypeError("bug in the schedule")

    with pytest.raises(TypeError, match="bug in the schedule"):  # Keras would retry as schedule(epoch)
        _model().fit(*_data(), epochs=1, verbose=0, callbacks=[LearningRateScheduler(broken)])


def test_a_schedule_taking_neither_form_is_refused():
    with pytest.raises(TypeError, match=r"`schedule` must be a function \(epoch, lr\) -> lr or epoch -> lr\. "
                                        r"Received: schedule=.* with the signature \(\)"):
        LearningRateScheduler(lambda: 0.1)
    assert LearningRateScheduler(lambda epoch, lr=None: 0.1).takes_lr
    assert LearningRateScheduler(max).takes_lr  # a builtin without a readable signature: (epoch, lr)
