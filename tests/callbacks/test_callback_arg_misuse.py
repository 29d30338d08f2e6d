"""Callback arguments that cannot work fail before training: before any on_train_begin, any file, any step.

Every refused fit has a CSVLogger *first* in its callback list, writing over the user's file:
that the file is unchanged shows the check ran before any callback's ``on_train_begin``.
"""
import os
import re

import pytest
import torch

from kerastorch.callbacks import (
    BackupAndRestore,
    CSVLogger,
    EarlyStopping,
    LivePlot,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from misuse_support import assert_unchanged, snapshot
from support import TinyNet

USER_CSV = "epoch,loss\n1,0.5\n"


def data():
    torch.manual_seed(1)
    x = torch.randn(8, 2)
    return x, (x.sum(1, keepdim=True) > 0).float()


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = TinyNet()
    net.compile("sgd", "bce_with_logits", ["accuracy"], device="cpu")
    return net


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "log.csv").write_text(USER_CSV)
    return tmp_path


def refused(model, folder, callback, error, match, **fit_args):
    """fit with [CSVLogger over the user's file, callback] raises before changing anything."""
    before = snapshot(model, folder)
    x, y = data()
    with pytest.raises(error, match=match):
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[CSVLogger(folder / "log.csv"), callback],
                  **fit_args)
    assert_unchanged(model, before, folder)
    assert (folder / "log.csv").read_text() == USER_CSV


# ---------------------------------------------------------------- ModelCheckpoint templates
def test_a_val_field_without_validation_data(model, folder):
    refused(model, folder, ModelCheckpoint(folder / "w-{val_accuracy:.2f}.pt"), ValueError, re.escape(
        "uses {val_accuracy}, but fit has no validation data, so no val_* value is logged. Pass validation_data= "
        "or validation_split=, or use one of: epoch, loss, accuracy, lr."))


def test_a_misspelt_field_suggests_the_logged_name(model, folder):
    x, y = data()
    refused(model, folder, ModelCheckpoint(folder / "w-{val_los:.3f}.pt"), ValueError, re.escape(
        "uses {val_los}, which fit will not log. Did you mean {val_loss}? Available: epoch, loss, accuracy, "
        "val_loss, val_accuracy, lr."), validation_data=(x, y))


def test_keras_acc_name_is_not_silently_accepted(model, folder):
    refused(model, folder, ModelCheckpoint(folder / "w-{acc}.pt"), ValueError,
            r"uses \{acc\}, which fit will not log\. Did you mean \{accuracy\}\?")


def test_an_integer_format_for_a_float_value(model, folder):
    refused(model, folder, ModelCheckpoint(folder / "w-{loss:d}.pt"), ValueError, re.escape(
        "cannot format {loss:d}: loss is a float (Unknown format code 'd' for object of type 'float'). Use a "
        "float format such as {loss:.4f}."))


def test_a_string_format_for_the_epoch(model, folder):
    refused(model, folder, ModelCheckpoint(folder / "w-{epoch:>5s}.pt"), ValueError, re.escape(
        "cannot format {epoch:>5s}: epoch is an int (Unknown format code 's' for object of type 'int'). Use an "
        "int format such as {epoch:03d}."))


@pytest.mark.parametrize("field", ["{}", "{0}"])
def test_positional_fields(model, folder, field):
    refused(model, folder, ModelCheckpoint(folder / f"w-{field}.pt"), ValueError,
            re.escape(f"has a positional field {field}: name the value, e.g. {{epoch}} or {{loss:.4f}}."))


def test_an_unbalanced_brace(model, folder):
    refused(model, folder, ModelCheckpoint(folder / "w-{epoch.pt"), ValueError,
            r"is not a valid format template \(expected '\}' before end of string\)\. Write a literal brace as")


def test_an_attribute_of_a_logged_value(model, folder):
    refused(model, folder, ModelCheckpoint(folder / "w-{loss.real.x}.pt"), ValueError,
            r"cannot format \{loss\.real\.x\}: loss is a float \('float' object has no attribute 'x'\)")


def test_logged_fields_in_mid_epoch_saves(model, folder):
    refused(model, folder, ModelCheckpoint(folder / "w-{epoch}-{loss:.2f}.pt", save_freq=1), ValueError,
            re.escape("uses {loss}, but save_freq=1 saves in the middle of epochs, where only {epoch} and {batch} "
                      "are known. Use only those in the name, or save_freq='epoch'."))


def test_save_best_only_with_a_batch_save_freq_would_never_save(model, folder):
    refused(model, folder, ModelCheckpoint(folder / "best.pt", monitor="loss", save_best_only=True, save_freq=2),
            ValueError, re.escape("ModelCheckpoint(save_best_only=True) compares the epoch's 'loss', but save_freq=2 "
                                  "saves in the middle of epochs, where no epoch value exists: nothing would ever be "
                                  "saved. Use save_freq='epoch' with save_best_only=True."))


def test_save_best_only_on_an_unlogged_monitor(model, folder):
    refused(model, folder, ModelCheckpoint(folder / "best.pt", save_best_only=True), ValueError,
            r"ModelCheckpoint monitors 'val_loss', but fit has no validation data")


# ---------------------------------------------------------------- files and folders
def test_checkpoint_filepath_that_is_a_directory(model, folder):
    (folder / "ckpt").mkdir()
    path = str(folder / "ckpt")
    refused(model, folder, ModelCheckpoint(path), ValueError, re.escape(
        f"ModelCheckpoint `filepath` must name a file, but {path!r} is a directory. Received: filepath={path!r}. "
        f"Name a file inside it, e.g. {os.path.join(path, 'epoch{epoch:02d}.pt')!r}."))


def test_checkpoint_filepath_ending_with_a_separator(model, folder):
    refused(model, folder, ModelCheckpoint(str(folder / "new") + os.sep), ValueError,
            r"`filepath` must name a file, but .*new/' is a directory")
    assert not (folder / "new").exists()


def test_checkpoint_template_that_formats_to_an_existing_directory(model, folder):
    (folder / "1").mkdir()
    refused(model, folder, ModelCheckpoint(folder / "{epoch}"), ValueError,
            r"ModelCheckpoint `filepath` must name a file, but .*/1' is a directory")


def test_checkpoint_folder_that_is_a_file(model, folder):
    (folder / "taken").write_text("x")
    refused(model, folder, ModelCheckpoint(folder / "taken" / "w.pt"), ValueError,
            r"ModelCheckpoint `filepath`=.*taken/w\.pt' is inside .*taken', which is a file, not a folder\.")


def test_backup_dir_that_is_a_file(model, folder):
    (folder / "backup").write_text("x")
    path = str(folder / "backup")
    refused(model, folder, BackupAndRestore(path), ValueError, re.escape(
        f"BackupAndRestore `backup_dir` must be a folder, but {path!r} is a file. Received: backup_dir={path!r}. "
        "Pass a folder name (it is created if missing)."))


def test_tensorboard_log_dir_that_is_a_file(model, folder):
    from kerastorch.callbacks import TensorBoard
    (folder / "runs").write_text("x")
    refused(model, folder, TensorBoard(folder / "runs"), ValueError,
            r"TensorBoard `log_dir` must be a folder, but .*runs' is a file")


def test_csv_filename_that_is_a_directory(model, folder):
    (folder / "logs").mkdir()
    refused(model, folder, CSVLogger(folder / "logs"), ValueError,
            r"CSVLogger `filename` must name a file, but .*logs' is a directory\. .*Name a file inside it, e\.g\. "
            r".*logs/training\.csv'")


def test_csv_filename_inside_a_file(model, folder):
    refused(model, folder, CSVLogger(folder / "log.csv" / "inner.csv"), ValueError,
            r"CSVLogger `filename`=.*log\.csv/inner\.csv' is inside .*log\.csv', which is a file, not a folder")


def test_csv_append_to_a_file_lacking_the_logged_columns(model, folder):
    (folder / "old.csv").write_text("epoch,loss\n1,0.5\n")
    refused(model, folder, CSVLogger(folder / "old.csv", append=True), ValueError, re.escape(
        "CSVLogger(append=True): ") + r".*old\.csv' has the columns \['epoch', 'loss'\], which lack the "
        r"\['accuracy', 'lr'\] this fit logs\. Write to a new file or use append=False\.")


@pytest.mark.parametrize("separator", ["", ",,", None])
def test_csv_separator_must_be_one_character(separator):
    with pytest.raises(ValueError, match=re.escape(
            f"`separator` must be a single character, e.g. ',' or ';'. Received: separator={separator!r}")):
        CSVLogger("log.csv", separator=separator)


# ---------------------------------------------------------------- what stays allowed
def test_valid_templates_and_a_new_csv_folder_work(model, tmp_path):
    x, y = data()
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, validation_data=(x, y), callbacks=[
        ModelCheckpoint(tmp_path / "ckpt" / "e{epoch:.2f}-{val_loss:.3f}-{{literal}}.pt"),
        ModelCheckpoint(tmp_path / "steps" / "s{epoch:03d}.pt", save_freq=1),
        CSVLogger(tmp_path / "new" / "log.csv")])
    names = sorted(os.listdir(tmp_path / "ckpt"))
    assert [re.sub(r"-\d\.\d{3}-", "-x-", n) for n in names] == ["e1.00-x-{literal}.pt", "e2.00-x-{literal}.pt"]
    assert sorted(os.listdir(tmp_path / "steps")) == ["s001.pt", "s002.pt"]
    assert (tmp_path / "new" / "log.csv").read_text().splitlines()[0] == "epoch,loss,accuracy,val_loss,val_accuracy,lr"


def test_fields_a_custom_step_may_log_are_not_refused(tmp_path):
    class TwoLosses(TinyNet):
        def train_step(self, batch):
            logs = super().train_step(batch)
            return {**logs, "l1": logs["loss"] * 0 + 1.5}

    torch.manual_seed(0)
    net = TwoLosses()
    net.compile("sgd", "mse", device="cpu")
    x, y = data()
    net.fit(x, y, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "w-{l1:.1f}.pt")])
    assert os.listdir(tmp_path) == ["w-1.5.pt"]


# ---------------------------------------------------------------- monitors, before any file is opened
@pytest.mark.parametrize("make", [lambda: EarlyStopping(monitor="val_acc"),
                                  lambda: ReduceLROnPlateau(monitor="val_acc"),
                                  lambda: LivePlot(monitor="val_acc", path="curves.png")])
def test_a_monitor_fit_will_not_log_is_refused_before_the_csv_is_opened(model, folder, make, monkeypatch):
    monkeypatch.chdir(folder)
    refused(model, folder, make(), ValueError, r"monitor.*'val_acc'")
