"""Callback dispatch: exact hook order, override table, argument checks."""
import pytest
import torch

from kerastorch.callbacks.base import HOOKS, Callback, CallbackList
from support import TinyNet


class Recorder(Callback):
    """Records every hook call with its index argument."""

    def __init__(self):
        super().__init__()
        self.calls = []


def _recording(hook):
    def method(self, *args):
        index = args[0] if args and isinstance(args[0], int) else None
        self.calls.append(hook if index is None else f"{hook}({index})")
    return method


for _hook in HOOKS:
    setattr(Recorder, _hook, _recording(_hook))


def test_fit_hook_order_with_validation():
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    recorder = Recorder()
    x, y = torch.randn(5, 2), torch.randn(5, 1)
    model.fit(x, y, batch_size=3, epochs=2, validation_data=(x[:2], y[:2]), callbacks=[recorder], verbose=0)
    epoch = lambda e: [f"on_epoch_begin({e})",  # noqa: E731
                       "on_train_batch_begin(0)", "on_backward_end(0)", "on_train_batch_end(0)",
                       "on_train_batch_begin(1)", "on_backward_end(1)", "on_train_batch_end(1)",
                       "on_test_begin", "on_test_batch_begin(0)", "on_test_batch_end(0)", "on_test_end",
                       f"on_epoch_end({e})"]
    assert recorder.calls == ["on_train_begin", *epoch(0), *epoch(1), "on_train_end"]


def test_evaluate_and_predict_hook_order():
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    recorder = Recorder()
    x, y = torch.randn(5, 2), torch.randn(5, 1)
    model.evaluate(x, y, batch_size=4, callbacks=[recorder])
    assert recorder.calls == ["on_test_begin", "on_test_batch_begin(0)", "on_test_batch_end(0)",
                              "on_test_batch_begin(1)", "on_test_batch_end(1)", "on_test_end"]
    recorder.calls.clear()
    model.predict(x, batch_size=4, callbacks=[recorder])
    assert recorder.calls == ["on_predict_begin", "on_predict_batch_begin(0)", "on_predict_batch_end(0)",
                              "on_predict_batch_begin(1)", "on_predict_batch_end(1)", "on_predict_end"]


def test_override_table_lists_only_overriding_callbacks():
    class EpochOnly(Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

    first, second = EpochOnly(), Callback()
    table = CallbackList([first, second, EpochOnly()])
    assert table.on_train_batch_end == () and table.on_backward_end == ()
    assert len(table.on_epoch_end) == 2 and table.on_epoch_end[0].__self__ is first


def test_callbacks_see_the_unwrapped_model_and_params():
    seen = {}

    class Look(Callback):
        def on_train_begin(self, logs=None):
            seen["model"], seen["params"] = self.model, dict(self.params)

    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    model.fit(torch.zeros(6, 2), torch.zeros(6, 1), batch_size=4, epochs=3, callbacks=[Look()], verbose=0)
    assert seen["model"] is model
    assert seen["params"] == {"epochs": 3, "steps": 2, "verbose": 0, "has_validation": False,
                              "log_keys": ["loss", "lr"], "custom_logs": False, "validation_freq": 1,
                              "grad_accum_steps": 1, "validation_every_n_steps": 0}


def test_batch_logs_are_device_tensors():
    got = []

    class Grab(Callback):
        def on_train_batch_end(self, batch, logs=None):
            got.append(logs["loss"])

    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    model.fit(torch.zeros(4, 2), torch.ones(4, 1), batch_size=4, callbacks=[Grab()], verbose=0)
    assert isinstance(got[0], torch.Tensor) and got[0].dim() == 0


def test_non_callback_is_rejected():
    with pytest.raises(TypeError, match="`callbacks` must be kerastorch.callbacks.Callback instances"):
        CallbackList([object()])


def test_capabilities_are_declared_on_callback_and_tabled_only_where_overridden():
    from kerastorch.callbacks.base import CAPABILITIES

    for name in CAPABILITIES:
        assert callable(getattr(Callback, name)), name
    assert Callback().resume_candidates() == [] and Callback().auto_resume_path() is None

    class Writer(Callback):
        inactive_hooks = ()

        def on_train_batch_end(self, batch, logs=None):
            pass

        def flush_writes(self):
            pass

    class EpochWriter(Writer):
        inactive_hooks = ("on_train_batch_end",)

    writer, epoch_writer = Writer(), EpochWriter()
    table = CallbackList([Callback(), writer, epoch_writer])
    assert [m.__self__ for m in table.flush_writes] == [writer, epoch_writer]
    assert [m.__self__ for m in table.batch_writers] == [writer]
    assert table.save_interrupt_checkpoint == () and table.auto_resume_path == ()


def test_flush_writes_runs_after_every_callbacks_epoch_end():
    order = []

    class Decides(Callback):
        def on_epoch_end(self, epoch, logs=None):
            order.append(("decides", epoch))

        def flush_writes(self):
            order.append(("writes", self.session.epoch))

    class Later(Callback):
        def on_epoch_end(self, epoch, logs=None):
            order.append(("later", epoch))

    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    model.fit(torch.zeros(4, 2), torch.zeros(4, 1), epochs=2, callbacks=[Decides(), Later()], verbose=0)
    assert order == [("decides", 0), ("later", 0), ("writes", 0), ("decides", 1), ("later", 1), ("writes", 1)]


def test_keras_batch_aliases_are_called_as_the_training_batch_hooks():
    calls = []

    class OldStyle(Callback):
        def on_batch_begin(self, batch, logs=None):
            calls.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            calls.append(("end", batch, sorted(logs)))

    class Both(Callback):  # the hook wins over its alias, as in Keras
        def on_train_batch_end(self, batch, logs=None):
            calls.append(("hook", batch))

        def on_batch_end(self, batch, logs=None):
            calls.append(("alias", batch))

    old, both = OldStyle(), Both()
    table = CallbackList([old, both])
    assert [m.__func__ for m in table.on_train_batch_begin] == [OldStyle.on_batch_begin]
    assert [m.__func__ for m in table.on_train_batch_end] == [OldStyle.on_batch_end, Both.on_train_batch_end]
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    model.fit(torch.zeros(4, 2), torch.zeros(4, 1), batch_size=2, callbacks=[old, both], verbose=0)
    assert calls == [("begin", 0), ("end", 0, ["loss"]), ("hook", 0), ("begin", 1), ("end", 1, ["loss"]), ("hook", 1)]


def test_the_default_training_batch_hooks_call_the_aliases():
    seen = []

    class Alias(Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)

    class Chained(Alias):  # calls super(), as a Keras subclass may
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)

    Chained().on_train_batch_end(3, {})
    assert seen == [3]


def test_an_inactive_batch_hook_leaves_its_alias_out_and_writers_follow_the_alias():
    class Saver(Callback):
        def on_batch_end(self, batch, logs=None):
            pass

        def flush_writes(self):
            pass

    class Idle(Saver):
        inactive_hooks = ("on_train_batch_end",)

    saver, idle = Saver(), Idle()
    table = CallbackList([saver, idle])
    assert [m.__self__ for m in table.on_train_batch_end] == [saver]
    assert [m.__self__ for m in table.batch_writers] == [saver]


def test_hooks_called_without_logs_get_one_fresh_dict():
    got = []

    class Keep(Callback):
        def on_train_begin(self, logs=None):
            got.append(logs)

        def on_epoch_begin(self, epoch, logs=None):
            got.append(logs)

    first, second = Keep(), Keep()
    table = CallbackList([first, second])
    table.call("on_train_begin", None)
    table.call("on_train_begin")
    table.call("on_epoch_begin", 0, None)
    assert got == [{}] * 6
    assert got[0] is got[1] and got[0] is not got[2]  # one dict per call, shared by its callbacks (Keras)
    logs = {"loss": 1.0}
    table.call("on_epoch_begin", 1, logs)
    assert got[-1] is logs
