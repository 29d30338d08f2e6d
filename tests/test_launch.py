"""kt.launch and fit(processes=N): N spawned processes set up as torchrun ranks (gloo on CPU).

Each spawning test starts fresh interpreters (torch imports in each): they are marked slow.
fit(processes=2) itself is compared with torchrun in tests/test_notebook_processes.py.
"""
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch
from torch import nn

import kerastorch as kt


def rank_sum_and_environment(offset):
    torch.distributed.init_process_group("gloo")
    total = torch.tensor([float(torch.distributed.get_rank() + offset)])
    torch.distributed.all_reduce(total)
    print(f"printed by rank {torch.distributed.get_rank()}")
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR")
    return total, {name: os.environ[name] for name in names}, torch.distributed.get_world_size()


def refuse_on_rank_one():
    torch.distributed.init_process_group("gloo")
    if torch.distributed.get_rank() == 1:
        raise ValueError("rank 1 refuses to train")
    torch.distributed.barrier()  # rank 0 would wait here forever if the failure were not handled


def die_on_rank_one():
    torch.distributed.init_process_group("gloo")
    if torch.distributed.get_rank() == 1:
        os._exit(3)
    torch.distributed.barrier()


@pytest.mark.slow
def test_launch_runs_the_function_on_every_rank_and_returns_rank_zeros_value(capsys):
    total, environment, world = kt.launch(rank_sum_and_environment, 2, offset=10)
    assert torch.equal(total, torch.tensor([21.0]))  # (0 + 10) + (1 + 10): both ranks took part
    assert environment == {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                           "MASTER_ADDR": "127.0.0.1"}
    assert world == 2
    out = capsys.readouterr().out  # rank 0's print reached this process's sys.stdout; rank 1 kept its own
    assert out == "printed by rank 0\n"


@pytest.mark.slow
def test_a_failing_worker_raises_its_traceback_here_and_the_others_are_stopped():
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"(?s)^Worker 1 of 2 failed; the other workers were stopped\. Its "
                                           r"error:\nTraceback.*in refuse_on_rank_one.*ValueError: rank 1 refuses"):
        kt.launch(refuse_on_rank_one, 2)
    assert time.monotonic() - started < 120
    assert [child for child in _children() if child.name.startswith("kerastorch-rank")] == []


@pytest.mark.slow
def test_a_worker_that_dies_without_reporting_is_named():
    with pytest.raises(RuntimeError, match=r"^Worker 1 of 2 failed; .*\nThe process exited with code 3 without "
                                           r"reporting"):
        kt.launch(die_on_rank_one, 2)
    assert [child for child in _children() if child.name.startswith("kerastorch-rank")] == []


def _children():
    import multiprocessing
    return multiprocessing.active_children()


@pytest.mark.parametrize("processes", [0, -1, 1.5, "2", True, None])
def test_processes_must_be_a_positive_int(processes):
    with pytest.raises(ValueError, match=rf"^`processes` must be a positive int: .* Received: processes="
                                         rf"{re.escape(repr(processes))}$"):
        kt.launch(print, processes)


def test_launch_refuses_to_run_under_torchrun(monkeypatch):
    model = kt.Model.wrap(nn.Linear(2, 1))
    model.compile("sgd", "mse", device="cpu")  # before torchrun's variables: compile would set up DDP
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"^kt\.launch\(processes=2\) starts its own processes, but this process "
                                         r"already runs under torchrun \(RANK=0, WORLD_SIZE=2\)\. Remove"):
        kt.launch(print, 2)
    with pytest.raises(ValueError, match=r"^fit\(processes=2\) starts its own processes, but this process already"):
        model.fit(torch.zeros(4, 2), torch.zeros(4, 1), processes=2)


def test_what_cannot_be_pickled_is_refused_before_any_process_starts():
    with pytest.raises(TypeError, match=r"^`fn` must be a callable to run in each process\. Received: fn=3"):
        kt.launch(3, 2)
    with pytest.raises(TypeError, match=r"^The function and arguments for the worker processes could not be pickled: "
                                        r".*_thread\.lock.*must not hold open files, locks"):
        kt.launch(print, 2, threading.Lock())
    assert _children() == []


def test_fit_with_processes_needs_compile_and_a_valid_count():
    model = kt.Model.wrap(nn.Linear(2, 1))
    with pytest.raises(RuntimeError, match=r"^You must call `compile\(\)` before `fit\(\)`\."):
        model.fit(torch.zeros(4, 2), torch.zeros(4, 1), processes=2)
    model.compile("sgd", "mse", device="cpu")
    with pytest.raises(ValueError, match=r"Received: processes=0"):
        model.fit(torch.zeros(4, 2), torch.zeros(4, 1), processes=0)
    assert model.history.empty


def regression_data():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(32, 3, generator=generator)
    return x, x.sum(1, keepdim=True) + 0.1 * torch.randn(32, 1, generator=generator)


def regression_model():
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)))
    model.compile("sgd", "mse", ["mae"], optimizer_kwargs={"lr": 0.05, "momentum": 0.9}, device="cpu")
    return model


def test_fit_with_one_process_trains_here():
    x, y = regression_data()
    model, reference = regression_model(), regression_model()
    torch.manual_seed(1)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, processes=1)
    torch.manual_seed(1)  # the same shuffling seed
    reference.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert model.history.equals(reference.history)


def test_a_wrapped_model_crosses_by_value_and_trains_there():
    """Model.wrap's class is made at run time (not importable by name): cloudpickle sends it by value."""
    from kerastorch.launch_worker import dumps
    model = regression_model()
    with pytest.raises(pickle.PicklingError, match="Sequential"):  # by name, as spawn would send it
        pickle.dumps(model)
    copy = pickle.loads(dumps(model))
    assert isinstance(copy, kt.Model) and isinstance(copy, nn.Sequential) and copy is not model
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), model.state_dict().values()))
    copy.compile("sgd", "mse", device="cpu")
    assert copy.fit(*regression_data(), epochs=1, verbose=0)["loss"].notna().all()


SLEEPER = textwrap.dedent("""
    import os, sys, time
    import kerastorch as kt

    def sleep_forever(directory):
        open(os.path.join(directory, str(os.getpid())), "w").close()
        time.sleep(600)

    if __name__ == "__main__":
        kt.launch(sleep_forever, 2, sys.argv[1])
""")


@pytest.mark.slow
def test_ctrl_c_while_waiting_stops_the_workers(tmp_path):
    script, pids = tmp_path / "sleeper.py", tmp_path / "pids"
    script.write_text(SLEEPER)
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(pids)], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 180
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.2)
    workers = [int(path.name) for path in pids.iterdir()]
    assert len(workers) == 2, parent.communicate(timeout=10)
    parent.send_signal(signal.SIGINT)
    _, err = parent.communicate(timeout=60)
    assert parent.returncode != 0 and err.rstrip().endswith("KeyboardInterrupt"), err
    for pid in workers:  # reaped by the parent before it exited: no such process any more
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
