"""DDP under torchrun on CPU (gloo): 2 processes, and 2 nodes of 1 process on loopback.

The same script also runs as a single process; ranks end with equal weights,
evaluate() over all ranks equals a single-process evaluate to 1e-5, samples
are counted once (11, not 12, for 11 samples on 2 ranks), and only rank 0
writes the checkpoint.
"""
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("ddp_script.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(cmd, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc):
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out


def load(path):
    return torch.load(path, weights_only=False)


def single_process_evaluate(weights):
    sys.path.insert(0, str(SCRIPT.parent))
    import ddp_script
    from torch import nn

    import kerastorch as kt
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1)))
    model.load_state_dict(weights)
    model.compile("sgd", "bce_with_logits", {"acc": "accuracy", "auc": "auc", "n": ddp_script.SampleCount()},
                  device="cpu")
    return model.evaluate(*ddp_script.data(11), batch_size=5)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    finish(run([*TORCHRUN, "--nproc_per_node=2", f"--master-port={free_port()}", str(SCRIPT), str(out)]))
    return out


def test_two_processes_agree_and_match_single_process(two_process_run):
    out = two_process_run
    rank0, rank1 = load(out / "rank0.pt"), load(out / "rank1.pt")
    assert all(torch.equal(rank0["weights"][k], rank1["weights"][k]) for k in rank0["weights"])
    assert rank0["evaluate"] == rank1["evaluate"] and rank0["history"] == rank1["history"]
    expected = single_process_evaluate(rank0["weights"])
    for key, value in expected.items():
        assert rank0["evaluate"][key] == pytest.approx(value, abs=1e-5)
    assert rank0["evaluate"]["n"] == 11.0 and rank0["history"]["val_n"] == [11.0, 11.0, 11.0]
    assert rank0["history"]["n"] == [40.0, 40.0, 40.0]
    # rank 0 alone wrote the checkpoints: last.pt and the 2 best epochs by val_loss (save_top_k=2)
    best_two = sorted(sorted(range(3), key=lambda e: rank0["history"]["val_loss"][e])[:2])
    assert sorted(p.name for p in out.iterdir()) == sorted(["last.pt", *[f"top-{e + 1}.pt" for e in best_two],
                                                             "rank0.pt", "rank1.pt"])
    # step-level validation at the same global steps on both ranks, with equal (all-reduced) values
    assert rank0["validation_history"] == rank1["validation_history"]
    assert rank0["validation_history"]["step"] == [7, 14]
    saved = torch.load(out / "last.pt", weights_only=True)
    assert all(torch.equal(saved[k], rank0["weights"][k]) for k in saved)


def test_a_nan_loss_on_one_rank_stops_both_after_the_same_epoch(two_process_run):
    """Rank 1's last batch of epoch 1 goes NaN: the all-reduced epoch loss is NaN on both ranks, so both stop
    there, with one history row, and each says where: its batch, or another process's."""
    rank0, rank1 = (load(two_process_run / f"rank{r}.pt")["nonfinite"] for r in range(2))
    assert len(rank0["loss"]) == len(rank1["loss"]) == 1 and math.isnan(rank0["loss"][0])
    assert [m.split(" (")[0] for m in rank0["warnings"] + rank1["warnings"]] == [
        "Non-finite training loss at epoch 1, a batch of another process",
        "Non-finite training loss at epoch 1, batch 2"]


def test_two_nodes_on_loopback_give_the_same_result(two_process_run, tmp_path):
    # Static rendezvous: node 0's agent hosts the store and waits in torchrun's exit barrier until every
    # node is done. The c10d backend failed under load (RendezvousConnectionError) when the node hosting
    # its store left while the other agent still polled it.
    port = free_port()
    common = ["--nnodes=2", "--nproc_per_node=1", "--master-addr=127.0.0.1", f"--master-port={port}"]
    nodes = [run([*TORCHRUN, *common, f"--node-rank={i}", str(SCRIPT), str(tmp_path)]) for i in range(2)]
    for node in nodes:
        finish(node)
    reference = load(two_process_run / "rank0.pt")
    for rank in range(2):
        result = load(tmp_path / f"rank{rank}.pt")
        assert all(torch.allclose(result["weights"][k], reference["weights"][k], atol=1e-6) for k in result["weights"])
        assert result["evaluate"] == pytest.approx(reference["evaluate"], abs=1e-6)


def test_same_script_runs_as_one_process(tmp_path):
    finish(run([sys.executable, str(SCRIPT), str(tmp_path)]))
    result = load(tmp_path / "rank0.pt")
    assert result["evaluate"]["n"] == 11.0 and result["history"]["n"] == [40.0] * 3
    assert result["nonfinite"]["warnings"][0].startswith("Non-finite training loss at epoch 1, batch 5 ")


def test_custom_steps_all_reduce_like_the_built_in_one(tmp_path):
    """The README's custom step, the example's and a torchkeras 2.x train_step(features, labels): under
    DDP both ranks end equal, and equal to one process over the same global batches (2 x 4 == 8)."""
    script = SCRIPT.with_name("custom_step_script.py")
    single = tmp_path / "single"
    single.mkdir()
    ranks = run([*TORCHRUN, "--nproc_per_node=2", f"--master-port={free_port()}", str(script), str(tmp_path), "4"])
    finish(run([sys.executable, str(script), str(single), "8"]))
    finish(ranks)
    for name in ("readme", "example", "torchkeras"):
        rank0, rank1 = load(tmp_path / f"{name}_rank0.pt"), load(tmp_path / f"{name}_rank1.pt")
        reference = load(single / f"{name}_rank0.pt")
        assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), name
        assert all(torch.allclose(rank0[k], reference[k], rtol=0, atol=1e-6) for k in rank0), name
        assert not torch.equal(rank0[next(iter(rank0))], load(tmp_path / "initial.pt")[name]), name  # it trained


def test_jit_compile_under_ddp_matches_eager_and_saves_bare_keys(two_process_run, tmp_path):
    finish(run([*TORCHRUN, "--nproc_per_node=2", f"--master-port={free_port()}", str(SCRIPT), str(tmp_path),
                "--jit-compile"]))
    rank0, rank1 = load(tmp_path / "rank0.pt"), load(tmp_path / "rank1.pt")
    assert all(torch.equal(rank0["weights"][k], rank1["weights"][k]) for k in rank0["weights"])
    eager = load(two_process_run / "rank0.pt")
    assert list(rank0["weights"]) == list(eager["weights"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(torch.allclose(rank0["weights"][k], eager["weights"][k], atol=1e-5) for k in eager["weights"])
    assert rank0["evaluate"] == pytest.approx(eager["evaluate"], abs=1e-5)
    assert list(torch.load(tmp_path / "last.pt", weights_only=True)) == list(eager["weights"])



def test_sync_batchnorm_gives_the_running_statistics_of_the_global_batch(tmp_path):
    """2 ranks x 4 samples (every other one) with sync_batchnorm == 1 process x 8 samples."""
    script = SCRIPT.with_name("syncbn_script.py")
    finish(run([*TORCHRUN, "--nproc_per_node=2", f"--master-port={free_port()}", str(script), str(tmp_path), "8"]))
    finish(run([sys.executable, str(script), str(tmp_path), "8"]))
    rank0, rank1, single = (load(tmp_path / f"{name}.pt") for name in ("bn0", "bn1", "bn_single"))
    assert rank0["type"] == rank1["type"] == "SyncBatchNormAnyDevice" and single["type"] == "BatchNorm1d"
    assert torch.equal(rank0["mean"], rank1["mean"]) and torch.equal(rank0["var"], rank1["var"])
    assert torch.allclose(rank0["mean"], single["mean"], atol=1e-5)
    assert torch.allclose(rank0["var"], single["var"], atol=1e-4)
    assert not torch.allclose(single["var"], torch.ones(4), atol=0.1)  # the statistics did move
    for key, value in single["weights"].items():  # the same gradients too: the global batch's
        assert torch.allclose(rank0["weights"][key].float(), value.float(), atol=1e-5), key
