"""compile(strategy="fsdp") on 2 CPU processes (gloo): the same training as DDP and as one process,
half the bytes per rank, full-state checkpoints a single process loads, and kill -9 + resume.

All runs of fsdp_script.py start at once (the machine has 2 cores: the launches mostly wait on imports);
the resume starts when the killed run is gone.
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("fsdp_script.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def free_ports(n):
    """n distinct free ports (all held open while choosing, so that none is handed out twice)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run(cmd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def load(path):
    return torch.load(path, weights_only=False)


def torchrun(out, port, *args):
    return run([*TORCHRUN, "--nproc_per_node=2", f"--master-port={port}", str(SCRIPT), str(out), *args])


def finish(proc, expected=0):
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == expected, f"{' '.join(proc.args[-3:])} failed:\n{out[-20000:]}"
    return out


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """The runs start at once (most of their time is imports); the resume when the killed run is gone."""
    out = tmp_path_factory.mktemp("fsdp")
    ports = free_ports(4)
    killed = torchrun(out, ports[0], "fsdp", "--killed")
    runs = [torchrun(out, ports[1], "fsdp"), torchrun(out, ports[2], "ddp"),
            run([sys.executable, str(SCRIPT), str(out), "single"])]
    output = finish(killed, expected=1)  # a worker died: torchrun says which signal
    assert "Signal 9 (SIGKILL)" in output, output[-20000:]
    for proc in [*runs, torchrun(out, ports[3], "fsdp", "--resumed")]:
        finish(proc)
    return out


def assert_weights_close(a, b, atol):
    assert list(a) == list(b)
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), rtol=0, atol=atol), key


def test_fsdp_equals_ddp_equals_one_process(out):
    fsdp, fsdp1, ddp, single = (load(out / name) for name in
                                ("fsdp_rank0.pt", "fsdp_rank1.pt", "ddp_rank0.pt", "single_rank0.pt"))
    assert fsdp["model_type"] == "FSDPNet" and fsdp["bn_type"] == "SyncBatchNormAnyDevice"
    assert fsdp1["weights"] == {}  # the full state_dict is gathered to rank 0 only
    assert_weights_close(fsdp["weights"], ddp["weights"], atol=1e-5)
    assert_weights_close(fsdp["weights"], single["weights"], atol=1e-5)
    assert not torch.allclose(fsdp["weights"]["head.weight"], build_initial()["head.weight"])  # it trained
    for other in (fsdp1, ddp, single):  # the same batches counted the same way: identical accuracies
        assert other["history"]["acc"] == fsdp["history"]["acc"]
        assert other["history"]["val_acc"] == fsdp["history"]["val_acc"]
        assert other["evaluate"]["acc"] == fsdp["evaluate"]["acc"]
        assert other["history"]["loss"] == pytest.approx(fsdp["history"]["loss"], abs=1e-6)
        assert other["evaluate"]["loss"] == pytest.approx(fsdp["evaluate"]["loss"], abs=1e-5)
        assert torch.allclose(other["predict"], fsdp["predict"], atol=1e-5)


def build_initial():
    sys.path.insert(0, str(SCRIPT.parent))
    import fsdp_script
    torch.manual_seed(0)
    return fsdp_script.Net().state_dict()


def test_each_rank_holds_about_half_of_ddps_bytes(out):
    ddp = load(out / "ddp_rank0.pt")["bytes"]
    for rank in range(2):
        fsdp = load(out / f"fsdp_rank{rank}.pt")["bytes"]
        print(f"rank {rank}: FSDP {fsdp} DDP {ddp}")  # noqa: T201 (the measured numbers, for the report)
        for key in ("parameters", "gradients", "optimizer_state", "total"):
            assert 0.45 <= fsdp[key] / ddp[key] <= 0.6, (key, fsdp, ddp)
    import fsdp_script
    # Adam's state: exp_avg and exp_avg_sq per parameter (sharded) plus one float32 step count each (not)
    params = sum(v.numel() for k, v in build_initial().items() if "running" not in k and "tracked" not in k)
    assert ddp["parameters"] == ddp["gradients"] == 4 * params
    assert ddp["optimizer_state"] == 2 * 4 * params + 4 * len(list(fsdp_script.Net().parameters()))


def test_save_weights_under_fsdp_loads_in_one_process_and_back_into_fsdp(out):
    sys.path.insert(0, str(SCRIPT.parent))
    import fsdp_script
    fsdp = load(out / "fsdp_rank0.pt")
    model = fsdp_script.Net()
    model.load_weights(out / "fsdp_weights.pt")  # a plain model, one process
    assert_weights_close(model.state_dict(), fsdp["weights"], atol=0)
    model.compile("adam", "cross_entropy", device="cpu")
    x_test, _ = fsdp_script.data(16, 3)
    assert torch.allclose(model.predict(x_test, batch_size=8), fsdp["predict"], atol=1e-5)
    assert torch.equal(fsdp["reloaded_predict"], fsdp["predict"])  # a new FSDP model took the full state_dict


def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_run(out):
    straight, resumed = load(out / "fsdp_rank0.pt"), load(out / "fsdp_resumed_rank0.pt")
    # Killed at epoch 1 (0-based), batch 5; fit(resume_from="auto") continued from the last checkpoint.
    assert resumed["resumed_at"]["epoch"] == 1 and 0 < resumed["resumed_at"]["batch"] < 6, resumed
    assert_weights_close(resumed["weights"], straight["weights"], atol=1e-6)
    # The epochs outside the interrupted one log exactly the same. (The interrupted epoch's logs mix in
    # rank 0's partial logs on every rank: the checkpoint holds rank 0's alone, as under DDP.)
    assert [resumed["history"]["acc"][e] for e in (0, 2)] == [straight["history"]["acc"][e] for e in (0, 2)]
    assert resumed["history"]["val_acc"] == straight["history"]["val_acc"]
    assert resumed["history"]["val_loss"] == pytest.approx(straight["history"]["val_loss"], abs=1e-6)
    assert resumed["evaluate"] == pytest.approx(straight["evaluate"], abs=1e-6)


def test_mixed_precision_gathers_low_precision_parameters_and_keeps_float32_shards(out):
    runs = load(out / "fsdp_resumed_rank0.pt")["mixed"]  # bf16-mixed; also 16-mixed on GPUs (make gpu-check)
    for precision, dtype in (("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)):
        if precision in runs:
            assert runs[precision]["forward_dtype"] == dtype and runs[precision]["shard_dtype"] == torch.float32
            assert 0 < runs[precision]["loss"][0] < 2, precision
