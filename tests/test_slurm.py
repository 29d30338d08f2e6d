"""kerastorch.slurm: SLURM's task variables mapped to torch.distributed's, with known answers."""
import os
import zlib

import pytest
import torch

from kerastorch import distributed
from kerastorch.slurm import adopt_slurm_environment, first_host, slurm_environment, tasks_per_node

# A task of `srun` in a job of 2 nodes x 4 tasks, as srun sets it (step variables included).
TASK_6 = {"SLURM_JOB_ID": "81234", "SLURM_STEP_ID": "0", "SLURM_PROCID": "6", "SLURM_LOCALID": "2",
          "SLURM_NODEID": "1", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8", "SLURM_TASKS_PER_NODE": "4(x2)",
          "SLURM_STEP_TASKS_PER_NODE": "4(x2)", "SLURM_JOB_NODELIST": "gpu[017-018]",
          "SLURM_STEP_NODELIST": "gpu[017-018]", "SLURM_NODELIST": "gpu[017-018]"}


def port(job, step=""):
    """The documented rule: 15000 + crc32("<job>.<step>") % 15000."""
    return str(15000 + zlib.crc32(f"{job}.{step}".encode()) % 15000)


def test_a_task_of_a_two_node_step():
    assert slurm_environment(TASK_6) == {"RANK": "6", "WORLD_SIZE": "8", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "4",
                                         "MASTER_ADDR": "gpu017", "MASTER_PORT": port("81234", "0")}


def test_every_task_of_the_job_agrees_on_the_address_and_the_port():
    tasks = [{**TASK_6, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r % 4), "SLURM_NODEID": str(r // 4)}
             for r in range(8)]
    found = [slurm_environment(task) for task in tasks]
    assert {(env["MASTER_ADDR"], env["MASTER_PORT"]) for env in found} == {("gpu017", port("81234", "0"))}
    assert [env["RANK"] for env in found] == [str(r) for r in range(8)]
    assert [env["LOCAL_RANK"] for env in found] == ["0", "1", "2", "3"] * 2


def test_ports_differ_between_jobs_and_between_steps_and_stay_below_the_ephemeral_range():
    ports = {slurm_environment({**TASK_6, "SLURM_JOB_ID": str(job), "SLURM_STEP_ID": str(step)})["MASTER_PORT"]
             for job in range(1000, 1020) for step in range(3)}
    assert len(ports) >= 55  # 60 job steps; a few may share a port by chance (MASTER_PORT then decides)
    assert all(15000 <= int(p) < 30000 for p in ports)


def test_only_the_basic_variables_as_the_tests_set_them():
    env = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1", "SLURM_NODELIST": "127.0.0.1",
           "SLURM_JOB_ID": "99", "SLURM_NTASKS_PER_NODE": "2"}
    assert slurm_environment(env) == {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                                      "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port("99")}


def test_the_step_wins_over_the_job():
    """`srun -N1 -n2` inside a 2-node allocation of 8 tasks: 2 ranks, rank 0 on the step's first node."""
    env = {**TASK_6, "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NODEID": "0", "SLURM_STEP_NUM_TASKS": "2",
           "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_STEP_NODELIST": "gpu018", "SLURM_STEP_ID": "3"}
    derived = slurm_environment(env)
    assert (derived["WORLD_SIZE"], derived["LOCAL_WORLD_SIZE"], derived["MASTER_ADDR"]) == ("2", "2", "gpu018")
    assert derived["MASTER_PORT"] == port("81234", "3")


@pytest.mark.parametrize(("tasks", "node", "expected"), [
    ("3(x2),1", "0", "3"), ("3(x2),1", "1", "3"), ("3(x2),1", "2", "1"), ("2,4", "1", "4"), ("4(x3)", None, "4")])
def test_tasks_on_this_node(tasks, node, expected):
    env = {"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "7", "SLURM_NODELIST": "a1",
           "SLURM_JOB_ID": "5", "SLURM_TASKS_PER_NODE": tasks, **({"SLURM_NODEID": node} if node else {})}
    assert slurm_environment(env)["LOCAL_WORLD_SIZE"] == expected


def test_uneven_tasks_per_node_without_a_node_id_leave_local_world_size_out():
    env = {"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "3", "SLURM_NODELIST": "a[1-2]",
           "SLURM_JOB_ID": "5", "SLURM_TASKS_PER_NODE": "2,1"}
    assert "LOCAL_WORLD_SIZE" not in slurm_environment(env)


def test_master_address_and_port_already_set_are_kept():
    derived = slurm_environment({**TASK_6, "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29400"})
    assert (derived["MASTER_ADDR"], derived["MASTER_PORT"]) == ("10.0.0.7", "29400")
    assert derived["RANK"] == "6"


@pytest.mark.parametrize("case", ["torchrun inside srun", "local rank set", "one task", "salloc shell",
                                  "batch script", "interactive step", "switched off", "not slurm"])
def test_nothing_is_derived_when_this_is_not_a_task_of_a_multi_task_step(case):
    env = {
        "torchrun inside srun": {**TASK_6, "RANK": "3", "WORLD_SIZE": "16", "TORCHELASTIC_RUN_ID": "x"},
        "local rank set": {**TASK_6, "LOCAL_RANK": "0"},
        "one task": {"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "1", "SLURM_NODELIST": "n1",
                     "SLURM_JOB_ID": "7"},
        # salloc -n 4: the shell has the job's task count but is no task (no SLURM_PROCID)
        "salloc shell": {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_NODELIST": "n[1-2]"},
        # `python train.py` in an sbatch script with --ntasks=4: the batch step, which srun did not start
        "batch script": {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "4294967291", "SLURM_PROCID": "0",
                         "SLURM_LOCALID": "0", "SLURM_NTASKS": "4", "SLURM_NODELIST": "n[1-2]"},
        # `srun --pty bash` (or salloc's interactive step) in a 4-task allocation: a step of one task
        "interactive step": {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "1",
                             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "4", "SLURM_NODELIST": "n1"},
        "switched off": {**TASK_6, "KERASTORCH_SLURM": "0"},
        "not slurm": {"PATH": "/usr/bin"},
    }[case]
    assert slurm_environment(env) == {}


@pytest.mark.parametrize(("nodelist", "host"), [
    ("node[01-04,07]", "node01"), ("gpu-a[1,3]", "gpu-a1"), ("n1,n2", "n1"), ("host", "host"),
    ("node[07,01-04]", "node07"), ("rack[2-3]-n[005-006],x1", "rack2-n005"), ("a1,b[1-2]", "a1"),
    ("c[1-2],d3", "c1"), ("127.0.0.1", "127.0.0.1"), ("gpu[017-018]", "gpu017")])
def test_first_host_of_a_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_tasks_per_node_expands_repetitions():
    assert tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert tasks_per_node("8") == [8]


@pytest.mark.parametrize(("change", "message"), [
    ({"SLURM_PROCID": "abc"}, r"SLURM_PROCID must be a non-negative integer, as srun sets it\. "
                              r"Received: SLURM_PROCID='abc'\."),
    ({"SLURM_LOCALID": "-1"}, r"SLURM_LOCALID must be a non-negative integer, as srun sets it\. "
                              r"Received: SLURM_LOCALID='-1'\."),
    ({"SLURM_PROCID": "8"}, r"SLURM_PROCID must be in \[0, 8\) for a step of 8 tasks\. Received: SLURM_PROCID=8\."),
    ({"SLURM_STEP_NODELIST": "gpu[017-"}, r"The SLURM node list 'gpu\[017-' could not be read\. Set MASTER_ADDR"),
    ({"SLURM_STEP_TASKS_PER_NODE": "4(x"}, r"SLURM_TASKS_PER_NODE must look like '4' or '2\(x3\),1'\. "
                                           r"Received: '4\(x'"),
])
def test_variables_srun_would_not_write_are_refused_with_the_fix(change, message):
    with pytest.raises(ValueError, match=message):
        slurm_environment({**TASK_6, **change})


def test_without_a_job_id_or_a_node_list_the_fix_is_named():
    no_job = {key: value for key, value in TASK_6.items() if key != "SLURM_JOB_ID"}
    with pytest.raises(ValueError, match=r"SLURM_JOB_ID is not set, so no port can be agreed on: set MASTER_PORT"):
        slurm_environment(no_job)
    assert slurm_environment({**no_job, "MASTER_PORT": "29500"})["MASTER_PORT"] == "29500"
    no_nodes = {key: value for key, value in TASK_6.items() if "NODELIST" not in key}
    with pytest.raises(ValueError, match=r"No SLURM node list is set .*: set MASTER_ADDR to the host of rank 0\."):
        slurm_environment(no_nodes)


def test_adopt_writes_only_the_missing_variables():
    env = {**TASK_6, "MASTER_PORT": "29400", "WORLD_SIZE": "8"}
    assert adopt_slurm_environment(env) is True
    assert {key: env[key] for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")} == \
        {"RANK": "6", "WORLD_SIZE": "8", "LOCAL_RANK": "2", "MASTER_ADDR": "gpu017", "MASTER_PORT": "29400"}
    assert adopt_slurm_environment(env) is False  # RANK is set now: nothing more to adopt
    untouched = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}
    assert adopt_slurm_environment(untouched) is False and untouched == {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}


@pytest.fixture
def fresh_process_environment():
    """os.environ and the once-per-process adoption as a new process has them; both restored after."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("SLURM_") or k in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                         "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                                                         "MASTER_PORT", "KERASTORCH_SLURM")]:
        del os.environ[key]
    distributed.adopt_launcher_environment.cache_clear()
    yield os.environ
    os.environ.clear()
    os.environ.update(saved)
    distributed.adopt_launcher_environment.cache_clear()


def test_the_rank_queries_see_a_slurm_task_as_a_torchrun_rank(fresh_process_environment):
    fresh_process_environment.update(TASK_6)
    assert not torch.distributed.is_initialized()
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (6, 8, 2)
    assert distributed.launched_distributed() and not distributed.is_rank_zero()
    assert os.environ["MASTER_ADDR"] == "gpu017" and os.environ["LOCAL_WORLD_SIZE"] == "4"
    expected = torch.device("cuda", 2 % torch.cuda.device_count()) if torch.cuda.is_available() else \
        torch.device("cpu")
    assert distributed.resolve_device("auto") == expected


def test_a_batch_script_stays_one_process(fresh_process_environment):
    fresh_process_environment.update({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "4294967291", "SLURM_PROCID": "0",
                                      "SLURM_LOCALID": "0", "SLURM_NTASKS": "4", "SLURM_NODELIST": "n[1-2]"})
    assert (distributed.rank(), distributed.world_size(), distributed.launched_distributed()) == (0, 1, False)
    assert "RANK" not in os.environ
