"""``srun python train.py`` without torchrun: 2 local processes given SLURM's variables only (no RANK,
WORLD_SIZE or MASTER_*) form one DDP group and end with torchrun's weights; SLURM's SIGUSR1 reaching one
rank stops both after the same batch with an interrupt checkpoint, fit returns, and a requeued run
(``resume_from="auto"``) ends with the uninterrupted run's weights.
"""
import inspect
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kerastorch.engine import fit
from kerastorch.slurm import slurm_environment

# A test starts one or two pairs of processes (the first also the shared uninterrupted run), each importing
# torch and kerastorch: minutes on a loaded 2-core machine. finish() bounds each run, so a hang still fails.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SCRIPT = Path(__file__).with_name("slurm_script.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
LAUNCHER_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID", "GROUP_RANK")


def port_is_free(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def slurm_job(tasks=2):
    """The variables srun sets in each task of a one-node job whose derived MASTER_PORT is free now."""
    while True:
        common = {"SLURM_JOB_ID": str(random.randrange(10**6, 10**7)), "SLURM_NTASKS": str(tasks),
                  "SLURM_NTASKS_PER_NODE": str(tasks), "SLURM_NODELIST": "127.0.0.1"}
        tasks_env = [{**common, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)} for i in range(tasks)]
        if port_is_free(int(slurm_environment(tasks_env[0])["MASTER_PORT"])):
            return tasks_env


def base_env():
    env = {key: value for key, value in os.environ.items()
           if key not in LAUNCHER_KEYS and not key.startswith("SLURM_")}
    return {**env, "OMP_NUM_THREADS": "1"}


def start(cmd, extra):
    return subprocess.Popen(cmd, env={**base_env(), **extra}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(*procs):
    try:
        outs = [proc.communicate(timeout=420)[0] for proc in procs]
    finally:
        for proc in procs:  # none is left running, also when one of them hangs
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out


def srun(out_dir, *args):
    """Two tasks as srun starts them: SLURM_* variables only."""
    finish(*[start([sys.executable, str(SCRIPT), str(out_dir), *args], task) for task in slurm_job()])
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]


def torchrun(out_dir):
    port = next(p for p in iter(lambda: random.randrange(20000, 30000), None) if port_is_free(p))
    finish(start([*TORCHRUN, "--nproc_per_node=2", f"--master-port={port}", str(SCRIPT), str(out_dir)], {}))
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]


def equal_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return srun(tmp_path_factory.mktemp("slurm"))


def test_slurm_variables_alone_give_the_torchrun_result(uninterrupted, tmp_path):
    for rank, result in enumerate(uninterrupted):
        assert result["world"] == 2 and result["ddp"] and result["device"] == "cpu"
        env = result["env"]
        assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"]) == (str(rank), "2",
                                                                                               str(rank), "2")
        assert env["MASTER_ADDR"] == "127.0.0.1" and 15000 <= int(env["MASTER_PORT"]) < 30000
    assert uninterrupted[0]["env"]["MASTER_PORT"] == uninterrupted[1]["env"]["MASTER_PORT"]
    reference = torchrun(tmp_path)
    for result in uninterrupted:
        assert equal_weights(result["weights"], reference[0]["weights"])
        assert result["history"] == reference[0]["history"]
    assert len(reference[0]["history"]["loss"]) == 3


needs_agreement = pytest.mark.skipif("signal_agreement(" not in inspect.getsource(fit.train_epoch),
                                     reason="the batch loop does not call engine.signals.signal_agreement yet")


@needs_agreement
def test_usr1_on_one_rank_stops_both_after_the_same_batch_and_a_requeued_run_resumes_exactly(
        uninterrupted, tmp_path):
    stopped = srun(tmp_path, "--usr1-at", "1:2")  # rank 0 gets it after batch 3 (1-based) of epoch 2
    interrupt = tmp_path / "interrupted.pt"
    checkpoint = torch.load(interrupt, weights_only=False)
    assert (checkpoint["epoch"], checkpoint["batch"]) == (1, 3)  # 3 batches of the 2nd epoch done
    for result in stopped:
        assert len(result["history"]["loss"]) == 1  # the partial epoch is not logged
        assert result["handler_after"]  # SIG_DFL again once fit returned
    assert equal_weights(stopped[0]["weights"], stopped[1]["weights"])  # both stopped after that batch
    assert not equal_weights(stopped[0]["weights"], uninterrupted[0]["weights"])
    assert stopped[1]["warnings"] == [] and len(stopped[0]["warnings"]) == 1
    assert stopped[0]["warnings"][0] == (
        "SIGUSR1 (SLURM's warning that the time limit is near) stopped training in epoch 2, batch 3 of 6; "
        f"model.history keeps 1 finished epochs; interrupt checkpoint: {interrupt}. fit(..., resume_from='auto') "
        "continues from it (e.g. in the job requeued with `scontrol requeue $SLURM_JOB_ID`).")
    resumed = srun(tmp_path, "--resume")
    expected = uninterrupted[0]["history"]
    for result in resumed:
        assert equal_weights(result["weights"], uninterrupted[0]["weights"])
        assert result["history"]["epoch"] == expected["epoch"] == [1, 2, 3]
        # The interrupted epoch's training logs are left out: the interrupt checkpoint holds rank 0's partial
        # sums, which every rank restores (a limitation of mid-epoch checkpoints under DDP, not of SLURM).
        for key, values in expected.items():
            assert [result["history"][key][e] for e in (0, 2)] == [values[e] for e in (0, 2)], key


@needs_agreement
def test_with_uneven_shards_a_signal_after_the_shorter_ranks_last_window_waits_for_the_next_epoch(tmp_path):
    """41 samples: rank 0 runs 6 batches an epoch, rank 1 runs 5. Rank 0 gets SIGUSR1 after its 5th batch,
    where rank 1 may already have left the loop: an all-reduce there could wait forever, so the ranks agree
    at the first window of the next epoch and both stop after it."""
    stopped = srun(tmp_path, "--samples", "41", "--usr1-at", "0:4")
    checkpoint = torch.load(tmp_path / "interrupted.pt", weights_only=False)
    assert (checkpoint["epoch"], checkpoint["batch"]) == (1, 1)
    assert equal_weights(stopped[0]["weights"], stopped[1]["weights"])
    assert [len(result["history"]["loss"]) for result in stopped] == [1, 1]
    assert "stopped training in epoch 2, batch 1 of 6; model.history keeps 1 finished epochs" in \
        stopped[0]["warnings"][0]
