"""Keras parity: TensorBoard (keras/src/callbacks/tensorboard_test.py::TestTensorBoardV2).

The event files are read back with tensorboard's EventAccumulator, as ``(run folder, tag)`` pairs
(Keras's ``_ObservedSummary``).
"""
import os

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import TensorBoard

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _summaries(logdir, kind="scalars"):
    found = set()
    for run in ("train", "validation"):
        if os.path.isdir(os.path.join(logdir, run)):
            acc = event_accumulator.EventAccumulator(os.path.join(logdir, run), size_guidance={"histograms": 0})
            acc.Reload()
            found |= {(run, tag) for tag in acc.Tags()[kind]}
    return found


def _fit(logdir, validation=True, epochs=2, **kwargs):
    """Keras's _get_model (Flatten -> Dense(1), sgd, mse) on ten 10x10x1 images of ones."""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Flatten(), nn.Linear(100, 1)))
    model.compile("sgd", "mse", device="cpu")
    x, y = torch.ones(10, 10, 10, 1), torch.ones(10, 1)
    model.fit(x, y, batch_size=2, epochs=epochs, validation_data=(x, y) if validation else None, verbose=0,
              callbacks=[TensorBoard(logdir, **kwargs)])
    return model


BASIC = {("train", "epoch_loss"), ("validation", "epoch_loss"), ("train", "epoch_learning_rate"),
         ("validation", "evaluation_loss_vs_iterations")}


def test_tensorboard_basic(tmp_path):
    """keras/src/callbacks/tensorboard_test.py::TestTensorBoardV2::test_TensorBoard_basic"""
    _fit(tmp_path / "tb")
    assert _summaries(tmp_path / "tb") == BASIC


def test_tensorboard_across_invocations(tmp_path):
    """keras/src/callbacks/tensorboard_test.py::TestTensorBoardV2::test_TensorBoard_across_invocations"""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Flatten(), nn.Linear(100, 1)))
    model.compile("sgd", "mse", device="cpu")
    x, y = torch.ones(10, 10, 10, 1), torch.ones(10, 1)
    callback = TensorBoard(tmp_path / "tb")
    for _ in (1, 2):
        model.fit(x, y, batch_size=2, epochs=2, validation_data=(x, y), callbacks=[callback], verbose=0)
    assert _summaries(tmp_path / "tb") == BASIC


def test_tensorboard_no_spurious_event_files(tmp_path):
    """keras/src/callbacks/tensorboard_test.py::TestTensorBoardV2::test_TensorBoard_no_spurious_event_files"""
    _fit(tmp_path / "tb", validation=False)
    runs = {os.path.basename(folder) for folder, _, files in os.walk(tmp_path / "tb")
            if any(name.startswith("events.out.") for name in files)}
    assert runs == {"train"}


def test_tensorboard_batch_metrics(tmp_path):
    """keras/src/callbacks/tensorboard_test.py::TestTensorBoardV2::test_TensorBoard_batch_metrics"""
    _fit(tmp_path / "tb", update_freq=1)
    assert _summaries(tmp_path / "tb") == BASIC | {("train", "batch_loss")}


def test_tensorboard_global_step(tmp_path):
    """keras/src/callbacks/tensorboard_test.py::TestTensorBoardV2::test_TensorBoard_global_step"""
    _fit(tmp_path / "tb", validation=False, update_freq=1, write_steps_per_second=True)
    assert _summaries(tmp_path / "tb") == {("train", "batch_loss"), ("train", "epoch_loss"),
                                           ("train", "epoch_learning_rate"), ("train", "epoch_steps_per_second"),
                                           ("train", "batch_steps_per_second")}


def test_tensorboard_weight_histograms(tmp_path):
    """keras/src/callbacks/tensorboard_test.py::TestTensorBoardV2::test_TensorBoard_weight_histograms

    Keras's tags are ``<layer>/<weight>/histogram``; kerastorch's also histogram the gradients
    (``<layer>/<weight>/gradients``), which Keras does not write.
    """
    _fit(tmp_path / "tb", histogram_freq=1)
    assert _summaries(tmp_path / "tb") == BASIC
    histograms = _summaries(tmp_path / "tb", "histograms")
    assert {tag for run, tag in histograms if tag.endswith("/histogram")} == {"1/weight/histogram",
                                                                             "1/bias/histogram"}
    assert {(run, tag.rsplit("/", 1)[-1]) for run, tag in histograms} == {("train", "histogram"),
                                                                          ("train", "gradients")}
