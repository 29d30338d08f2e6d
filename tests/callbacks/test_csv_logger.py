"""CSVLogger: exact file contents, header once, append mode, separator."""
import pandas as pd
import pytest
import torch

from kerastorch.callbacks import CSVLogger
from support import TinyNet

# pandas >= 3 parses floats exactly by default and deprecates float_precision.
READ_EXACT = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def _feed(cb, rows):
    cb.on_train_begin(None)
    for epoch, logs in enumerate(rows):
        cb.on_epoch_end(epoch, dict(logs))
    cb.on_train_end(None)


ROWS = [{"val_loss": 0.75, "lr": 0.01, "loss": 0.5, "acc": 0.25},
        {"val_loss": 0.625, "lr": 0.001, "loss": 1 / 3, "acc": 1.0}]


def test_exact_content_in_history_order(tmp_path):
    path = tmp_path / "log.csv"
    _feed(CSVLogger(path), ROWS)
    assert path.read_text() == ("epoch,loss,acc,val_loss,lr\n"
                                "1,0.5,0.25,0.75,0.01\n"
                                "2,0.3333333333333333,1.0,0.625,0.001\n")


def test_overwrites_without_append(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("old\n")
    _feed(CSVLogger(path), ROWS[:1])
    assert path.read_text() == "epoch,loss,acc,val_loss,lr\n1,0.5,0.25,0.75,0.01\n"


def test_append_keeps_the_header_and_its_columns(tmp_path):
    path = tmp_path / "log.csv"
    _feed(CSVLogger(path, append=True), ROWS[:1])  # no file yet: writes the header
    cb = CSVLogger(path, append=True)
    cb.on_train_begin(None)
    cb.on_epoch_end(1, {"lr": 0.001, "loss": 0.125, "val_loss": 0.5})
    cb.on_train_end(None)
    assert path.read_text() == ("epoch,loss,acc,val_loss,lr\n"
                                "1,0.5,0.25,0.75,0.01\n"
                                "2,0.125,,0.5,0.001\n")  # a key the epoch did not log: an empty cell


def test_append_with_a_key_the_header_lacks_is_an_error(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n1,0.5\n")
    cb = CSVLogger(path, append=True)
    cb.on_train_begin(None)
    with pytest.raises(ValueError, match=r"lack the logged \['lr'\]"):
        cb.on_epoch_end(1, {"loss": 0.25, "lr": 0.1})
    cb.on_train_end(None)
    assert path.read_text() == "epoch,loss\n1,0.5\n"


def test_separator(tmp_path):
    path = tmp_path / "log.tsv"
    _feed(CSVLogger(path, separator="\t"), [{"loss": 0.5, "lr": 0.25}])
    assert path.read_text() == "epoch\tloss\tlr\n1\t0.5\t0.25\n"


def test_each_row_is_flushed(tmp_path):
    path = tmp_path / "log.csv"
    cb = CSVLogger(path)
    cb.on_train_begin(None)
    cb.on_epoch_end(0, {"loss": 0.5})
    assert path.read_text() == "epoch,loss\n1,0.5\n"  # before the file is closed
    cb.on_train_end(None)


def test_real_fit_matches_the_history_exactly(tmp_path):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", ["mae"], device="cpu")
    x, y = torch.randn(10, 2), torch.randn(10, 1)
    path = tmp_path / "fit.csv"
    history = model.fit(x, y, batch_size=4, epochs=3, validation_data=(x, y), verbose=0, callbacks=[CSVLogger(path)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,loss,mae,val_loss,val_mae,lr"
    assert lines[1:] == [",".join(f"{v}" for v in row) for row in history.itertuples(index=False)]
    read = pd.read_csv(path, **READ_EXACT)
    pd.testing.assert_frame_equal(read, history, check_exact=True)
    more = model.fit(x, y, batch_size=4, epochs=5, initial_epoch=3, validation_data=(x, y), verbose=0,
                     callbacks=[CSVLogger(path, append=True)])
    pd.testing.assert_frame_equal(pd.read_csv(path, **READ_EXACT), more, check_exact=True)


def test_a_fit_refused_on_its_first_batch_leaves_the_existing_log_untouched(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss\n1,0.5\n")
    model = TinyNet()
    model.compile("sgd", "cross_entropy", device="cpu")  # float targets: refused on the first batch
    with pytest.raises(ValueError, match="expects integer class indices"):
        model.fit(torch.randn(8, 2), torch.rand(8), verbose=0, callbacks=[CSVLogger(log)])
    assert log.read_text() == "epoch,loss\n1,0.5\n"
