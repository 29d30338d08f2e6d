"""Any order of calls works: evaluate before fit, recompile, reload, nested and concurrent calls."""
import os
import threading

import pytest
import torch

from kerastorch.callbacks import Callback, LambdaCallback, ModelCheckpoint
from kerastorch.engine.reentry import running_calls
from misuse_support import assert_unchanged, snapshot
from support import TinyNet

METRIC_SETS = [["accuracy"], ["precision", "recall", "f1"], ["mae", "mse", "rmse"], ["auc"], ["accuracy", "auc"]]


def data():
    torch.manual_seed(1)
    x = torch.randn(16, 2)
    return x, (x.sum(1, keepdim=True) > 0).float()


def compiled(metrics=("accuracy",), loss="bce_with_logits"):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", loss, list(metrics), optimizer_kwargs={"lr": 0.1}, device="cpu")
    return model


@pytest.mark.parametrize("metrics", METRIC_SETS, ids=lambda m: "-".join(m))
def test_evaluate_before_fit_then_fit_trains_exactly_as_without_it(metrics):
    x, y = data()
    plain = compiled(metrics)
    expected = plain.fit(x, y, batch_size=4, epochs=2, verbose=0, validation_data=(x, y))
    model = compiled(metrics)
    before = model.evaluate(x, y)
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, validation_data=(x, y))
    assert history.equals(expected)
    assert sorted(before) == sorted(["loss", *metrics])
    assert model.evaluate(x, y) == plain.evaluate(x, y)


def test_recompile_between_fits_keeps_the_history_and_the_step_count():
    x, y = data()
    model = compiled()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.compile("adam", "bce_with_logits", ["accuracy", "auc"], device="cpu")
    model.evaluate(x, y)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y))
    assert list(history["epoch"]) == [1, 2, 3]  # numbered on across fit calls: one history
    assert model._record.global_step == 2 + 4
    assert history["val_auc"].isna().tolist() == [True, False, False]


def test_predict_and_summary_before_compile_then_fit():
    x, y = data()
    torch.manual_seed(0)
    model = TinyNet()
    assert model.predict(x).shape == (16, 1)
    assert "Total params: 3" in model.summary(input_shape=(2,), print_fn=None)
    model.compile("sgd", "bce_with_logits", ["accuracy"], device="cpu")
    assert len(model.fit(x, y, verbose=0)) == 1
    assert "Total params: 3" in model.summary(input_shape=(2,), print_fn=None)


def test_save_load_weights_and_evaluate_in_any_order(tmp_path):
    x, y = data()
    model = compiled(["accuracy", "auc"])
    model.fit(x, y, batch_size=4, verbose=0)
    model.save(tmp_path / "full.pt")
    trained = model.evaluate(x, y)
    model.fit(x, y, batch_size=4, verbose=0)
    model.load_weights(tmp_path / "full.pt")
    assert model.evaluate(x, y) == trained
    model.fit(x, y, batch_size=4, verbose=0, validation_data=(x, y))
    assert len(model.history) == 3


HOOKS = ["on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end", "on_epoch_end",
         "on_test_end"]


@pytest.mark.parametrize("hook", HOOKS)
def test_evaluate_inside_a_training_callback_leaves_the_epoch_untouched(hook):
    x, y = data()
    expected = compiled(["accuracy", "auc"]).fit(x, y, batch_size=4, epochs=2, verbose=0,
                                                  validation_data=(x[:8], y[:8]))
    model = compiled(["accuracy", "auc"])
    reference = compiled(["accuracy", "auc"])  # the same weights before training
    first_inner = reference.evaluate(x[4:12], 1 - y[4:12])
    results = []
    probe = LambdaCallback(**{hook: lambda *args: results.append(model.evaluate(x[4:12], 1 - y[4:12]))})
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[probe], validation_data=(x[:8], y[:8]))
    assert history.equals(expected)
    if hook == "on_train_begin":
        assert results == [first_inner]  # the nested evaluate computes the right numbers too


def test_predict_inside_a_training_callback_is_allowed():
    x, y = data()
    shapes = []
    model = compiled()
    model.fit(x, y, batch_size=8, verbose=0,
              callbacks=[LambdaCallback(on_train_batch_end=lambda b, logs: shapes.append(model.predict(x[:3]).shape))])
    assert shapes == [torch.Size([3, 1])] * 2


def test_fit_inside_a_callback_is_refused_and_the_model_is_usable_afterwards():
    x, y = data()
    model = compiled()
    inner = LambdaCallback(on_epoch_end=lambda epoch, logs: model.fit(x, y, verbose=0))
    with pytest.raises(RuntimeError, match=r"`fit\(\)` was called while `fit\(\)` is running on this model \(from a "
                                           r"callback\)\. A model trains in one fit at a time"):
        model.fit(x, y, verbose=0, callbacks=[inner])
    assert running_calls(model) == [] and model._session is None
    assert len(model.fit(x, y, verbose=0)) == 2  # the refused inner fit added nothing; the outer epoch is kept


def test_fit_inside_evaluate_callback_is_refused():
    x, y = data()
    model = compiled()
    before = snapshot(model)
    sneaky = LambdaCallback(on_test_begin=lambda logs: model.fit(x, y, verbose=0))
    with pytest.raises(RuntimeError, match=r"`fit\(\)` was called while `evaluate\(\)` is running"):
        model.evaluate(x, y, callbacks=[sneaky])
    assert_unchanged(model, before)


class Gate(Callback):
    """Holds the fit in its first batch until the test has tried its calls."""

    def __init__(self):
        super().__init__()
        self.inside, self.release = threading.Event(), threading.Event()

    def on_train_batch_begin(self, batch, logs=None):
        self.inside.set()
        assert self.release.wait(30)


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_calls_from_another_thread_while_fit_runs_are_refused(call):
    x, y = data()
    model = compiled()
    gate = Gate()
    worker = threading.Thread(target=lambda: model.fit(x, y, batch_size=8, verbose=0, callbacks=[gate]),
                              name="trainer")
    worker.start()
    try:
        assert gate.inside.wait(30)
        attempt = {"fit": lambda: model.fit(x, y, verbose=0), "evaluate": lambda: model.evaluate(x, y),
                   "predict": lambda: model.predict(x)}[call]
        with pytest.raises(RuntimeError, match=rf"`{call}\(\)` was called from thread 'MainThread' while `fit\(\)` "
                                               r"is running on this model in thread 'trainer'"):
            attempt()
        assert model.training  # the refused call did not switch the running fit to eval mode
    finally:
        gate.release.set()
        worker.join(30)
    assert len(model.history) == 1 and running_calls(model) == []
    assert model.predict(x).shape == (16, 1)


def test_an_on_epoch_end_exception_still_gets_the_decided_checkpoint_written(tmp_path):
    x, y = data()
    model = compiled()
    error = ZeroDivisionError("user bug")

    def boom(epoch, logs):
        raise error

    saver = ModelCheckpoint(tmp_path / "w-{epoch}.pt")
    with pytest.raises(ZeroDivisionError) as raised:
        model.fit(x, y, epochs=3, verbose=0, callbacks=[saver, LambdaCallback(on_epoch_end=boom)])
    assert raised.value is error  # unchanged
    assert os.listdir(tmp_path) == ["w-1.pt"]
    saved = torch.load(tmp_path / "w-1.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_a_write_failing_while_a_hook_raises_is_a_warning_and_the_hook_error_propagates():
    class FailingWriter(Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

        def flush_writes(self):
            raise OSError("disk full")

    x, y = data()
    model = compiled()
    crash = LambdaCallback(on_epoch_end=lambda epoch, logs: 1 / 0)
    with pytest.warns(RuntimeWarning, match=r"could not be written while a callback's exception propagated: "
                                            r"OSError\('disk full'\)"), pytest.raises(ZeroDivisionError):
        model.fit(x, y, verbose=0, callbacks=[FailingWriter(), crash])


def test_fit_before_compile_is_refused_and_changes_nothing():
    x, y = data()
    torch.manual_seed(0)
    model = TinyNet()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match=r"You must call `compile\(\)` before `fit\(\)`"):
        model.fit(x, y, verbose=0)
    with pytest.raises(RuntimeError, match=r"You must call `compile\(\)` before `evaluate\(\)`"):
        model.evaluate(x, y)
    assert_unchanged(model, before)
    assert running_calls(model) == []


def test_batch_size_for_in_memory_training_data_with_a_dataloader_for_validation():
    x, y = data()
    model = compiled()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:6], y[:6]), batch_size=4)
    history = model.fit(x, y, batch_size=8, verbose=0, validation_data=loader)
    assert history["val_loss"].iloc[0] == pytest.approx(model.evaluate(x[:6], y[:6])["loss"], rel=1e-6)


def test_compile_from_a_callback_of_a_running_fit_is_refused_and_changes_nothing():
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    config = model._config
    caught = []

    class Recompile(Callback):
        def on_epoch_end(self, epoch, logs=None):
            try:
                self.model.compile("adam", "mae", device="cpu")
            except RuntimeError as error:
                caught.append(str(error))

    model.fit(torch.randn(8, 2), torch.randn(8, 1), epochs=2, verbose=0, callbacks=[Recompile()])
    assert caught == ["`compile()` was called while `fit()` is running on this model: it would replace the "
                      "optimizer, loss and metrics mid-run. Call `compile()` after `fit()` returns (from a "
                      "callback, stop the fit with `self.model.stop_training = True`)."] * 2
    assert model._config is config and len(model.history) == 2


def test_the_torchkeras_form_takes_numpy_integer_epochs():
    import numpy as np
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 1)),
                                         batch_size=4)
    history = model.fit(np.int64(3), loader, verbose=0)
    assert len(history) == 3 and list(history.columns) == ["loss"]
