"""TensorBoard: event files hold the epoch logs exactly (as float32); a clear error without the package."""
import struct
import sys

import pytest
import torch

from kerastorch.callbacks import TensorBoard
from support import TinyNet

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _f32(value):
    return struct.unpack("f", struct.pack("f", value))[0]


def _scalars(directory):
    acc = event_accumulator.EventAccumulator(str(directory))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _fit(log_dir, epochs=2, **kwargs):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", ["mae"], device="cpu")
    x, y = torch.randn(10, 2), torch.randn(10, 1)
    history = model.fit(x, y, batch_size=4, epochs=epochs, validation_data=(x, y), verbose=0,
                        callbacks=[TensorBoard(log_dir, **kwargs)])
    return model, history


def test_epoch_scalars_are_exact(tmp_path):
    _, history = _fit(tmp_path)
    steps = list(history["epoch"])
    assert steps == [1, 2]
    train, val = _scalars(tmp_path / "train"), _scalars(tmp_path / "validation")
    assert sorted(train) == ["epoch_learning_rate", "epoch_loss", "epoch_mae"]  # Keras's name for lr
    assert sorted(val) == ["epoch_loss", "epoch_mae", "evaluation_loss_vs_iterations",
                           "evaluation_mae_vs_iterations"]
    for key in ("loss", "mae"):
        assert train[f"epoch_{key}"] == [(s, _f32(v)) for s, v in zip(steps, history[key])]
    assert train["epoch_learning_rate"] == [(s, _f32(v)) for s, v in zip(steps, history["lr"])]
    for key in ("loss", "mae"):
        assert val[f"epoch_{key}"] == [(s, _f32(v)) for s, v in zip(steps, history[f"val_{key}"])]
        # after each validation pass, with the batches trained so far (3 per epoch) as the step
        values = history[f"val_{key}"]
        assert val[f"evaluation_{key}_vs_iterations"] == [(3 * s, _f32(v)) for s, v in zip(steps, values)]


def test_batch_scalars_with_update_freq(tmp_path):
    seen = []
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")

    from kerastorch.callbacks import LambdaCallback
    record = LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(float(logs["loss"])))
    x, y = torch.randn(12, 2), torch.randn(12, 1)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[record, TensorBoard(tmp_path, update_freq=2)])
    train = _scalars(tmp_path / "train")
    assert train["batch_loss"] == [(2, _f32(seen[1])), (4, _f32(seen[3])), (6, _f32(seen[5]))]
    assert [s for s, _ in train["epoch_loss"]] == [1, 2]


def test_writers_are_closed_after_fit(tmp_path):
    cb = TensorBoard(tmp_path)
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    model.fit(torch.randn(4, 2), torch.randn(4, 1), epochs=1, verbose=0, callbacks=[cb])
    assert cb._writers == {}
    assert not (tmp_path / "validation").exists()  # no validation data, no validation folder


def test_missing_package_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ImportError, match=r"TensorBoard callback needs the `tensorboard` package: "
                                          r"pip install kerastorch\[tensorboard\]"):
        TensorBoard("logs")


def test_update_freq_check():
    with pytest.raises(ValueError, match="`update_freq` must be 'epoch' or a positive integer"):
        TensorBoard("logs", update_freq="batch")


def test_only_batch_logging_adds_a_batch_hook(tmp_path):
    import pickle

    from kerastorch.callbacks.base import CallbackList
    assert CallbackList([TensorBoard(tmp_path)]).on_train_batch_end == ()
    batched = TensorBoard(tmp_path, update_freq=5)
    assert isinstance(batched, TensorBoard) and len(CallbackList([batched]).on_train_batch_end) == 1
    clone = pickle.loads(pickle.dumps(batched))
    assert clone.update_freq == 5 and len(CallbackList([clone]).on_train_batch_end) == 1


def test_graph_histograms_and_lr_are_in_the_event_files(tmp_path):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    x, y = torch.randn(12, 2), torch.randn(12, 1)
    model.fit(x, y, batch_size=4, epochs=4, verbose=0, callbacks=[TensorBoard(tmp_path, histogram_freq=2)])
    acc = event_accumulator.EventAccumulator(str(tmp_path / "train"), size_guidance={"histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert tags["graph"] is True
    assert sorted(tags["histograms"]) == ["fc/bias/gradients", "fc/bias/histogram", "fc/weight/gradients",
                                          "fc/weight/histogram"]  # Keras's <layer>/<weight>/histogram
    assert [e.step for e in acc.Histograms("fc/weight/histogram")] == [2, 4]  # every histogram_freq epochs
    assert [e.step for e in acc.Histograms("fc/weight/gradients")] == [2, 4]
    weights = acc.Histograms("fc/weight/histogram")[-1].histogram_value
    assert weights.num == 2 and weights.min == pytest.approx(float(model.fc.weight.detach().min()), rel=1e-6)
    assert [e.value for e in acc.Scalars("epoch_learning_rate")] == [_f32(0.01)] * 4


def test_the_graph_leaves_training_unchanged_and_no_hook_without_histograms(tmp_path):
    def train(callbacks):
        torch.manual_seed(1)
        model = TinyNet()
        model.add_module("drop", torch.nn.Dropout(0.5))
        model.compile("sgd", "mse", device="cpu")
        model.fit(torch.randn(12, 2), torch.randn(12, 1), batch_size=4, epochs=2, verbose=0, callbacks=callbacks)
        return [p.detach().clone() for p in model.parameters()], model

    plain, _ = train([])
    callback = TensorBoard(tmp_path)
    logged, model = train([callback])
    assert all(torch.equal(a, b) for a, b in zip(plain, logged))
    assert callback.inactive_hooks == ("on_backward_end", "on_epoch_begin") and not model._forward_pre_hooks


def test_evaluate_writes_keras_evaluation_scalars_at_the_global_step(tmp_path):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", ["mae"], device="cpu")
    x, y = torch.randn(12, 2), torch.randn(12, 1)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)  # 6 batches trained
    cb = TensorBoard(tmp_path)
    result = model.evaluate(x, y, callbacks=[cb])
    assert cb._writers == {}  # closed: no epoch end will come
    val = _scalars(tmp_path / "validation")
    assert val == {"evaluation_loss_vs_iterations": [(6, _f32(result["loss"]))],
                   "evaluation_mae_vs_iterations": [(6, _f32(result["mae"]))]}
    assert not (tmp_path / "train").exists()


def test_steps_per_second_tags_and_steps(tmp_path):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    x, y = torch.randn(12, 2), torch.randn(12, 1)
    cb = TensorBoard(tmp_path, update_freq=2, write_steps_per_second=True)
    assert "on_epoch_begin" not in cb.inactive_hooks
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[cb])
    train = _scalars(tmp_path / "train")
    assert [s for s, _ in train["epoch_steps_per_second"]] == [1, 2]
    assert [s for s, _ in train["batch_steps_per_second"]] == [2, 4, 6]
    assert all(v > 0 for _, v in train["epoch_steps_per_second"] + train["batch_steps_per_second"])


def test_a_failed_fit_closes_the_writers(tmp_path):
    from kerastorch.callbacks import LambdaCallback

    def fail(epoch, logs):
        raise RuntimeError("stop here")

    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    cb = TensorBoard(tmp_path)
    with pytest.raises(RuntimeError, match="stop here"):
        model.fit(torch.randn(4, 2), torch.randn(4, 1), epochs=2, verbose=0,
                  callbacks=[cb, LambdaCallback(on_epoch_end=fail)])
    assert cb._writers == {} and not cb._training
    assert _scalars(tmp_path / "train")["epoch_loss"][0][0] == 1  # the epoch written before the error is on disk
