"""Step-level validations (fit(validation_every_n_steps=N)) reach CSVLogger, TensorBoard and ModelCheckpoint."""
import csv
import os

import pytest
import torch
from torch import nn

import kerastorch as kt


def model_and_data():
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)))
    model.compile("adam", "mse", optimizer_kwargs={"lr": 0.05}, device="cpu")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 2, generator=g)
    y = x.sum(1, keepdim=True)
    return model, x, y, (x[:16], y[:16])


def test_the_csv_logger_writes_one_row_per_step_validation_beside_its_file(tmp_path):
    model, x, y, val = model_and_data()
    logger = kt.callbacks.CSVLogger(str(tmp_path / "training.csv"))
    model.fit(x, y, batch_size=8, epochs=2, validation_data=val, validation_every_n_steps=3, verbose=0,
              callbacks=[logger])
    with open(tmp_path / "training.steps.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["step", "epoch", "val_loss"]
    expected = model.validation_history
    assert [int(r[0]) for r in rows[1:]] == expected["step"].tolist() == [3, 6, 9]
    assert [int(r[1]) for r in rows[1:]] == expected["epoch"].tolist() == [1, 2, 2]
    assert [float(r[2]) for r in rows[1:]] == expected["val_loss"].tolist()
    assert len((tmp_path / "training.csv").read_text().splitlines()) == 3  # the epoch file: header + 2 epochs


def test_tensorboard_gets_each_step_validation_at_its_global_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, x, y, val = model_and_data()
    model.fit(x, y, batch_size=8, epochs=2, validation_data=val, validation_every_n_steps=3, verbose=0,
              callbacks=[kt.callbacks.TensorBoard(str(tmp_path))])
    events = EventAccumulator(str(tmp_path / "validation")).Reload()
    points = [(e.step, e.value) for e in events.Scalars("evaluation_loss_vs_iterations")]
    steps = model.validation_history
    # the step validations at 3, 6, 9 and the epoch-end ones at 5 and 10
    assert sorted(s for s, _ in points) == [3, 5, 6, 9, 10]
    for step, value in zip(steps["step"], steps["val_loss"], strict=True):
        assert (step, pytest.approx(value)) in [(s, v) for s, v in points]


def test_model_checkpoint_monitors_step_validations_and_keeps_the_top_k(tmp_path):
    model, x, y, val = model_and_data()
    template = str(tmp_path / "s{step:03d}-{val_loss:.4f}.pt")
    checkpoint = kt.callbacks.ModelCheckpoint(template, save_freq="validation", save_top_k=2,
                                              save_weights_only=False)
    model.fit(x, y, batch_size=8, epochs=2, validation_data=val, validation_every_n_steps=3, verbose=0,
              callbacks=[checkpoint])
    # five validations: steps 3, 6, 9 (step-level) and 5, 10 (epoch ends): the best two are kept
    scores = {int(row.step): row.val_loss for row in model.validation_history.itertuples()}
    scores.update({5 * int(row.epoch): row.val_loss for row in model.history.itertuples()})
    best = sorted(scores, key=scores.get)[:2]
    assert sorted(os.listdir(tmp_path)) == sorted(f"s{step:03d}-{scores[step]:.4f}.pt" for step in best)
    assert checkpoint.best_model_score == pytest.approx(min(scores.values()))


def test_validation_saves_inside_an_accumulation_window_are_refused_up_front(tmp_path):
    model, x, y, val = model_and_data()
    model.compile("sgd", "mse", device="cpu", grad_accum_steps=2)
    checkpoint = kt.callbacks.ModelCheckpoint(str(tmp_path / "s{step}.pt"), save_freq="validation")
    with pytest.raises(ValueError, match=r"validation_every_n_steps=3 is not a multiple of grad_accum_steps=2\. "
                                         r"Validate every 6 steps, or save per epoch\."):
        model.fit(x, y, batch_size=8, epochs=1, validation_data=val, validation_every_n_steps=3, verbose=0,
                  callbacks=[checkpoint])
    assert os.listdir(tmp_path) == []
