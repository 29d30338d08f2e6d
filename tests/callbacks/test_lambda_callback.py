"""LambdaCallback: functions get the hook arguments; only the given hooks are dispatched."""
import copy
import pickle

import pytest
import torch

from kerastorch.callbacks import Callback, LambdaCallback
from kerastorch.callbacks.base import HOOKS, CallbackList
from support import TinyNet


def test_functions_get_the_hook_arguments_in_fit():
    calls = []

    def rec(name):
        return lambda *args: calls.append((name, args))

    cb = LambdaCallback(on_train_begin=rec("train_begin"), on_epoch_begin=rec("epoch_begin"),
                        on_epoch_end=rec("epoch_end"), on_train_batch_end=rec("batch_end"),
                        on_test_end=rec("test_end"), on_train_end=rec("train_end"))
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    x, y = torch.randn(6, 2), torch.randn(6, 1)
    history = model.fit(x, y, batch_size=4, epochs=1, validation_data=(x, y), verbose=0, callbacks=[cb])
    names = [name for name, _ in calls]
    assert names == ["train_begin", "epoch_begin", "batch_end", "batch_end", "test_end", "epoch_end", "train_end"]
    assert calls[0][1] == ({},) and calls[1][1] == (0, {})  # Keras: {} for hooks without logs
    batch, logs = calls[2][1]
    assert batch == 0 and isinstance(logs["loss"], torch.Tensor)
    assert calls[3][1][0] == 1
    epoch, logs = calls[5][1]
    expected = history.iloc[0].to_dict()
    assert epoch == 0 and {"epoch": 1, **logs} == expected
    assert calls[4][1] == ({"loss": expected["val_loss"]},)  # on_test_end gets Keras's unprefixed keys
    assert calls[6][1] == (logs,)


def test_only_given_hooks_are_in_the_table():
    cb = LambdaCallback(on_epoch_end=lambda epoch, logs: None)
    table = CallbackList([cb])
    for hook in HOOKS:
        assert len(getattr(table, hook)) == (hook == "on_epoch_end"), hook
    assert isinstance(cb, LambdaCallback) and type(cb).__name__ == "LambdaCallback"


def test_every_hook_can_be_given():
    got = []
    cb = LambdaCallback(**{hook: (lambda hook: lambda *args: got.append(hook))(hook) for hook in HOOKS})  # noqa: B023
    table = CallbackList([cb])
    for hook in HOOKS:
        table.call(hook, *((0, None) if "batch" in hook or "epoch" in hook or "backward" in hook else (None,)))
    assert got == list(HOOKS)


def test_instances_with_different_hooks_are_independent():
    a = LambdaCallback(on_epoch_end=lambda e, logs: None)
    b = LambdaCallback(on_train_batch_end=lambda b, logs: None)
    c = LambdaCallback(on_epoch_end=print)
    assert type(a) is type(c) and type(a) is not type(b)
    table = CallbackList([a, b])
    assert len(table.on_epoch_end) == 1 and table.on_epoch_end[0].__self__ is a
    assert len(table.on_train_batch_end) == 1 and table.on_train_batch_end[0].__self__ is b


def test_none_hooks_are_not_dispatched_and_positional_order_is_keras():
    seen = []
    cb = LambdaCallback(None, lambda epoch, logs: seen.append(epoch))
    table = CallbackList([cb])
    assert table.on_epoch_begin == () and len(table.on_epoch_end) == 1
    table.call("on_epoch_end", 3, {})
    assert seen == [3]


def test_keras2_batch_aliases():
    cb = LambdaCallback(on_batch_end=lambda batch, logs: None)
    assert len(CallbackList([cb]).on_train_batch_end) == 1
    with pytest.raises(TypeError, match="twice"):
        LambdaCallback(on_batch_end=print, on_train_batch_end=print)


def test_argument_errors():
    with pytest.raises(TypeError, match="unknown hook 'on_epoch_finish'"):
        LambdaCallback(on_epoch_finish=print)
    with pytest.raises(TypeError, match="`on_epoch_end` must be callable"):
        LambdaCallback(on_epoch_end=3)
    with pytest.raises(TypeError, match="both positionally and as a keyword"):
        LambdaCallback(print, on_epoch_begin=print)


def test_copy_and_pickle_keep_the_hooks():
    cb = LambdaCallback(on_epoch_end=print)
    for clone in (copy.deepcopy(cb), pickle.loads(pickle.dumps(cb))):
        assert clone.functions == {"on_epoch_end": print}
        assert len(CallbackList([clone]).on_epoch_end) == 1 and CallbackList([clone]).on_train_end == ()


def test_subclass_hooks_still_count():
    class Mine(LambdaCallback):
        def on_train_end(self, logs=None):
            pass

    cb = Mine(on_epoch_end=print)
    table = CallbackList([cb])
    assert len(table.on_train_end) == 1 and len(table.on_epoch_end) == 1 and table.on_epoch_begin == ()
    assert isinstance(cb, Mine) and isinstance(cb, Callback)
