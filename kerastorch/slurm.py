"""SLURM launches: torch.distributed's environment from the variables ``srun`` sets.

``srun python train.py`` starts one process per task and sets only ``SLURM_*`` variables.
:func:`slurm_environment` maps them to what torchrun would set (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), so the tasks form one
DDP group as torchrun's ranks do; :func:`adopt_slurm_environment` writes them into
``os.environ`` (kerastorch.distributed does that once per process, when it first asks for a rank).

Nothing is derived when:

* torchrun (or ``kt.launch``, or the user) already set ``RANK`` / ``LOCAL_RANK``: they win,
  e.g. for ``srun torchrun ...``;
* the step has one task (``SLURM_STEP_NUM_TASKS``, else ``SLURM_NTASKS``, is 1), e.g. a shell of
  ``salloc`` or ``srun --pty bash``;
* the process is the batch script itself (``python train.py`` in an sbatch script, without
  ``srun``): it has ``SLURM_PROCID=0`` and the job's ``SLURM_NTASKS``, but no other task will
  come, so it trains alone instead of waiting for them;
* ``KERASTORCH_SLURM=0`` is set: for ``srun -n N`` running N independent runs (a sweep). It also
  leaves SIGUSR1 alone (see :mod:`kerastorch.engine.signals`).

``MASTER_ADDR`` is the first host of the step's node list (rank 0 runs there), ``MASTER_PORT`` a
port in 15000-29999 computed from the job and step ids, so every task finds the same one without
talking. Both are kept when already set: set ``MASTER_PORT`` if two jobs whose rank 0 share a node
collide, or ``MASTER_ADDR`` where node names do not resolve.
"""
from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping, MutableMapping

#: The variables torchrun sets; any of them means the launcher already did the work.
_LAUNCHER_KEYS = ("RANK", "LOCAL_RANK")
_OFF = ("0", "false", "off", "no")
_PORT_BASE, _PORT_SPAN = 15000, 15000  # below Linux's ephemeral ports (32768-60999)


def slurm_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed's variables for a task of a multi-task ``srun`` step; ``{}`` otherwise.

    Args:
        environ: the process environment (``os.environ``) or any mapping like it.

    Returns:
        ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` and, when the
        tasks per node are known, ``LOCAL_WORLD_SIZE``; ``{}`` when this is not a task of a
        multi-task SLURM step (see the module docstring).

    Raises:
        ValueError: a SLURM variable is not what SLURM writes (e.g. ``SLURM_PROCID=abc``).

    Example:
        >>> env = slurm_environment({"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8",
        ...                          "SLURM_TASKS_PER_NODE": "4(x2)", "SLURM_NODEID": "1",
        ...                          "SLURM_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242"})
        >>> {key: env[key] for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")}
        {'RANK': '5', 'WORLD_SIZE': '8', 'LOCAL_RANK': '1', 'LOCAL_WORLD_SIZE': '4', 'MASTER_ADDR': 'gpu07'}
        >>> slurm_environment({"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "1"})
        {}
    """
    if not _is_multi_task_step(environ):
        return {}
    world = _integer(environ, "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in environ else "SLURM_NTASKS")
    rank, local_rank = _integer(environ, "SLURM_PROCID"), _integer(environ, "SLURM_LOCALID")
    if not 0 <= rank < world:
        raise ValueError(f"SLURM_PROCID must be in [0, {world}) for a step of {world} tasks. "
                         f"Received: SLURM_PROCID={rank}. Launch with srun, or set RANK and WORLD_SIZE yourself.")
    derived = {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(local_rank),
               "MASTER_ADDR": environ.get("MASTER_ADDR") or _master_addr(environ),
               "MASTER_PORT": environ.get("MASTER_PORT") or _master_port(environ)}
    local_world = _tasks_on_this_node(environ)
    if local_world is not None:
        derived["LOCAL_WORLD_SIZE"] = str(local_world)
    return derived


def in_slurm_job(environ: Mapping[str, str]) -> bool:
    """True inside a SLURM job (``SLURM_JOB_ID`` set) unless ``KERASTORCH_SLURM=0`` tells kerastorch to ignore it.

    Example:
        >>> in_slurm_job({"SLURM_JOB_ID": "77"}), in_slurm_job({"SLURM_JOB_ID": "77", "KERASTORCH_SLURM": "0"})
        (True, False)
    """
    return "SLURM_JOB_ID" in environ and environ.get("KERASTORCH_SLURM", "").strip().lower() not in _OFF


def adopt_slurm_environment(environ: MutableMapping[str, str] | None = None) -> bool:
    """Write :func:`slurm_environment`'s variables into ``environ`` (default ``os.environ``), only those not
    set there; return whether this is a multi-task SLURM step whose variables were adopted.

    Example:
        >>> env = {"SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NTASKS": "2", "SLURM_NODELIST": "n[3-4]",
        ...        "SLURM_JOB_ID": "77", "MASTER_PORT": "29500"}
        >>> adopt_slurm_environment(env), env["RANK"], env["MASTER_ADDR"], env["MASTER_PORT"]
        (True, '1', 'n3', '29500')
        >>> adopt_slurm_environment(env)  # RANK is set now: nothing more to do
        False
    """
    environ = os.environ if environ is None else environ
    derived = slurm_environment(environ)
    for key, value in derived.items():
        environ.setdefault(key, value)
    return bool(derived)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list, compressed or not.

    Example:
        >>> [first_host(s) for s in ("node[01-04,07]", "gpu-a[1,3]", "n1,n2", "host", "r[2-3]-n[05-06],x")]
        ['node01', 'gpu-a1', 'n1', 'host', 'r2-n05']
    """
    depth, end = 0, len(nodelist)
    for position, char in enumerate(nodelist):
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            end = position
            break
    # each bracket group [a-b,c,...] contributes its first value, zero padding kept
    host = re.sub(r"\[([^\]\-,]*)[^\]]*\]", r"\1", nodelist[:end].strip())
    if not host or "[" in host or "]" in host:
        raise ValueError(f"The SLURM node list {nodelist!r} could not be read. Set MASTER_ADDR to the host of "
                         "rank 0 (e.g. export MASTER_ADDR=$(scontrol show hostnames | head -n 1)).")
    return host


def tasks_per_node(value: str) -> list[int]:
    """Expand ``SLURM_TASKS_PER_NODE``'s form: ``"2(x3),1"`` is 2 tasks on each of 3 nodes, then 1.

    Example:
        >>> tasks_per_node("2(x3),1")
        [2, 2, 2, 1]
    """
    counts: list[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if match is None:
            raise ValueError(f"SLURM_TASKS_PER_NODE must look like '4' or '2(x3),1'. Received: {value!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def _is_multi_task_step(environ: Mapping[str, str]) -> bool:
    if environ.get("KERASTORCH_SLURM", "").strip().lower() in _OFF:
        return False
    if any(key in environ for key in _LAUNCHER_KEYS) or "SLURM_PROCID" not in environ:
        return False
    if "SLURM_STEP_ID" in environ and "SLURM_STEP_NUM_TASKS" not in environ:
        return False  # the batch script (srun sets SLURM_STEP_NUM_TASKS in every task it starts)
    tasks = environ.get("SLURM_STEP_NUM_TASKS", environ.get("SLURM_NTASKS", "1"))
    return tasks.strip() not in ("", "0", "1")


def _integer(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name)
    try:
        number = int(value)  # type: ignore[arg-type]  # None raises TypeError, handled below
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-negative integer, as srun sets it. Received: {name}={value!r}. "
                         "Launch with srun, or set RANK, WORLD_SIZE and LOCAL_RANK yourself.") from None
    if number < 0:
        raise ValueError(f"{name} must be a non-negative integer, as srun sets it. Received: {name}={value!r}.")
    return number


def _master_addr(environ: Mapping[str, str]) -> str:
    for name in ("SLURM_STEP_NODELIST", "SLURM_NODELIST", "SLURM_JOB_NODELIST"):
        if environ.get(name):
            return first_host(environ[name])
    raise ValueError("No SLURM node list is set (SLURM_STEP_NODELIST, SLURM_NODELIST or SLURM_JOB_NODELIST): "
                     "set MASTER_ADDR to the host of rank 0.")


def _master_port(environ: Mapping[str, str]) -> str:
    job = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")
    if not job:
        raise ValueError("SLURM_JOB_ID is not set, so no port can be agreed on: set MASTER_PORT to a free port "
                         "(the same in every task).")
    step = environ.get("SLURM_STEP_ID", "")  # steps running side by side in one job get different ports
    return str(_PORT_BASE + zlib.crc32(f"{job}.{step}".encode()) % _PORT_SPAN)


def _tasks_on_this_node(environ: Mapping[str, str]) -> int | None:
    for name in ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        if environ.get(name):
            counts = tasks_per_node(environ[name])
            node = environ.get("SLURM_NODEID")
            if node is not None and _integer(environ, "SLURM_NODEID") < len(counts):
                return counts[int(node)]
            if len(set(counts)) == 1:
                return counts[0]
    if environ.get("SLURM_NTASKS_PER_NODE"):
        return _integer(environ, "SLURM_NTASKS_PER_NODE")
    return None
