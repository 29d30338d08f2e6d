"""SLURM's early warning (SIGUSR1) during fit, in one process: the batch (or accumulation window) ends, an
interrupt checkpoint is written, fit warns and returns, and a rerun with resume_from="auto" ends exactly as
an uninterrupted run. (Two ranks: tests/distributed/test_slurm_launch.py.)"""
import os
import signal

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback, ModelCheckpoint

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="the platform has no SIGUSR1")

STEPS = 9  # 70 samples in batches of 8


class SendAt(Callback):
    """Send this process the given signals after batch ``batch`` (0-based) of epoch ``epoch``."""

    def __init__(self, epoch, batch, *signals):
        super().__init__()
        self.epoch, self.batch, self.signals, self.handlers = epoch, batch, signals, []

    def on_train_batch_end(self, batch, logs=None):
        self.handlers.append(signal.getsignal(signal.SIGUSR1))
        if self.session.epoch == self.epoch and batch == self.batch:
            for sig in self.signals:
                os.kill(os.getpid(), sig)


def train(callbacks=(), resume_from=None, epochs=3, grad_accum_steps=1):
    """The same script for every run: fixed seeds, shuffling and dropout on."""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1)))
    model.compile("adam", "bce_with_logits", ["accuracy"], optimizer_kwargs={"lr": 0.01}, device="cpu",
                  grad_accum_steps=grad_accum_steps)
    g = torch.Generator().manual_seed(123)
    x = torch.randn(70, 4, generator=g)
    y = (x[:, :2].sum(1) > 0).float()
    history = model.fit(x, y, batch_size=8, epochs=epochs, callbacks=list(callbacks), verbose=0,
                        resume_from=resume_from)
    return model, history


@pytest.fixture
def in_a_slurm_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")


def test_usr1_saves_returns_and_a_rerun_resumes_exactly(tmp_path, in_a_slurm_job):
    interrupt = tmp_path / "interrupted.pt"
    with pytest.warns(UserWarning) as caught:
        model, history = train([ModelCheckpoint(str(tmp_path / "ep{epoch}.pt")), SendAt(1, 2, signal.SIGUSR1)])
    messages = [str(w.message) for w in caught if "SIGUSR1" in str(w.message)]
    assert messages == [
        f"SIGUSR1 (SLURM's warning that the time limit is near) stopped training in epoch 2, batch 3 of {STEPS}; "
        f"model.history keeps 1 finished epochs; interrupt checkpoint: {interrupt}. fit(..., resume_from='auto') "
        "continues from it (e.g. in the job requeued with `scontrol requeue $SLURM_JOB_ID`)."]
    assert [w.filename for w in caught if "SIGUSR1" in str(w.message)] == [__file__]  # points at the fit call
    assert len(history) == 1 and len(model.history) == 1  # the partial epoch is not logged
    assert not model.stop_training  # what a script reads to tell this stop from EarlyStopping's (README)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # restored
    assert kt.checkpointing.safe_load(interrupt)["batch"] == 3
    resumed, resumed_history = train([ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"))], resume_from="auto")
    straight, straight_history = train()
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in straight.state_dict().items())
    assert resumed_history.equals(straight_history) and len(straight_history) == 3


def test_usr1_waits_for_the_end_of_the_accumulation_window(tmp_path, in_a_slurm_job):
    with pytest.warns(UserWarning, match=rf"stopped training in epoch 1, batch 4 of {STEPS}; "):
        _, history = train([ModelCheckpoint(str(tmp_path / "last.pt")), SendAt(0, 1, signal.SIGUSR1)],
                           grad_accum_steps=4)
    assert len(history) == 0
    assert kt.checkpointing.safe_load(tmp_path / "interrupted.pt")["batch"] == 4


def test_without_a_checkpoint_callback_the_warning_says_a_rerun_starts_over(in_a_slurm_job):
    with pytest.warns(UserWarning, match=r"stopped training in epoch 1, batch 1 of 9; model.history keeps 0 "
                                         r"finished epochs\. No callback wrote an interrupt checkpoint, so a rerun "
                                         r"starts over: add ModelCheckpoint\(\.\.\.\) or BackupAndRestore\(\.\.\.\)"):
        train([SendAt(0, 0, signal.SIGUSR1)])


def test_a_ctrl_c_after_usr1_still_interrupts(in_a_slurm_job):
    with pytest.raises(KeyboardInterrupt, match=rf"^Training interrupted in epoch 1, batch 2 of {STEPS}; "):
        train([SendAt(0, 1, signal.SIGUSR1, signal.SIGINT)])


def test_usr1_is_taken_only_in_a_slurm_job_and_only_from_the_default_handler(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    outside = SendAt(9, 0)
    train([outside], epochs=1)
    assert set(outside.handlers) == {signal.SIG_DFL}  # outside SLURM: SIGUSR1 is left as it is
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("KERASTORCH_SLURM", "0")
    ignored = SendAt(9, 0)
    train([ignored], epochs=1)
    assert set(ignored.handlers) == {signal.SIG_DFL}  # told to ignore SLURM
    monkeypatch.delenv("KERASTORCH_SLURM")
    inside = SendAt(9, 0)
    train([inside], epochs=1)
    assert signal.SIG_DFL not in set(inside.handlers)  # taken during fit

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        mine = signal.getsignal(signal.SIGUSR1)
        sender = SendAt(0, 2, signal.SIGUSR1)
        _, history = train([sender], epochs=2)
        assert received == [signal.SIGUSR1] and len(history) == 2  # the script's own handler ran; fit went on
        assert set(sender.handlers) == {mine} and signal.getsignal(signal.SIGUSR1) is mine
    finally:
        signal.signal(signal.SIGUSR1, previous)
