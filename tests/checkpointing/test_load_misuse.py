"""Loads never half-apply: every mismatch is refused before the model, optimizer, history or files change."""
import os
import re

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import BackupAndRestore, CSVLogger, ModelCheckpoint
from kerastorch.checkpointing import CheckpointError
from kerastorch.checkpointing.compatibility import CheckpointMismatchError
from misuse_support import assert_unchanged, snapshot
from support import TinyNet


def data(n=12):
    torch.manual_seed(1)
    x = torch.randn(n, 2)
    return x, (x.sum(1, keepdim=True) > 0).float()


def trained(out=1, optimizer="sgd", **compile_args):
    """A compiled TinyNet with one epoch of history and optimizer state."""
    torch.manual_seed(0)
    model = TinyNet(out)
    model.compile(optimizer, "mse", device="cpu", **compile_args)
    x = torch.randn(12, 2)
    model.fit(x, torch.zeros(12, out), batch_size=4, verbose=0)
    return model


@pytest.fixture
def folder(tmp_path):
    """The test's folder, holding a user file that a refused call must leave alone."""
    (tmp_path / "log.csv").write_text("epoch,loss\n1,0.5\n")
    return tmp_path


def full_checkpoint(path, model):
    model.save(path)
    return path


# ---------------------------------------------------------------- load_weights
def test_missing_keys_are_named_and_nothing_is_loaded(folder):
    torch.save({"fc.weight": torch.zeros(1, 2)}, folder / "w.pt")
    model = trained()
    before = snapshot(model, folder)
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            "missing from the file (1 of the model's 2): fc.bias. Nothing was loaded. Load a file saved from the "
            "same architecture, or pass strict=False")):
        model.load_weights(folder / "w.pt")
    assert_unchanged(model, before, folder)


def test_unexpected_keys_are_named_and_nothing_is_loaded(folder):
    state = {**trained().state_dict(), "head.weight": torch.zeros(3)}
    torch.save(state, folder / "w.pt")
    model = trained()
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    before = snapshot(model, folder)
    with pytest.raises(CheckpointMismatchError, match=r"in the file but not in the model \(1\): head\.weight"):
        model.load_weights(folder / "w.pt")
    assert_unchanged(model, before, folder)


def test_shape_mismatches_name_both_shapes_and_the_file(folder):
    trained(out=3).save_weights(folder / "w3.pt")
    model = trained()
    before = snapshot(model, folder)
    path = str(folder / "w3.pt")
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            f"The weights in {path!r} do not fit TinyNet: shape mismatches (2): fc.weight: file (3, 2), model "
            "(1, 2), fc.bias: file (3,), model (1,). Nothing was loaded.")):
        model.load_weights(path)
    assert_unchanged(model, before, folder)


def test_strict_false_still_refuses_a_shape_mismatch_instead_of_loading_half(folder):
    # torch's load_state_dict(strict=False) would copy fc.weight, then raise for fc.bias.
    torch.save({"fc.weight": torch.full((1, 2), 7.0), "fc.bias": torch.zeros(4)}, folder / "half.pt")
    model = trained()
    before = snapshot(model, folder)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatches \(1\): fc\.bias: file \(4,\), model \(1,\)"):
        model.load_weights(folder / "half.pt", strict=False)
    assert_unchanged(model, before, folder)


def test_strict_false_warns_about_missing_keys_and_returns_torch_result(folder):
    torch.save({"fc.weight": torch.full((1, 2), 7.0)}, folder / "w.pt")
    model = trained()
    bias = model.fc.bias.detach().clone()
    with pytest.warns(UserWarning, match=r"strict=False\) skipped 1 missing key\(s\): fc\.bias and 0 unexpected "
                                         r"key\(s\)\. The missing ones keep their current values\."):
        result = model.load_weights(folder / "w.pt", strict=False)
    assert (result.missing_keys, result.unexpected_keys) == (["fc.bias"], [])
    assert torch.equal(model.fc.weight, torch.full((1, 2), 7.0)) and torch.equal(model.fc.bias, bias)


def test_strict_false_warns_about_unexpected_keys(folder):
    torch.save({**trained().state_dict(), "extra": torch.ones(2)}, folder / "w.pt")
    model = trained()
    with pytest.warns(UserWarning, match=r"skipped 0 missing key\(s\) and 1 unexpected key\(s\): extra\."):
        result = model.load_weights(folder / "w.pt", strict=False)
    assert result.unexpected_keys == ["extra"]


def test_long_key_lists_show_five_and_count_the_rest(folder):
    torch.save({f"layer{i}.weight": torch.zeros(1) for i in range(8)}, folder / "w.pt")
    model = trained()
    before = snapshot(model, folder)
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            "in the file but not in the model (8): layer0.weight, layer1.weight, layer2.weight, layer3.weight, "
            "layer4.weight (and 3 more)")):
        model.load_weights(folder / "w.pt")
    assert_unchanged(model, before, folder)


def test_the_mismatch_error_is_a_value_error_and_a_checkpoint_error():
    assert issubclass(CheckpointMismatchError, ValueError) and issubclass(CheckpointMismatchError, CheckpointError)
    assert issubclass(CheckpointMismatchError, RuntimeError)  # what torch's own load_state_dict raises


def test_a_directory_is_not_a_weights_file(folder):
    model = trained()
    before = snapshot(model, folder)
    with pytest.raises(IsADirectoryError, match=r"`load_weights` needs a file\. Received: path=.*, which is a "
                                                r"directory\. Pass the weights file inside it"):
        model.load_weights(folder)
    assert_unchanged(model, before, folder)


def test_a_missing_file_is_named(folder):
    model = trained()
    before = snapshot(model, folder)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        model.load_weights(folder / "nope.pt")
    assert_unchanged(model, before, folder)


def test_a_file_without_weights_is_refused(folder):
    torch.save({"epoch": 3, "note": "hello"}, folder / "odd.pt")
    model = trained()
    before = snapshot(model, folder)
    with pytest.raises(CheckpointError, match="holds neither model weights nor a kerastorch training checkpoint"):
        model.load_weights(folder / "odd.pt")
    assert_unchanged(model, before, folder)


# ---------------------------------------------------------------- resume_from
def resume(model, path, folder, **fit_args):
    x, y = data()
    callbacks = [CSVLogger(folder / "log.csv")]  # would truncate the user's file in on_train_begin
    return model.fit(x, y, batch_size=fit_args.pop("batch_size", 4), epochs=3, verbose=0, callbacks=callbacks,
                     resume_from=path, **fit_args)


def test_resume_with_another_optimizer_type_is_refused_before_any_callback(folder):
    path = full_checkpoint(folder / "run.pt", trained(optimizer="sgd"))
    model = trained(optimizer="adam")
    before = snapshot(model, folder)
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            "was saved with the optimizer SGD; this model is compiled with Adam. Nothing was loaded. Compile with "
            "the optimizer of the run that wrote the checkpoint (e.g. compile(optimizer='sgd', ...))")):
        resume(model, path, folder)
    assert_unchanged(model, before, folder)


def test_resume_with_other_weight_shapes_is_refused(folder):
    path = full_checkpoint(folder / "run.pt", trained(out=3))
    model = trained()
    before = snapshot(model, folder)
    with pytest.raises(CheckpointMismatchError, match=r"run\.pt' do not fit TinyNet: shape mismatches \(2\)"):
        resume(model, path, folder)
    assert_unchanged(model, before, folder)


def test_resume_with_other_parameter_groups_is_refused(folder):
    path = full_checkpoint(folder / "run.pt", trained())
    torch.manual_seed(0)
    model = TinyNet()
    model.compile(torch.optim.SGD([model.fc.weight], lr=0.1), "mse", device="cpu")
    before = snapshot(model, folder)
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            "has parameter groups of sizes [2]; the compiled optimizer has [1]. Nothing was loaded.")):
        resume(model, path, folder)
    assert_unchanged(model, before, folder)


def test_resume_with_parameters_in_another_order_is_refused(folder):
    path = full_checkpoint(folder / "run.pt", trained(optimizer="adam"))
    torch.manual_seed(0)
    model = TinyNet()
    model.compile(torch.optim.Adam([model.fc.bias, model.fc.weight]), "mse", device="cpu")
    before = snapshot(model, folder)
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            "The optimizer state 'exp_avg' in") + r".*" + re.escape("has shape (1, 2) for a parameter of shape (1,)")):
        resume(model, path, folder)
    assert_unchanged(model, before, folder)


def test_resume_with_another_scheduler_type_is_refused(folder):
    path = full_checkpoint(folder / "run.pt", trained(lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2)))
    model = trained(lr_scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.5))
    before = snapshot(model, folder)
    with pytest.raises(CheckpointMismatchError, match="saved with the learning-rate scheduler StepLR; this model is "
                                                      "compiled with ExponentialLR"):
        resume(model, path, folder)
    assert_unchanged(model, before, folder)


def test_resume_from_a_weights_file_is_refused(folder):
    model = trained()
    model.save_weights(folder / "w.pt")
    before = snapshot(model, folder)
    with pytest.raises(CheckpointError, match=r"is a weights-only file: it cannot resume training"):
        resume(model, folder / "w.pt", folder)
    assert_unchanged(model, before, folder)


def test_resume_from_a_missing_file_is_refused(folder):
    model = trained()
    before = snapshot(model, folder)
    with pytest.raises(FileNotFoundError, match=r"`resume_from` must be an existing checkpoint file or 'auto'"):
        resume(model, folder / "nope.pt", folder)
    assert_unchanged(model, before, folder)


def mid_epoch_checkpoint(folder):
    """Written after batch 2 of 3 (12 samples in batches of 4)."""
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    x, y = data()
    model.fit(x, y, batch_size=4, verbose=0,
              callbacks=[ModelCheckpoint(folder / "mid" / "m.pt", save_weights_only=False, save_freq=2)])
    checkpoint = kt.checkpointing.safe_load(folder / "mid" / "m.pt")
    assert (checkpoint["epoch"], checkpoint["batch"], checkpoint["batch_size"], checkpoint["num_samples"]) == \
        (0, 2, 4, 12)
    return folder / "mid" / "m.pt"


def test_mid_epoch_resume_with_another_batch_size_is_refused(folder):
    path = mid_epoch_checkpoint(folder)
    model = trained()
    before = snapshot(model, folder)
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            "was written in the middle of epoch 1, after 2 batches, with batch_size=4 and 12 training samples; "
            "this fit has batch_size=6 and 12 samples. Skipping the 2 trained batches now would skip other "
            "samples. Nothing was loaded. Resume with the batch_size and training data of the interrupted run")):
        resume(model, path, folder, batch_size=6)
    assert_unchanged(model, before, folder)


def test_mid_epoch_resume_with_other_data_is_refused(folder):
    path = mid_epoch_checkpoint(folder)
    model = trained()
    before = snapshot(model, folder)
    x, y = data(20)
    with pytest.raises(CheckpointMismatchError, match=r"batch_size=4 and 12 training samples; this fit has "
                                                      r"batch_size=4 and 20 samples"):
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, resume_from=path)
    assert_unchanged(model, before, folder)


def test_mid_epoch_resume_with_the_same_sizes_finishes_the_epoch(folder):
    path = mid_epoch_checkpoint(folder)
    model = trained()
    x, y = data()
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, resume_from=path)
    assert list(history["epoch"]) == [1, 2] and model._record.global_step == 6


def test_resume_auto_without_checkpoint_callbacks_warns_and_trains_from_scratch():
    x, y = data()
    model = trained()
    with pytest.warns(UserWarning, match=re.escape(
            "fit(resume_from='auto') found nothing to resume from: no callback writes resumable checkpoints. Add "
            "ModelCheckpoint(..., save_weights_only=False) or BackupAndRestore(...)")):
        history = model.fit(x, y, epochs=2, verbose=0, resume_from="auto")
    assert len(history) == 3


def test_resume_auto_with_empty_folders_names_them(tmp_path):
    x, y = data()
    model = trained()
    callbacks = [ModelCheckpoint(tmp_path / "ckpt" / "last.pt", save_weights_only=False),
                 BackupAndRestore(tmp_path / "backup")]
    with pytest.warns(UserWarning, match=re.escape(
            f"found no valid checkpoint to resume from in: {tmp_path / 'ckpt'} (ModelCheckpoint), "
            f"{tmp_path / 'backup'} (BackupAndRestore). Training starts from scratch.")):
        model.fit(x, y, epochs=1, verbose=0, resume_from="auto", callbacks=callbacks)
    assert len(model.history) == 2


def test_an_incompatible_backup_is_refused_and_kept(folder):
    backup = BackupAndRestore(folder / "backup", delete_checkpoint=False)
    x, y = data()
    old = trained(out=3)
    old.fit(x, torch.zeros(12, 3), verbose=0, callbacks=[backup])
    model = trained()
    before = snapshot(model, folder)
    path = str(folder / "backup" / "backup.pt")
    with pytest.raises(CheckpointMismatchError, match=re.escape(f"The weights in {path!r} do not fit TinyNet")):
        model.fit(x, y, verbose=0, callbacks=[CSVLogger(folder / "log.csv"),
                                              BackupAndRestore(folder / "backup")])
    assert_unchanged(model, before, folder)
    assert os.path.exists(path)


def test_a_checkpoint_without_the_new_fields_still_resumes(folder):
    """Checkpoints written before the optimizer type and sizes were recorded skip those checks."""
    model = trained()
    model.save(folder / "old.pt")
    checkpoint = kt.checkpointing.safe_load(folder / "old.pt")
    for key in ("optimizer_type", "lr_scheduler_type"):
        del checkpoint[key]
    torch.save(checkpoint, folder / "old.pt")
    x, y = data()
    assert len(trained().fit(x, y, epochs=2, verbose=0, resume_from=folder / "old.pt")) == 2


def test_a_torchkeras_net_prefixed_file_still_loads(tmp_path):
    net = nn.Linear(2, 1)
    torch.save({f"net.{k}": v for k, v in net.state_dict().items()}, tmp_path / "tk.pt")
    model = kt.Model.wrap(nn.Linear(2, 1))
    assert model.load_weights(tmp_path / "tk.pt").missing_keys == []
    assert torch.equal(model.weight, net.weight)
