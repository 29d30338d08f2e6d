"""MLflowLogger against a real local MLflow store, read back with MlflowClient (no mocks)."""
import math
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

import kerastorch as kt
from kerastorch.callbacks import LambdaCallback, MLflowLogger, ModelCheckpoint

EPOCHS = 3


@pytest.fixture
def uri(tmp_path, monkeypatch):
    """A file store in tmp_path; MLflow's process-wide state (URI, experiment, runs) is reset afterwards."""
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import fluent

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    yield "file:" + str(tmp_path / "mlruns")
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def _data():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, generator=generator), torch.randn(16, 1, generator=generator)


def _fit(callbacks, model=None, epochs=EPOCHS):
    if model is None:
        torch.manual_seed(0)
        model = kt.Model.wrap(torch.nn.Linear(3, 1))
        model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, device="cpu")
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=epochs, validation_data=(x, y), shuffle=False, verbose=0,
              callbacks=callbacks)
    return model


def _client(uri):
    from mlflow.tracking import MlflowClient
    return MlflowClient(uri)


def _runs(uri, experiment="kt"):
    """The experiment's runs, oldest first."""
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return sorted(runs, key=lambda run: run.info.start_time)


def _metrics(uri, run_id):
    """``key -> [(step, value), ...]`` in step order, for every metric of the run."""
    client = _client(uri)
    keys = client.get_run(run_id).data.metrics
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in keys}


def _history_series(history, rows=slice(None)):
    frame = history.iloc[rows]
    return {key: list(zip(frame["epoch"].tolist(), frame[key].tolist(), strict=True))
            for key in frame.columns if key != "epoch"}


def _artifact_bytes(uri, run_id, path, tmp_path):
    local = _client(uri).download_artifacts(run_id, path, str(tmp_path / "downloads"))
    with open(local, "rb") as handle:
        return handle.read()


def test_metrics_params_and_summary_of_a_run_it_starts(uri, tmp_path):
    import mlflow

    model = _fit([MLflowLogger("kt", run_name="first", tracking_uri=uri, tags={"team": "vision"})])
    (run,) = _runs(uri)
    assert run.info.status == "FINISHED" and run.info.run_name == "first" and mlflow.active_run() is None
    assert run.data.tags["team"] == "vision"
    assert list(model.history.columns) == ["epoch", "loss", "val_loss", "lr"]
    assert _metrics(uri, run.info.run_id) == _history_series(model.history)
    params = run.data.params
    assert {key: params[key] for key in ("optimizer", "optimizer.lr", "optimizer.momentum", "optimizer.nesterov",
                                         "loss", "batch_size", "epochs", "precision", "grad_accum_steps")} == {
        "optimizer": "SGD", "optimizer.lr": "0.1", "optimizer.momentum": "0", "optimizer.nesterov": "False",
        "loss": "mse", "batch_size": "8", "epochs": "3", "precision": "32", "grad_accum_steps": "1"}
    assert "lr_scheduler" not in params and "optimizer.params" not in params
    summary = _artifact_bytes(uri, run.info.run_id, "model_summary.txt", tmp_path).decode()
    assert summary == str(model)


class LongNamedLoss(torch.nn.MSELoss):
    def __repr__(self):
        return "L" * 7000


def test_params_of_adam_a_scheduler_and_a_loss_module_cut_to_the_limit(uri):
    torch.manual_seed(0)
    model = kt.Model.wrap(torch.nn.Linear(3, 1))
    model.compile("adam", LongNamedLoss(), optimizer_kwargs={"lr": 0.01}, device="cpu",
                  lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2))
    _fit([MLflowLogger("kt", tracking_uri=uri)], model=model, epochs=1)
    params = _runs(uri)[0].data.params
    assert (params["optimizer"], params["optimizer.lr"], params["optimizer.betas"], params["lr_scheduler"]) == \
        ("Adam", "0.01", "(0.9, 0.999)", "StepLR")
    assert params["loss"] == "L" * 6000  # MLflow's limit


def test_a_second_fit_starts_a_run_numbered_on(uri):
    logger = MLflowLogger("kt", tracking_uri=uri)
    model = _fit([logger], model=_fit([logger]))
    first, second = _runs(uri)
    assert model.history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert _metrics(uri, first.info.run_id) == _history_series(model.history, slice(0, 3))
    assert _metrics(uri, second.info.run_id) == _history_series(model.history, slice(3, 6))
    assert [s for s, _ in _metrics(uri, second.info.run_id)["loss"]] == [4, 5, 6]
    assert first.info.status == second.info.status == "FINISHED"


def test_an_active_run_of_the_user_is_used_and_left_open(uri):
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("kt")
    with mlflow.start_run() as run:
        model = _fit([MLflowLogger(tags={"stage": "two fits"})])
        model = _fit([MLflowLogger()], model=model)
        assert mlflow.active_run().info.run_id == run.info.run_id
        assert _client(uri).get_run(run.info.run_id).info.status == "RUNNING"
    (stored,) = _runs(uri)
    assert _metrics(uri, run.info.run_id) == _history_series(model.history)  # steps 1..6 in one run
    assert stored.data.params["epochs"] == "3" and stored.data.tags["stage"] == "two fits"


def test_log_models_last_uploads_the_last_checkpoint_byte_for_byte(uri, tmp_path):
    folder = tmp_path / "ckpt"
    checkpoint = ModelCheckpoint(str(folder / "epoch{epoch:02d}.pt"), monitor="loss")
    _fit([checkpoint, MLflowLogger("kt", tracking_uri=uri, log_models="last")])
    (run,) = _runs(uri)
    listed = [item.path for item in _client(uri).list_artifacts(run.info.run_id, "checkpoints")]
    assert sorted(os.listdir(folder)) == ["epoch01.pt", "epoch02.pt", "epoch03.pt"]
    assert listed == ["checkpoints/epoch03.pt"]
    assert _artifact_bytes(uri, run.info.run_id, "checkpoints/epoch03.pt", tmp_path) == \
        (folder / "epoch03.pt").read_bytes()


def test_log_models_best_uploads_the_best_file_of_this_fit(uri, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "best-9.pt").write_bytes(b"a file of an earlier fit")
    # A constant lr never improves after epoch 1: the best file is best-1.pt, written first.
    checkpoint = ModelCheckpoint(str(folder / "best-{epoch}.pt"), monitor="lr", mode="max", save_best_only=True)
    logger = MLflowLogger("kt", tracking_uri=uri, log_models="best")
    _fit([logger, checkpoint])
    (run,) = _runs(uri)
    listed = [item.path for item in _client(uri).list_artifacts(run.info.run_id, "checkpoints")]
    assert sorted(os.listdir(folder)) == ["best-1.pt", "best-9.pt"]
    assert listed == ["checkpoints/best-1.pt"]
    assert _artifact_bytes(uri, run.info.run_id, "checkpoints/best-1.pt", tmp_path) == \
        (folder / "best-1.pt").read_bytes()


def test_log_models_false_uploads_no_checkpoint(uri, tmp_path):
    _fit([ModelCheckpoint(str(tmp_path / "w.pt"), monitor="loss"), MLflowLogger("kt", tracking_uri=uri)])
    (run,) = _runs(uri)
    assert [item.path for item in _client(uri).list_artifacts(run.info.run_id)] == ["model_summary.txt"]


def test_a_nan_value_is_left_out_of_its_step(uri):
    add_extra = LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(extra=math.nan if epoch == 1 else 0.5))
    _fit([add_extra, MLflowLogger("kt", tracking_uri=uri)])
    (run,) = _runs(uri)
    assert _metrics(uri, run.info.run_id)["extra"] == [(1, 0.5), (3, 0.5)]


@pytest.mark.parametrize("broken", ["not_a_folder", "bogus-scheme://nowhere"])
def test_a_broken_tracking_uri_warns_once_and_training_is_unchanged(uri, tmp_path, broken):
    import mlflow

    if broken == "not_a_folder":
        (tmp_path / "a_file").write_text("")
        broken = "file:" + str(tmp_path / "a_file" / "mlruns")
    expected = _fit([]).history
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _fit([MLflowLogger("kt", tracking_uri=broken)])
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) == 1
    assert str(runtime[0].message).startswith("MLflow logging failed (")
    assert "training continues, nothing is lost locally." in str(runtime[0].message)
    assert model.history.equals(expected) and mlflow.active_run() is None


def test_a_store_failing_mid_fit_warns_once_and_ends_nothing_open(uri, tmp_path):
    import mlflow

    def break_store(epoch, logs):
        if epoch == 0:
            shutil.rmtree(tmp_path / "mlruns")
            (tmp_path / "mlruns").write_text("")

    expected = _fit([]).history
    with pytest.warns(RuntimeWarning, match="MLflow logging failed") as caught:
        model = _fit([MLflowLogger("kt", tracking_uri=uri), LambdaCallback(on_epoch_end=break_store)])
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    assert model.history.equals(expected) and mlflow.active_run() is None


def test_a_failing_fit_ends_its_run_as_failed(uri):
    import mlflow

    def fail(epoch, logs):
        if epoch == 1:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _fit([MLflowLogger("kt", tracking_uri=uri), LambdaCallback(on_epoch_end=fail)])
    (run,) = _runs(uri)
    assert run.info.status == "FAILED" and mlflow.active_run() is None
    assert [step for step, _ in _metrics(uri, run.info.run_id)["loss"]] == [1, 2]


def test_other_ranks_log_nothing(uri, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    _fit([MLflowLogger("kt", tracking_uri=uri)])
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("value", [True, "all", 0, None])
def test_log_models_is_checked_up_front(value):
    with pytest.raises(ValueError) as info:
        MLflowLogger(log_models=value)
    assert str(info.value) == f"`log_models` must be 'best', 'last' or False. Received: log_models={value!r}"


def test_names_and_tags_are_checked_up_front():
    with pytest.raises(TypeError, match=r"`tags` must be a dict .* Received: tags=\['a'\]"):
        MLflowLogger(tags=["a"])
    with pytest.raises(TypeError, match=r"`run_name` must be a string or None. Received: run_name=3 of type int"):
        MLflowLogger(run_name=3)


def test_importing_the_callbacks_does_not_import_mlflow():
    code = ("import sys, kerastorch.callbacks as c; c.MLflowLogger('x', log_models='last'); "
            "print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
