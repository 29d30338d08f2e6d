"""EMA and SWA callbacks on real fits: the averages against hand formulas and torch.optim.swa_utils,
validation on the average, the weights after fit, exact resume, argument errors."""
import copy
import math
import warnings

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

import kerastorch as kt
from kerastorch.callbacks import EMA, SWA, BackupAndRestore, Callback, ModelCheckpoint
from support import TinyNet


class StepRecorder(Callback):
    """The parameters after every optimizer step (``session.update_now``), and at every epoch end."""

    def __init__(self):
        super().__init__()
        self.steps, self.epochs = [], []

    def on_train_batch_end(self, batch, logs=None):
        if self.session.update_now:
            self.steps.append([p.detach().clone() for p in self.model.parameters()])

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})


def data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0]]) + 0.5


def tiny(lr=0.1, **compile_kwargs):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", optimizer_kwargs={"lr": lr}, device="cpu", **compile_kwargs)
    return model


def hand_ema(trajectory, decays):
    """The EMA by its formula: the first value copied, then ``e = d * e + (1 - d) * w`` with the n-th decay."""
    ema = trajectory[0]
    for n, weights in enumerate(trajectory[1:], start=1):
        d = decays(n)
        ema = [d * e + (1 - d) * w for e, w in zip(ema, weights)]
    return ema


def assert_close_lists(got, want, atol=1e-6):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)


def test_ema_equals_the_hand_computed_ema_of_the_weight_trajectory():
    model, recorder, ema = tiny(), StepRecorder(), EMA(decay=0.9, final_weights="raw")
    model.fit(*data(), batch_size=8, epochs=3, verbose=0, callbacks=[recorder, ema])
    assert ema.average.count == len(recorder.steps) == 15
    assert_close_lists(ema.average.averages, hand_ema(recorder.steps, lambda n: 0.9))
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), recorder.steps[-1]))  # final_weights="raw"


def test_ema_warmup_grows_the_span_linearly_to_one_over_one_minus_decay():
    model, recorder, ema = tiny(), StepRecorder(), EMA(decay=0.9, warmup=6, final_weights="raw")
    model.fit(*data(), batch_size=8, epochs=2, verbose=0, callbacks=[recorder, ema])
    span = lambda n: 1 + n * (10 - 1) / 6  # noqa: E731 (the documented span: 1 -> 1 / (1 - 0.9) over 6 updates)
    assert_close_lists(ema.average.averages, hand_ema(recorder.steps, lambda n: 1 - 1 / span(n) if n < 6 else 0.9))


def test_ema_with_gradient_accumulation_updates_once_per_optimizer_step():
    model, recorder, ema = tiny(grad_accum_steps=2), StepRecorder(), EMA(decay=0.7, final_weights="raw")
    model.fit(*data(36), batch_size=8, epochs=2, verbose=0, callbacks=[recorder, ema])
    # 5 batches per epoch in windows of 2: steps after batches 2, 4 and the short window 5: 3 per epoch.
    assert ema.average.count == len(recorder.steps) == 6
    assert_close_lists(ema.average.averages, hand_ema(recorder.steps, lambda n: 0.7))


def test_ema_update_every_counts_optimizer_steps():
    model, recorder, ema = tiny(), StepRecorder(), EMA(decay=0.5, update_every=2, final_weights="raw")
    model.fit(*data(), batch_size=8, epochs=2, verbose=0, callbacks=[recorder, ema])
    assert ema.average.count == 5
    assert_close_lists(ema.average.averages, hand_ema(recorder.steps[1::2], lambda n: 0.5))


def test_final_weights_averaged_leaves_the_average_in_the_model():
    model, ema = tiny(), EMA(decay=0.9)
    model.fit(*data(), batch_size=8, epochs=2, verbose=0, callbacks=[ema])
    assert all(torch.equal(p, a) for p, a in zip(model.parameters(), ema.average.averages))


def test_validation_with_the_ema_logs_what_evaluate_gives_on_the_ema_weights():
    x, y = data()
    xv, yv = data(16, seed=1)
    for validate_with in ("ema", "raw"):
        model, ema = tiny(), EMA(decay=0.9, validate_with=validate_with, final_weights="raw")
        history = model.fit(x, y, batch_size=8, epochs=2, validation_data=(xv, yv), verbose=0, callbacks=[ema])
        if validate_with == "ema":  # swap the EMA in by hand, not through the callback's own swap
            with torch.no_grad():
                for p, a in zip(model.parameters(), ema.average.averages):
                    p.copy_(a)
        expected = model.evaluate(xv, yv, verbose=0)["loss"]
        assert history["val_loss"].iloc[-1] == pytest.approx(expected, rel=1e-6, abs=1e-7), validate_with


def test_training_never_steps_on_averaged_weights():
    """Step-level validations on the EMA every step: the trained weights are those of a run without EMA."""
    x, y = data()
    runs = []
    for callbacks in ([], [EMA(decay=0.9, final_weights="raw")]):
        model, recorder = tiny(), StepRecorder()
        model.fit(x, y, batch_size=8, epochs=2, validation_data=data(16, seed=1), validation_every_n_steps=1,
                  verbose=0, callbacks=[recorder, *callbacks])
        runs.append(recorder.steps)
    assert all(torch.equal(a, b) for step_a, step_b in zip(*runs) for a, b in zip(step_a, step_b))


def test_model_averaged_weights_swaps_in_and_restores_exactly_also_after_an_exception():
    model, ema = tiny(), EMA(decay=0.9, final_weights="raw")
    model.fit(*data(), batch_size=8, epochs=2, verbose=0, callbacks=[ema])
    trained = [p.detach().clone() for p in model.parameters()]
    with model.averaged_weights() as swapped:
        assert swapped is model
        assert all(torch.equal(p, a) for p, a in zip(model.parameters(), ema.average.averages))
        averaged_prediction = model.predict(data(4, seed=2)[0])
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), trained))
    with pytest.raises(KeyError), model.averaged_weights():
        raise KeyError("inside the block")
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), trained))
    w, b = ema.average.averages
    torch.testing.assert_close(averaged_prediction, data(4, seed=2)[0] @ w.T + b, rtol=0, atol=1e-6)


def test_model_averaged_weights_before_any_fit_names_the_fix():
    with pytest.raises(RuntimeError, match=r"no fit of this model has run an averaging callback.*"
                                           r"callbacks=\[kt\.callbacks\.EMA\(\)\]"), tiny().averaged_weights():
        pass


# ---------------------------------------------------------------- SWA
class BNNet(kt.Model):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 1))

    def forward(self, x):
        return self.body(x)


def bn_model(dropout=0.0, **compile_kwargs):
    torch.manual_seed(0)
    model = BNNet(dropout)
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.05}, device="cpu", **compile_kwargs)
    return model


@pytest.mark.parametrize("every", [0, 3, 5])
def test_swa_equals_torch_averaged_model_and_update_bn_on_the_same_run(every):
    """Also with validations every 3 or 5 steps (5: the epoch's last step validates, then the epoch end does):
    a step-level validation averages nothing."""
    x, y = data()
    model, recorder = bn_model(), StepRecorder()
    swa = SWA(start_epoch=3)
    model.fit(x, y, batch_size=8, epochs=5, shuffle=False, verbose=0, callbacks=[recorder, swa],
              validation_data=data(16, seed=1) if every else None, validation_every_n_steps=every or None)
    reference_net = BNNet()
    reference = AveragedModel(reference_net)
    for state in recorder.epochs[2:]:  # epochs 3, 4, 5 (1-based)
        reference_net.load_state_dict(state)
        reference.update_parameters(reference_net)
    update_bn([x[i:i + 8] for i in range(0, 40, 8)], reference)
    for (name, got), want in zip(model.state_dict().items(), reference.module.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=name)  # final_weights="averaged"
    assert swa.average.count == 3


def test_swa_validation_uses_the_average_with_its_recomputed_batchnorm_statistics():
    x, y = data()
    xv, yv = data(16, seed=1)
    model, swa = bn_model(), SWA(start_epoch=2, final_weights="raw")
    history = model.fit(x, y, batch_size=8, epochs=3, validation_data=(xv, yv), verbose=0, callbacks=[swa])
    with model.averaged_weights():
        expected = model.evaluate(xv, yv, verbose=0)["loss"]
    assert history["val_loss"].iloc[-1] == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert history["val_loss"].iloc[-1] != pytest.approx(model.evaluate(xv, yv, verbose=0)["loss"], rel=1e-6)


def test_swa_passes_over_the_data_without_changing_what_training_draws():
    """Dropout and shuffling on: a run with SWA (recomputing BatchNorm each averaged epoch) trains the same
    weights as a run without it."""
    x, y = data()
    runs = []
    for callbacks in ([], [SWA(start_epoch=1, final_weights="raw")]):
        model = bn_model(dropout=0.3)
        torch.manual_seed(5)
        model.fit(x, y, batch_size=8, epochs=3, validation_data=data(16, seed=1), verbose=0, callbacks=callbacks)
        runs.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_swa_lr_anneals_to_swa_lr_and_takes_over_from_a_per_step_scheduler():
    scheduler = lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)  # noqa: E731
    model = bn_model(lr_scheduler=scheduler, scheduler_interval="step")
    lrs = []
    recorder = kt.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: lrs.append(
        model.optimizer.param_groups[0]["lr"]))
    swa = SWA(start_epoch=2, swa_lr=0.01, anneal_epochs=2, anneal_strategy="linear")
    model.fit(*data(16), batch_size=8, epochs=4, verbose=0, callbacks=[recorder, swa])
    lr0 = 0.05 * 0.5 ** 2  # the scheduler halved 0.05 after each of epoch 1's 2 steps
    expected = [0.05, 0.025] + [lr0 + (0.01 - lr0) * 0.5] * 2 + [0.01] * 4
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert swa.anneal_from == [lr0]


def test_swa_cosine_annealing_follows_its_formula():
    model, swa = bn_model(), SWA(start_epoch=1, swa_lr=0.01, anneal_epochs=3)
    history = model.fit(*data(16), batch_size=8, epochs=4, verbose=0, callbacks=[swa])
    alpha = [(1 - math.cos(math.pi * min(1.0, (k + 1) / 3))) / 2 for k in range(4)]
    assert history["lr"].tolist() == pytest.approx([0.05 + (0.01 - 0.05) * a for a in alpha], rel=1e-12)


def test_swa_that_averaged_nothing_warns_and_keeps_the_trained_weights():
    class StopAfterFirst(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    model, recorder = bn_model(), StepRecorder()
    with pytest.warns(UserWarning, match=r"SWA averaged nothing in this fit, so the model keeps its trained weights\. "
                                         r"Training ended before start_epoch=2\."):
        model.fit(*data(16), batch_size=8, epochs=3, verbose=0, callbacks=[recorder, StopAfterFirst(), SWA(2)])
    assert all(torch.equal(v, recorder.epochs[-1][k]) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError, match=r"The SWA average holds no weights yet"), model.averaged_weights():
        pass


# ---------------------------------------------------------------- resume
class RaiseAt(Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, batch, logs=None):
        if self.session.epoch == self.epoch and batch == self.batch:
            raise RuntimeError("interrupted on purpose")


def resumable_run(averaging, callbacks=(), resume_from=None):
    """The same script every time: shuffling and dropout on, seeds fixed."""
    model = bn_model(dropout=0.3)
    torch.manual_seed(1)
    x, y = data(44)
    model.fit(x, y, batch_size=8, epochs=4, validation_data=data(16, seed=1), verbose=0,
              callbacks=[*callbacks, averaging], resume_from=resume_from)
    return model, averaging


def assert_same_run(a, b):
    (model_a, avg_a), (model_b, avg_b) = a, b
    assert avg_a.average.count == avg_b.average.count > 0
    assert all(torch.equal(p, q) for p, q in zip(avg_a.average.averages + avg_a.average.buffers,
                                                  avg_b.average.averages + avg_b.average.buffers))
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert model_a.history.equals(model_b.history)


@pytest.mark.parametrize("make", [lambda: EMA(decay=0.8, warmup=5, update_every=2, final_weights="raw"),
                                  lambda: SWA(start_epoch=2, swa_lr=0.02, anneal_epochs=2)], ids=["EMA", "SWA"])
def test_backup_and_restore_mid_epoch_resumes_the_average_bit_identically(tmp_path, make):
    straight = resumable_run(make())
    with pytest.raises(RuntimeError, match="interrupted on purpose"):  # 2 batches after the last backup
        resumable_run(make(), [BackupAndRestore(tmp_path, save_freq=3), RaiseAt(epoch=2, batch=4)])
    resumed = resumable_run(make(), [BackupAndRestore(tmp_path, save_freq=3)])
    assert_same_run(resumed, straight)


def test_model_checkpoint_and_resume_from_continue_the_ema(tmp_path):
    make = lambda: EMA(decay=0.8, final_weights="raw")  # noqa: E731
    straight = resumable_run(make())
    checkpoint = ModelCheckpoint(tmp_path / "e{epoch}.pt", save_weights_only=False)
    with pytest.raises(RuntimeError, match="interrupted on purpose"):
        resumable_run(make(), [checkpoint, RaiseAt(epoch=2, batch=1)])
    state = torch.load(tmp_path / "e2.pt", weights_only=True)["callbacks"]["EMA_0"]
    assert state["steps"] == 12 and state["average"]["count"] == 12
    resumed = resumable_run(make(), resume_from=tmp_path / "e2.pt")
    assert_same_run(resumed, straight)


# ---------------------------------------------------------------- misuse
@pytest.mark.parametrize(("make", "message"), [
    (lambda: EMA(decay=1.5), r"`decay` must be a number in \(0, 1\)\. Received: decay=1\.5\. E\.g\. decay=0\.999\."),
    (lambda: EMA(decay=True), r"`decay` must be a number in \(0, 1\)\. Received: decay=True"),
    (lambda: EMA(warmup=-1), r"`warmup` must be an integer >= 0\. Received: warmup=-1"),
    (lambda: EMA(update_every=0), r"`update_every` must be a positive integer\. Received: update_every=0"),
    (lambda: EMA(validate_with="swa"), r"`validate_with` must be one of 'ema', 'raw'\. Received: validate_with='swa'"),
    (lambda: EMA(final_weights="best"),
     r"`final_weights` must be one of 'averaged', 'raw'\. Received: final_weights='best'"),
    (lambda: SWA(start_epoch=0), r"`start_epoch` must be a positive integer\. Received: start_epoch=0"),
    (lambda: SWA(2, swa_lr=0), r"`swa_lr` must be a number > 0\. Received: swa_lr=0\. E\.g\. swa_lr=0\.05\."),
    (lambda: SWA(2, anneal_epochs=1.5), r"`anneal_epochs` must be an integer >= 0\. Received: anneal_epochs=1\.5"),
    (lambda: SWA(2, anneal_strategy="exp"),
     r"`anneal_strategy` must be one of 'cos', 'linear'\. Received: anneal_strategy='exp'"),
    (lambda: SWA(2, validate_with="ema"),
     r"`validate_with` must be one of 'swa', 'raw'\. Received: validate_with='ema'"),
])
def test_bad_arguments_are_refused_with_exact_messages(make, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        make()


def fit_fails_before_training(model, x, y, callbacks, message):
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=callbacks)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(model.history) == 0


def test_swa_starting_after_the_last_epoch_is_refused_before_training():
    fit_fails_before_training(bn_model(), *data(16), [SWA(start_epoch=4)],
                              r"^SWA\(start_epoch=4\) averages from epoch 4 on, but fit runs 3 epochs, so nothing "
                              r"would be averaged\. Pass start_epoch <= epochs \(epochs count from 1, as in the "
                              r"history\), e\.g\. start_epoch=2\.$")


def test_swa_with_batchnorm_on_a_generator_is_refused_before_training():
    x, y = data(16)
    batches = ((x[i:i + 8], y[i:i + 8]) for i in range(0, 16, 8))
    model = bn_model()
    with pytest.raises(ValueError, match=r"^SWA recomputes the BatchNorm statistics .* a one-shot iterator \(a "
                                         r"generator\) cannot pass over again\."):
        model.fit(batches, epochs=1, steps_per_epoch=2, verbose=0, callbacks=[SWA(start_epoch=1)])
    assert len(model.history) == 0


def test_two_averaging_callbacks_are_refused_before_training():
    fit_fails_before_training(tiny(), *data(16), [EMA(), SWA(start_epoch=1)],
                              r"^fit got 2 weight-averaging callbacks \(EMA, SWA\); the model keeps one average per "
                              r"fit\. Pass one EMA or SWA callback\.$")


def test_an_ema_passed_to_evaluate_alone_does_not_swap():
    model, ema = tiny(), EMA(decay=0.5, final_weights="raw")
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[ema])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.evaluate(x, y, verbose=0, callbacks=[ema]) == model.evaluate(x, y, verbose=0)
