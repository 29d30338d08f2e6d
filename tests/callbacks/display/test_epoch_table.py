"""The epoch table: compact, fitted to the terminal width (golden files at 80 and 160 columns), HTML in notebooks."""
import os
from pathlib import Path

import pytest

from kerastorch.callbacks.display import EpochTable, epoch_table
from kerastorch.callbacks.display.epoch_table import _HtmlTable, wrap_parts
from kerastorch.engine.session import FitRecord, Session

GOLDEN = Path(__file__).parents[2] / "golden"
METRICS = ("loss", "accuracy", "precision", "recall", "f1", "auc")


def epoch_logs(epoch):
    """Six metrics and their validation values, distinct per epoch; lr halves each epoch."""
    train = {name: round(0.9 - 0.02 * epoch + 0.01 * i, 4) for i, name in enumerate(METRICS)}
    val = {f"val_{name}": round(value + 0.0123, 4) for name, value in train.items()}
    return {**train, **val, "lr": 0.01 / 2 ** epoch}


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """Each read of the table's clock is 0.4 s after the one before: every epoch takes 0.4 s."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(epoch_table, "clock", lambda: 0.4 * next(ticks))


def start(table, epochs, base=0):
    session = Session(None, FitRecord(), None, epochs)
    session.epoch_base = base
    table.set_params({"epochs": epochs})
    table.set_session(session)
    table.on_train_begin()


def run_epoch(table, epoch, logs):
    table.on_epoch_begin(epoch)
    table.on_epoch_end(epoch, logs)


def run_table(table, epochs=3, base=0):
    start(table, epochs, base)
    for epoch in range(epochs):
        run_epoch(table, epoch, epoch_logs(epoch))
    table.on_train_end()


@pytest.mark.parametrize("columns", [80, 160])
def test_table_matches_the_golden_file_and_fits_the_width(capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))  # what shutil.get_terminal_size reads first
    run_table(EpochTable())
    out = capsys.readouterr().out
    golden = GOLDEN / f"epoch_table_{columns}.txt"
    if os.environ.get("KERASTORCH_UPDATE_GOLDEN") == "1":  # then review the diff
        golden.write_text(out)
    assert out == golden.read_text()
    assert max(len(line) for line in out.splitlines()) <= columns


def test_a_wide_terminal_gets_rules_around_the_header_only(capsys):
    table = EpochTable(columns=200)
    start(table, 40)
    for epoch in range(40):
        run_epoch(table, epoch, {"loss": 0.5 - 0.01 * epoch, "val_loss": 0.6 - 0.01 * epoch, "lr": 0.001})
    table.on_train_end()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 + 40 + 1  # rule, header, rule, one line per epoch, closing rule
    assert [i for i, line in enumerate(lines) if line.startswith("+")] == [0, 2, 43]
    assert lines[1] == "|  epoch |  time |   loss | val_loss |     lr |"
    assert lines[42] == "|     40 |  0.4s | 0.1100 |   0.2100 |  0.001 |"


def test_shorter_numbers_before_giving_up_the_table(capsys):
    logs = {"loss": 0.123456, "accuracy": 0.5, "val_loss": 0.2, "val_accuracy": 0.25, "lr": 0.001}
    table = EpochTable(columns=71)  # 4 decimals need 74 columns, 3 decimals 70
    start(table, 1)
    run_epoch(table, 0, logs)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "| epoch |  time |  loss | accuracy | val_loss | val_accuracy |    lr |"
    assert lines[3] == "|     1 |  0.4s | 0.123 |    0.500 |    0.200 |        0.250 | 0.001 |"


def test_epoch_numbers_continue_from_the_history(capsys):
    run_table(EpochTable(columns=200), epochs=2, base=5)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("|")[1].strip() for line in lines[3:5]] == ["6", "7"]


def test_a_value_that_outgrows_its_column_reprints_the_header(capsys):
    table = EpochTable(columns=200)
    start(table, 2)
    run_epoch(table, 0, {"loss": 0.5})
    run_epoch(table, 1, {"loss": 123456.5})
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["+--------+-------+--------+", "|  epoch |  time |   loss |", "+--------+-------+--------+",
                     "|      1 |  0.4s | 0.5000 |", "+--------+-------+--------+",
                     "+--------+-------+-------------+", "|  epoch |  time |        loss |",
                     "+--------+-------+-------------+", "|      2 |  0.4s | 123456.5000 |"]


def test_wrap_parts_breaks_between_values_only():
    parts = ["Epoch 10/10", "loss: 0.1234", "val_loss: 0.2345", "lr: 0.001"]
    assert wrap_parts(parts, 32) == ["Epoch 10/10 - loss: 0.1234", "    val_loss: 0.2345 - lr: 0.001"]
    assert wrap_parts(["a-very-long-part-that-is-wider"], 10) == ["a-very-long-part-that-is-wider"]


def test_notebook_table_is_one_html_table_updated_in_place(monkeypatch):
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    def display(obj, display_id=False):
        assert display_id is True
        shown.append(("display", obj))
        return Handle()

    import IPython.display
    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr("kerastorch.callbacks.display.epoch_table.in_notebook", lambda: True)
    run_table(EpochTable(), epochs=3)
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    final = shown[-1][1]
    assert isinstance(final, _HtmlTable) and final._repr_html_().count("<tr>") == 4  # header + 3 epochs
    assert "<th>epoch</th><th>time</th><th>loss</th>" in final._repr_html_()
    assert "<td>3</td><td>0.4s</td><td>0.8600</td>" in final._repr_html_()  # epoch 3's loss: 0.9 - 2 * 0.02
    assert repr(final).splitlines()[3].startswith("|      1 |  0.4s |")
