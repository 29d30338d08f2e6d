"""ModelCheckpoint(save_top_k=, keep_last=): exactly which files exist after each epoch of a scripted run."""
import os
import re

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback, ModelCheckpoint
from kerastorch.checkpointing.retention import Retention

# The monitored val_loss of epochs 1..7 (mode "min"); epochs 4, 6 and 7 tie at 0.3.
VALUES = [0.5, 0.4, 0.6, 0.3, 0.45, 0.3, 0.3]


def _net():
    torch.manual_seed(0)
    net = kt.Model.wrap(nn.Linear(3, 1))
    net.compile("sgd", "mse", device="cpu")
    return net


def _files(folder):
    return sorted(os.listdir(folder))


def _run(cb, folder, values=VALUES, first=0, net=None):
    """The epoch hooks as fit calls them; the folder's files after each epoch."""
    if cb.model is None:
        cb.set_model(net or _net())
    cb.on_train_begin({})
    seen = []
    for epoch, value in enumerate(values, start=first):
        cb.on_epoch_end(epoch, {"loss": 1.0, "val_loss": value, "lr": 0.1})
        cb.flush_writes()
        seen.append(_files(folder))
    return seen


def _names(paths):
    return {os.path.basename(path): score for path, score in paths.items()}


def test_save_top_k_keeps_the_k_best_and_ties_keep_the_older_file(tmp_path):
    cb = ModelCheckpoint(tmp_path / "e{epoch:02d}.pt", save_top_k=2)
    assert _run(cb, tmp_path) == [
        ["e01.pt"], ["e01.pt", "e02.pt"],
        ["e01.pt", "e02.pt"],  # 0.6 does not enter: not written
        ["e02.pt", "e04.pt"], ["e02.pt", "e04.pt"], ["e04.pt", "e06.pt"],
        ["e04.pt", "e06.pt"]]  # 0.3 ties the worst kept (0.3): the older files stay
    assert _names(cb.best_k_models) == {"e04.pt": 0.3, "e06.pt": 0.3}
    assert cb.best_model_path == str(tmp_path / "e04.pt") and cb.best_model_score == 0.3
    assert cb.last_model_path == str(tmp_path / "e06.pt")
    assert list(_names(cb.best_k_models)) == ["e04.pt", "e06.pt"]  # best first, older first on a tie


def test_keep_last_keeps_the_n_newest(tmp_path):
    cb = ModelCheckpoint(tmp_path / "e{epoch:02d}.pt", keep_last=2)
    assert _run(cb, tmp_path) == [["e01.pt"], ["e01.pt", "e02.pt"], ["e02.pt", "e03.pt"], ["e03.pt", "e04.pt"],
                                  ["e04.pt", "e05.pt"], ["e05.pt", "e06.pt"], ["e06.pt", "e07.pt"]]
    assert cb.last_model_path == str(tmp_path / "e07.pt") and cb.best_model_path == str(tmp_path / "e06.pt")


def test_both_rules_keep_the_union(tmp_path):
    cb = ModelCheckpoint(tmp_path / "e{epoch:02d}.pt", save_top_k=2, keep_last=2)
    assert _run(cb, tmp_path) == [
        ["e01.pt"], ["e01.pt", "e02.pt"], ["e01.pt", "e02.pt", "e03.pt"], ["e02.pt", "e03.pt", "e04.pt"],
        ["e02.pt", "e04.pt", "e05.pt"], ["e04.pt", "e05.pt", "e06.pt"], ["e04.pt", "e06.pt", "e07.pt"]]
    assert _names(cb.best_k_models) == {"e04.pt": 0.3, "e06.pt": 0.3}


def test_files_it_did_not_write_are_never_deleted(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "e03.pt").write_bytes(b"an older run's file, not this callback's")
    cb = ModelCheckpoint(tmp_path / "e{epoch:02d}.pt", save_top_k=1)
    _run(cb, tmp_path, values=[0.5, 0.4, 0.6, 0.3])  # epoch 3 (0.6) is not written: e03.pt is not its file
    assert _files(tmp_path) == ["e03.pt", "e04.pt", "notes.txt"]
    assert (tmp_path / "e03.pt").read_bytes() == b"an older run's file, not this callback's"


def test_without_a_rule_nothing_is_deleted_but_the_best_and_last_are_known(tmp_path):
    cb = ModelCheckpoint(tmp_path / "e{epoch:02d}.pt")
    _run(cb, tmp_path, values=[0.5, 0.25, 0.75])
    assert _files(tmp_path) == ["e01.pt", "e02.pt", "e03.pt"]
    assert cb.best_model_path == str(tmp_path / "e02.pt") and cb.last_model_path == str(tmp_path / "e03.pt")


def test_state_dict_round_trip_continues_the_ranking(tmp_path):
    first = ModelCheckpoint(tmp_path / "e{epoch:02d}.pt", save_top_k=2)
    _run(first, tmp_path, values=VALUES[:3])
    torch.save(first.state_dict(), tmp_path.parent / "state.pt")
    state = torch.load(tmp_path.parent / "state.pt", weights_only=True)  # plain containers only
    second = ModelCheckpoint(tmp_path / "e{epoch:02d}.pt", save_top_k=2)
    second.set_model(first.model)
    second.on_train_begin({})  # fit resets nothing here; a resume then loads the state
    second.load_state_dict(state)
    assert _run(second, tmp_path, values=VALUES[3:], first=3) == [
        ["e02.pt", "e04.pt"], ["e02.pt", "e04.pt"], ["e04.pt", "e06.pt"], ["e04.pt", "e06.pt"]]


class ScriptVal(Callback):
    """Overwrite the epoch's val_loss with scripted values (runs before ModelCheckpoint)."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = VALUES[epoch]


def test_a_fit_resumed_from_a_full_checkpoint_keeps_ranking_the_old_files(tmp_path):
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    template = str(tmp_path / "e{epoch:02d}.pt")
    first = _net()
    saver = ModelCheckpoint(template, save_top_k=2, save_weights_only=False)
    first.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), verbose=0, callbacks=[ScriptVal(), saver])
    assert _files(tmp_path) == ["e01.pt", "e02.pt"]
    resumed, saver = _net(), ModelCheckpoint(template, save_top_k=2, save_weights_only=False)
    resumed.fit(x, y, batch_size=4, epochs=7, validation_data=(x, y), verbose=0, resume_from=tmp_path / "e02.pt",
                callbacks=[ScriptVal(), saver])
    assert _files(tmp_path) == ["e04.pt", "e06.pt"]  # e01 and e02, from the resumed run, were ranked out
    assert _names(saver.best_k_models) == {"e04.pt": 0.3, "e06.pt": 0.3}
    kept = kt.checkpointing.safe_load(tmp_path / "e06.pt")["callbacks"]["ModelCheckpoint_0"]["retention"]
    assert [os.path.basename(path) for path, _ in kept["entries"]] == ["e04.pt", "e06.pt"]  # holds itself


def test_a_failed_write_deletes_nothing_and_leaves_the_ranking(tmp_path, monkeypatch):
    cb = ModelCheckpoint(tmp_path / "e{epoch:02d}.pt", keep_last=1)
    _run(cb, tmp_path, values=[0.5])
    before = cb.state_dict()["retention"]

    def disk_full(obj, path):
        raise kt.checkpointing.CheckpointError("No space left on device")

    monkeypatch.setattr("kerastorch.callbacks.model_checkpoint.atomic_save", disk_full)
    with pytest.raises(kt.checkpointing.CheckpointError):
        _run(cb, tmp_path, values=[0.25], first=1)
    assert _files(tmp_path) == ["e01.pt"] and cb.state_dict()["retention"] == before


@pytest.mark.parametrize("kwargs, message", [
    ({"save_top_k": 0}, "`save_top_k` must be a positive integer. Received: save_top_k=0"),
    ({"keep_last": 1.5}, "`keep_last` must be a positive integer. Received: keep_last=1.5"),
    ({"save_top_k": 2, "save_best_only": True}, "Pass either `save_best_only=True` or `save_top_k`, not both"),
])
def test_argument_checks(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ModelCheckpoint(tmp_path / "e{epoch}.pt", **kwargs)


@pytest.mark.parametrize("rule", [{"save_top_k": 3}, {"keep_last": 2}])
def test_a_rule_needs_a_field_in_the_file_name(tmp_path, rule):
    name, value = next(iter(rule.items()))
    path = str(tmp_path / "best.pt")
    with pytest.raises(ValueError, match=re.escape(
            f"ModelCheckpoint({name}={value}) keeps several files, so `filepath` needs a field that differs "
            f"between them, e.g. {str(tmp_path / 'best-{epoch:03d}.pt')!r}. Received: filepath={path!r}")):
        ModelCheckpoint(path, **rule)


def test_save_top_k_with_mid_epoch_saves_is_refused_before_training(tmp_path):
    net = _net()
    with pytest.raises(ValueError, match=re.escape("ModelCheckpoint(save_top_k=2) compares the epoch's 'loss', but "
                                                   "save_freq=2 saves in the middle of epochs")):
        net.fit(torch.randn(8, 3), torch.randn(8, 1), verbose=0,
                callbacks=[ModelCheckpoint(tmp_path / "e{epoch}.pt", monitor="loss", save_top_k=2, save_freq=2)])
    assert _files(tmp_path) == []


def test_keep_last_with_mid_epoch_saves_and_the_batch_field(tmp_path):
    net = _net()
    cb = ModelCheckpoint(tmp_path / "e{epoch}-b{batch}.pt", keep_last=2, save_freq=1)
    net.fit(torch.randn(8, 3), torch.randn(8, 1), batch_size=4, epochs=2, verbose=0, callbacks=[cb])
    assert _files(tmp_path) == ["e2-b1.pt", "e2-b2.pt"]


def test_retention_ranks_max_mode_and_forgets_deleted_files(tmp_path):
    keep = Retention("max", top_k=2)
    assert keep.add(tmp_path / "a", 0.5) == []
    assert keep.add(tmp_path / "b", float("nan")) == [str(tmp_path / "b")]  # NaN is unranked: not kept by top_k
    assert keep.admits(0.1) and keep.add(tmp_path / "c", 0.75) == []
    assert not keep.admits(0.5) and keep.admits(0.6) and not keep.admits(float("nan"))
    (tmp_path / "c").write_bytes(b"")  # only c exists on disk now
    fresh = Retention("max", top_k=2)
    fresh.load_state_dict(keep.state_dict())
    assert fresh.best_k == {str(tmp_path / "c"): 0.75}
