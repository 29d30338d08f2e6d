"""Nothing trained is lost: kill -9, mid-epoch resume, Ctrl-C, SIGTERM, NaN, corrupt files.

Children are real forked processes killed with real signals (see procs.py).
Every resumed run must end bit-identical (torch.equal) to an uninterrupted one,
with dropout and shuffling on.
"""
import os
import signal
import time

import numpy as np
import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import BackupAndRestore, Callback, ModelCheckpoint
from procs import run_child, start_child, wait_child

EPOCHS = 4


class DropNet(kt.Model):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
        self.poison = False

    def forward(self, x):
        out = self.body(x)
        return out * float("nan") if self.poison else out


def make_data():
    g = torch.Generator().manual_seed(123)
    x = torch.randn(70, 4, generator=g)
    y = (x[:, :2].sum(1) > 0).float()
    return x, y


def new_model(init_seed=0):
    torch.manual_seed(init_seed)
    model = DropNet()
    model.compile("adam", "bce_with_logits", ["accuracy", "auc"], optimizer_kwargs={"lr": 0.01}, device="cpu")
    return model


def train(callbacks=(), resume_from=None, init_seed=0, epochs=EPOCHS):
    """The same script for every run: fixed seeds, shuffling and dropout on."""
    torch.manual_seed(0)
    np.random.seed(0)
    model = new_model(init_seed)
    torch.manual_seed(0)
    x, y = make_data()
    model.fit(x, y, batch_size=8, epochs=epochs, validation_data=(x[:20], y[:20]), callbacks=list(callbacks),
              verbose=0, resume_from=resume_from)
    return outcome(model)


def outcome(model):
    return {"params": {k: v.clone() for k, v in model.state_dict().items()},
            "optimizer": model.optimizer.state_dict(), "history": model.history}


def assert_identical(a, b):
    assert a["params"].keys() == b["params"].keys()
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert all(torch.equal(state_a[key][name], state_b[key][name]) for name in state_a[key])
    assert a["history"].equals(b["history"]), (a["history"], b["history"])


class KillAt(Callback):
    """SIGKILL this process at a chosen epoch end or batch end (after earlier callbacks ran)."""

    def __init__(self, epoch=None, batch=None, on_epoch=None):
        super().__init__()
        self.epoch, self.batch, self.on_epoch = epoch, batch, on_epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.on_epoch is not None and epoch == self.on_epoch:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch is not None and self.session.epoch == self.epoch and batch == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def reference():
    code, value, error = run_child(train)
    assert code == 0, error
    return value


def test_kill_9_after_epoch_2_then_resume_is_bit_identical(tmp_path, reference):
    backup = tmp_path / "backup"
    code, _, _ = run_child(train, [BackupAndRestore(backup), KillAt(on_epoch=1)])
    assert code == -signal.SIGKILL and (backup / "backup.pt").exists()
    code, resumed, error = run_child(train, [BackupAndRestore(backup)], None, 7)  # other init: must be restored
    assert code == 0, error
    assert_identical(resumed, reference)
    assert not (backup / "backup.pt").exists()  # deleted after a completed fit


def test_kill_9_mid_epoch_then_resume_is_bit_identical(tmp_path, reference):
    backup = tmp_path / "backup"
    # Backups every 3 batches; killed at epoch 1, batch 6 (two batches after the last backup).
    code, _, _ = run_child(train, [BackupAndRestore(backup, save_freq=3), KillAt(epoch=1, batch=6)])
    assert code == -signal.SIGKILL
    code, resumed, error = run_child(train, [BackupAndRestore(backup, save_freq=3)], None, 7)
    assert code == 0, error
    assert_identical(resumed, reference)


def slow_train(checkpoint_dir, ready_path):
    class Slow(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.session.epoch >= 1:
                open(ready_path, "a").close()
            time.sleep(0.01)

    started = time.monotonic()
    try:
        train([ModelCheckpoint(os.path.join(checkpoint_dir, "last.pt")), Slow()], epochs=50)
    except KeyboardInterrupt:
        return {"interrupted": True, "seconds": time.monotonic() - started}
    return {"interrupted": False}


def test_sigint_saves_interrupt_checkpoint_and_resume_matches(tmp_path):
    ready = tmp_path / "ready"
    pid, result = start_child(slow_train, str(tmp_path), str(ready))
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    sent = time.monotonic()
    os.kill(pid, signal.SIGINT)
    code, value, error = wait_child(pid, result)
    assert code == 0 and value["interrupted"], error
    assert time.monotonic() - sent < 5.0
    interrupt = tmp_path / "interrupted.pt"
    checkpoint = kt.checkpointing.safe_load(interrupt)
    epochs_done = checkpoint["epoch"]
    assert 1 <= epochs_done < 50 and len(checkpoint["history"]) == epochs_done
    # Resuming from the interrupt checkpoint ends where an uninterrupted run ends.
    total = epochs_done + 2
    code, resumed, error = run_child(train, [], str(interrupt), 7, total)
    assert code == 0, error
    code, straight, error = run_child(train, [], None, 0, total)
    assert_identical(resumed, straight)


def sigterm_train(checkpoint_dir, ready_path):
    slow_train(checkpoint_dir, ready_path)
    return "finished"


def test_sigterm_saves_and_exits_143(tmp_path):
    ready = tmp_path / "ready"
    pid, result = start_child(sigterm_train, str(tmp_path), str(ready))
    while not ready.exists():
        time.sleep(0.01)
    os.kill(pid, signal.SIGTERM)
    code, value, _ = wait_child(pid, result)
    assert code == 143 and value is None
    assert kt.checkpointing.safe_load(tmp_path / "interrupted.pt")["batch"] >= 1


def test_sigint_keeps_history_and_restores_handlers():
    model = new_model()
    x, y = make_data()

    class Interrupt(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.session.epoch == 1 and batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    handler_before = signal.getsignal(signal.SIGINT)
    steps = -(-len(x) // 8)
    with pytest.raises(KeyboardInterrupt, match=rf"^Training interrupted in epoch 2, batch 3 of {steps}; "
                                                r"model.history keeps 1 finished epochs\.$"):
        model.fit(x, y, batch_size=8, epochs=5, callbacks=[Interrupt()], verbose=0)
    assert len(model.history) == 1
    assert signal.getsignal(signal.SIGINT) is handler_before
    assert model.training  # train mode restored (it was in train mode before)


def test_nan_at_epoch_2_batch_3_stops_and_keeps_good_checkpoint(tmp_path):
    model = new_model()
    x, y = make_data()

    class Poison(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if self.session.epoch == 1 and batch == 3:
                self.model.poison = True

    best = tmp_path / "best.pt"
    saved_after_epoch_1 = {}

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs=None):  # the NaN epoch reaches on_epoch_end too (as in Keras)
            if epoch == 0:
                saved_after_epoch_1.update({k: v.clone() for k, v in self.model.state_dict().items()})

    with pytest.warns(RuntimeWarning, match=r"Non-finite training loss at epoch 2, batch 3"):
        history = model.fit(x, y, batch_size=8, epochs=5, verbose=0,
                            callbacks=[ModelCheckpoint(best, monitor="loss", save_best_only=True), Poison(),
                                       Snapshot()])
    assert len(history) == 2 and np.isnan(history["loss"].iloc[1])
    weights = kt.checkpointing.safe_load(best)
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert all(torch.equal(weights[k], saved_after_epoch_1[k]) for k in weights)


def test_resume_auto_skips_a_corrupt_newest_checkpoint(tmp_path):
    model = new_model()
    x, y = make_data()
    ckpt = ModelCheckpoint(tmp_path / "epoch{epoch}.pt", save_weights_only=False)
    model.fit(x, y, batch_size=8, epochs=3, callbacks=[ckpt], verbose=0)
    newest = tmp_path / "epoch3.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    later = time.time() + 5
    os.utime(newest, (later, later))
    resumed = new_model(7)
    with pytest.warns(UserWarning, match="epoch3.pt"):
        history = resumed.fit(x, y, batch_size=8, epochs=3, verbose=0, resume_from="auto",
                              callbacks=[ModelCheckpoint(tmp_path / "epoch{epoch}.pt", save_weights_only=False)])
    assert history["epoch"].tolist() == [1, 2, 3]  # epochs 1-2 from the checkpoint, 3 trained again


def test_resume_from_corrupt_path_names_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    model = new_model()
    x, y = make_data()
    with pytest.raises(kt.checkpointing.CheckpointError, match="bad.pt"):
        model.fit(x, y, epochs=1, verbose=0, resume_from=str(bad))


def test_weights_only_file_cannot_resume(tmp_path):
    model = new_model()
    path = tmp_path / "w.pt"
    model.save_weights(path)
    x, y = make_data()
    with pytest.raises(kt.checkpointing.CheckpointError, match="weights-only file"):
        model.fit(x, y, epochs=1, verbose=0, resume_from=str(path))


def test_save_and_load_weights_round_trip(tmp_path):
    model = new_model()
    other = new_model(5)
    model.save(tmp_path / "full.pt")
    other.load_weights(tmp_path / "full.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    bare = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    model.save_weights(tmp_path / "w.pt")
    weights = torch.load(tmp_path / "w.pt", weights_only=True)
    bare.load_state_dict({k.removeprefix("body."): v for k, v in weights.items()})


def test_unwritable_checkpoint_folder_fails_before_first_epoch(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    model = new_model()
    before = [p.clone() for p in model.parameters()]
    x, y = make_data()
    with pytest.raises(kt.checkpointing.CheckpointError, match="not writable"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(blocker / "sub" / "w.pt")])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def early_stopping_run(backup, kill_after=None):
    from kerastorch.callbacks import EarlyStopping
    # min_delta 10: no epoch after the first counts as progress, so patience 3 stops after epoch index 3.
    callbacks = [BackupAndRestore(backup), EarlyStopping(monitor="loss", min_delta=10.0, patience=3)]
    if kill_after is not None:
        callbacks.append(KillAt(on_epoch=kill_after))
    return train(callbacks, epochs=10)


def test_early_stopping_counters_survive_a_resume(tmp_path):
    code, straight, error = run_child(early_stopping_run, str(tmp_path / "a"))
    assert code == 0, error
    assert len(straight["history"]) == 4
    code, _, _ = run_child(early_stopping_run, str(tmp_path / "b"), 1)  # killed with wait == 1
    assert code == -signal.SIGKILL
    code, resumed, error = run_child(early_stopping_run, str(tmp_path / "b"))
    assert code == 0, error
    assert_identical(resumed, straight)


def accumulating_train(callbacks=(), epochs=EPOCHS):
    torch.manual_seed(0)
    model = DropNet()
    model.compile("sgd", "bce_with_logits", optimizer_kwargs={"lr": 0.1}, grad_accum_steps=3, device="cpu")
    torch.manual_seed(0)
    x, y = make_data()
    model.fit(x, y, batch_size=8, epochs=epochs, callbacks=list(callbacks), verbose=0)
    return outcome(model)


def test_mid_epoch_backup_inside_an_accumulation_window_resumes_exactly(tmp_path):
    code, straight, error = run_child(accumulating_train)
    assert code == 0, error
    # save_freq=2 falls inside windows of 3 batches: the backup due at epoch 1 batch 4 must wait for
    # the window's step (batch 5), and the kill at batch 5 comes before it, so the last backup is
    # the one at batch 2's window end (3 batches done). Saving mid-window would leave batch=5.
    code, _, _ = run_child(accumulating_train, [BackupAndRestore(tmp_path, save_freq=2), KillAt(epoch=1, batch=5)])
    assert code == -signal.SIGKILL
    assert kt.checkpointing.safe_load(tmp_path / "backup.pt")["batch"] % 3 == 0
    code, resumed, error = run_child(accumulating_train, [BackupAndRestore(tmp_path, save_freq=2)])
    assert code == 0, error
    assert_identical(resumed, straight)


class NoisyPoints(torch.utils.data.Dataset):
    """Random augmentation in __getitem__: in a worker process it draws from the worker's RNG."""

    def __init__(self):
        self.x, self.y = make_data()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index] + 0.1 * torch.randn(4), self.y[index]


def worker_loader_train(callbacks=(), init_seed=0):
    torch.manual_seed(0)
    model = new_model(init_seed)
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(NoisyPoints(), batch_size=8, shuffle=True, num_workers=2)
    model.fit(loader, epochs=3, callbacks=list(callbacks), verbose=0)
    return outcome(model)


def test_kill_9_mid_epoch_with_dataloader_workers_resumes_bit_identically(tmp_path):
    # Worker seeds and the shuffle order come from the RNG at iter(loader): the resumed epoch must
    # replay the epoch start's RNG, so the workers' augmentation noise and the order are the same.
    code, straight, error = run_child(worker_loader_train)
    assert code == 0, error
    code, _, _ = run_child(worker_loader_train, [BackupAndRestore(tmp_path, save_freq=2), KillAt(epoch=1, batch=4)])
    assert code == -signal.SIGKILL
    # save_freq counts global steps: 9 per epoch, so epoch 1's backups come after 1, 3 and 5 of its
    # batches; the kill at batch 4's end (5 done) comes before that write: 3 batches were saved.
    assert kt.checkpointing.safe_load(tmp_path / "backup.pt")["batch"] == 3
    code, resumed, error = run_child(worker_loader_train, [BackupAndRestore(tmp_path, save_freq=2)], 7)
    assert code == 0, error
    assert_identical(resumed, straight)
    code, unseeded, error = run_child(worker_loader_train, [], 7)  # the other init really differs
    assert code == 0, error
    assert not torch.equal(unseeded["params"]["body.0.weight"], straight["params"]["body.0.weight"])


def test_sigint_message_names_the_interrupt_checkpoint_and_continues_the_epoch_numbers(tmp_path):
    model = new_model()
    x, y = make_data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)  # the history's epochs 1 and 2

    class Interrupt(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.session.epoch == 0 and batch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    path = str(tmp_path / "interrupted.pt")
    with pytest.raises(KeyboardInterrupt) as caught:
        model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                  callbacks=[Interrupt(), kt.callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"))])
    assert str(caught.value) == (
        f"Training interrupted in epoch 3, batch 2 of {-(-len(x) // 8)}; model.history keeps 2 finished epochs; "
        f"interrupt checkpoint: {path} (continue with fit(..., resume_from={path!r})).")
    assert os.path.isfile(path)
