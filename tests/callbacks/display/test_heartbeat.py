"""EpochLine's heartbeat: a redirected verbose=1 log says where a long epoch is (fake clock, captured stdout)."""
import pytest
import torch
from torch import nn

from kerastorch.callbacks import Callback
from kerastorch.callbacks.display import EpochLine, epoch_table
from kerastorch.engine.session import Session
from support import TinyNet


class FakeClock:
    """The epoch clock: advanced only by :class:`Ticker`; records after how many batches it was read."""

    def __init__(self):
        self.now, self.done, self.reads = 0.0, 0, []

    def __call__(self):
        self.reads.append(self.done)
        return self.now


class Ticker(Callback):
    """Each batch takes ``seconds`` on the fake clock (user callbacks run before the printers)."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def on_epoch_begin(self, epoch, logs=None):
        self.clock.done = 0

    def on_train_batch_end(self, batch, logs=None):
        self.clock.now += self.seconds
        self.clock.done = batch + 1


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(epoch_table, "clock", fake)
    return fake


@pytest.fixture
def running_reads(monkeypatch):
    """How often the running values (a host sync) were read."""
    reads = []
    original = Session.running_logs

    def counted(self):
        reads.append(self.batch)
        return original(self)

    monkeypatch.setattr(Session, "running_logs", counted)
    return reads


def fit_20_batches(clock, seconds, verbose=1, epochs=1):
    """80 samples in batches of 4; weights 0 and lr 0 against targets 1: the loss is 1 throughout."""
    model = TinyNet()
    nn.init.zeros_(model.fc.weight)
    nn.init.zeros_(model.fc.bias)
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.0}, device="cpu")
    model.fit(torch.randn(80, 2), torch.ones(80, 1), batch_size=4, epochs=epochs, verbose=verbose,
              callbacks=[Ticker(clock, seconds)])


def test_tenths_quicker_than_30_s_give_a_line_on_the_first_tenth_30_s_after_the_last(capsys, clock, running_reads):
    fit_20_batches(clock, seconds=5.0)  # a tenth (2 batches) is 10 s
    assert capsys.readouterr().out.splitlines() == [
        "Epoch 1/1 - batch 6/20 - 30.0s - loss: 1.0000",
        "Epoch 1/1 - batch 12/20 - 60.0s - loss: 1.0000",
        "Epoch 1/1 - batch 18/20 - 90.0s - loss: 1.0000",
        "Epoch 1/1 - 100s - loss: 1.0000 - lr: 0",
    ]
    assert running_reads == [5, 11, 17]  # the running values are read only for the lines printed
    # The clock: at the epoch's start, after the first two batches (the rate), on planned tenths, at the end.
    assert clock.reads == [0, 1, 2, 4, 6, 12, 18, 20]


def test_tenths_slower_than_30_s_give_a_line_every_30_s_or_more(capsys, clock):
    fit_20_batches(clock, seconds=20.0)  # a tenth is 40 s: a line at the first batch 30 s after the last
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["Epoch 1/1 - batch 2/20 - 40.0s - loss: 1.0000",
                         "Epoch 1/1 - batch 4/20 - 80.0s - loss: 1.0000"]
    assert [line.split(" - ")[1] for line in lines[:-1]] == [f"batch {n}/20" for n in range(2, 20, 2)]
    assert lines[-1] == "Epoch 1/1 - 400s - loss: 1.0000 - lr: 0"


def test_an_epoch_shorter_than_30_s_prints_its_epoch_line_only(capsys, clock, running_reads):
    fit_20_batches(clock, seconds=1.0, epochs=2)
    assert capsys.readouterr().out.splitlines() == ["Epoch 1/2 - 20.0s - loss: 1.0000 - lr: 0",
                                                    "Epoch 2/2 - 20.0s - loss: 1.0000 - lr: 0"]
    assert running_reads == []


def test_verbose_2_prints_one_line_per_epoch_and_leaves_the_batch_hook_out_of_the_loop(capsys, clock):
    fit_20_batches(clock, seconds=20.0, verbose=2)
    assert capsys.readouterr().out.splitlines() == ["Epoch 1/1 - 400s - loss: 1.0000 - lr: 0"]
    assert clock.reads == [0, 20]  # epoch begin and end: no batch reads the clock
    line = EpochLine()
    line.set_params({"verbose": 2})
    assert line.inactive_hooks == ("on_train_batch_end",)
    line.set_params({"verbose": 1})
    assert line.inactive_hooks == ()
    quiet = EpochLine(heartbeat=None)
    quiet.set_params({"verbose": 1})
    assert quiet.inactive_hooks == ("on_train_batch_end",)


def test_an_epoch_of_unknown_length_gets_a_line_every_30_s_or_more(capsys, clock):
    class Stream(torch.utils.data.IterableDataset):  # no len(): fit cannot know the epoch's steps
        def __iter__(self):
            return iter([(torch.zeros(4, 2), torch.ones(4, 1))] * 5)

    model = TinyNet()
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.0}, device="cpu")
    nn.init.zeros_(model.fc.weight)
    nn.init.zeros_(model.fc.bias)
    model.fit(torch.utils.data.DataLoader(Stream(), batch_size=None), epochs=1, verbose=1,
              callbacks=[Ticker(clock, 20.0)])
    assert capsys.readouterr().out.splitlines() == [
        "Epoch 1/1 - batch 2 - 40.0s - loss: 1.0000",
        "Epoch 1/1 - batch 4 - 80.0s - loss: 1.0000",
        "Epoch 1/1 - 100s - loss: 1.0000 - lr: 0",
    ]


@pytest.mark.parametrize("heartbeat", [0, -1.0, True, "30"])
def test_a_bad_heartbeat_is_refused(heartbeat):
    with pytest.raises(ValueError, match=r"^`heartbeat` must be a positive number of seconds or None\. Received: "):
        EpochLine(heartbeat=heartbeat)
