"""Tests for kerastorch.checkpointing (files and RNG): atomic writes, corrupt/unsafe loads, RNG state."""
from __future__ import annotations

import os
import pathlib
import random
import re
import resource
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TextIO

import numpy as np
import pytest
import torch

from kerastorch.checkpointing import (
    CheckpointError,
    atomic_save,
    capture_rng_state,
    check_writable,
    cleanup_temp_files,
    newest_valid,
    restore_rng_state,
    safe_load,
)

TEMP_NAME = re.compile(r"^\..+\.tmp-\d+-[0-9a-f]{8}$")


def _temp_files(folder: pathlib.Path) -> list[str]:
    return [p.name for p in folder.iterdir() if TEMP_NAME.match(p.name)]


def _fork(child: Callable[[TextIO], None]) -> tuple[int, TextIO]:
    """Run ``child(out)`` in a forked process; return its pid and the read end of ``out``.

    fork (not a fresh interpreter) skips re-importing torch, which takes seconds.
    The child never returns into pytest, and SIGALRM ends it if it ever hangs.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(60)
            os.close(read_fd)
            with os.fdopen(write_fd, "w") as out:
                try:
                    child(out)
                    code = 0
                except CheckpointError as exc:
                    out.write(f"CheckpointError: {exc}\n")
                    code = 3
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, os.fdopen(read_fd)


def _exit_code(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _small_checkpoint(path: pathlib.Path) -> bytes:
    atomic_save({"w": torch.arange(10.0), "epoch": 1}, path)
    return path.read_bytes()


class _TouchOnLoad:
    """Pickles to a call of Path.touch(marker): code that runs when unpickled."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


# ---- round trip and argument checks -------------------------------------------------


def test_round_trip_nested(tmp_path):
    obj = {
        "model": {"w": torch.randn(3, 4), "b": torch.zeros(4, dtype=torch.int64)},
        "opt": [{"step": 7, "lr": 0.1}, (torch.ones(2), "adam", None, True)],
        "name": "run", "missing": None, "shape": (3, 4),
    }
    path = tmp_path / "ckpt.pt"
    atomic_save(obj, path)
    loaded = safe_load(path)
    assert torch.equal(loaded["model"]["w"], obj["model"]["w"])
    assert torch.equal(loaded["model"]["b"], obj["model"]["b"])
    assert loaded["opt"][0] == {"step": 7, "lr": 0.1}
    assert torch.equal(loaded["opt"][1][0], torch.ones(2))
    assert loaded["opt"][1][1:] == ("adam", None, True)
    assert (loaded["name"], loaded["missing"], loaded["shape"]) == ("run", None, (3, 4))
    assert _temp_files(tmp_path) == []


def test_atomic_save_overwrites_and_rejects_directory(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"v": 1}, path)
    atomic_save({"v": 2}, str(path))
    assert safe_load(path) == {"v": 2}
    with pytest.raises(TypeError, match="is a directory"):
        atomic_save({"v": 3}, tmp_path)


def test_unserializable_object_raises_checkpoint_error(tmp_path):
    path = tmp_path / "ckpt.pt"
    with pytest.raises(CheckpointError, match=r"Could not serialize checkpoint '.*ckpt\.pt'"):
        atomic_save({"f": lambda: 1}, path)
    assert not path.exists() and _temp_files(tmp_path) == []


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        safe_load(tmp_path / "nope.pt")


# ---- failed and interrupted writes keep the previous file ---------------------------


def test_file_too_large_keeps_previous_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    old = _small_checkpoint(path)
    big = {"big": torch.ones(2 * 1024 * 1024)}  # 8 MiB, made before fork.

    def write_past_limit(out: TextIO) -> None:
        # Ignored SIGXFSZ turns "killed by the signal" into write() failing with EFBIG,
        # which is how a full disk looks to the writer.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, hard))
        atomic_save(big, path)

    pid, output = _fork(write_past_limit)
    message = output.read()
    assert _exit_code(pid) == 3, message
    assert message.startswith(f"CheckpointError: Could not write checkpoint '{path}': [Errno 27]")
    assert "File too large" in message and "PytorchStreamWriter" not in message
    assert path.read_bytes() == old
    assert torch.equal(safe_load(path)["w"], torch.arange(10.0))
    assert _temp_files(tmp_path) == []


def test_full_disk_keeps_previous_file(tmp_path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        path = mount_point / "ckpt.pt"
        old = _small_checkpoint(path)
        with pytest.raises(CheckpointError) as info:
            atomic_save({"big": torch.ones(1024 * 1024)}, path)  # 4 MiB > 1 MiB
        message = str(info.value)
        assert message.startswith(f"Could not write checkpoint '{path}': [Errno 28]")
        assert "No space left on device" in message
        assert path.read_bytes() == old
        assert safe_load(path)["epoch"] == 1
        assert _temp_files(mount_point) == []
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_killed_mid_write_keeps_previous_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    old = _small_checkpoint(path)
    big = {"big": torch.ones(8 * 1024 * 1024)}  # 32 MiB: several write chunks.

    def write_and_stall(out: TextIO) -> None:
        # Write the first chunk for real, then block so SIGKILL lands mid-write
        # every time instead of racing a fast disk.
        real_write = os.write

        def write_then_stall(fd: int, data: bytes) -> int:
            count = real_write(fd, data)
            out.write("READY\n")
            out.flush()
            time.sleep(60)
            return count

        os.write = write_then_stall
        atomic_save(big, path)

    pid, output = _fork(write_and_stall)
    try:
        assert output.readline() == "READY\n"
        leftovers = _temp_files(tmp_path)
        assert len(leftovers) == 1 and f"-{pid}-" in leftovers[0]
        assert 0 < (tmp_path / leftovers[0]).stat().st_size < 32 * 1024 * 1024
    finally:
        os.kill(pid, signal.SIGKILL)
        # Reaping matters: a zombie still counts as alive for cleanup_temp_files.
        assert _exit_code(pid) == -signal.SIGKILL
        output.close()
    assert path.read_bytes() == old
    assert safe_load(path)["epoch"] == 1
    assert cleanup_temp_files(tmp_path) == leftovers
    assert _temp_files(tmp_path) == []
    assert cleanup_temp_files(tmp_path) == []


def test_cleanup_keeps_files_of_live_writers(tmp_path):
    live = tmp_path / f".ckpt.pt.tmp-{os.getppid()}-0123abcd"  # Parent process: alive.
    stale = tmp_path / f".ckpt.pt.tmp-{os.getpid()}-89abcdef"  # Ours, but not being written.
    other = tmp_path / "notes.tmp-1-0123abcd"
    for file in (live, stale, other):
        file.write_bytes(b"x")
    assert cleanup_temp_files(tmp_path) == [stale.name]
    assert live.exists() and other.exists()
    assert cleanup_temp_files(tmp_path / "missing") == []


# ---- corrupt files --------------------------------------------------------------------


def test_truncated_file_is_rejected(tmp_path):
    path = tmp_path / "ckpt.pt"
    data = _small_checkpoint(path)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"'{re.escape(str(path))}' is truncated or corrupt"):
        safe_load(path)


GARBAGE = [b"", b"not a checkpoint at all" * 50, b"PK\x03\x04" + bytes(500)]


@pytest.mark.parametrize("content", GARBAGE)
def test_garbage_file_is_rejected(tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"'.*junk\.pt' is truncated or corrupt"):
        safe_load(path)


def test_flipped_bit_in_tensor_data_is_rejected(tmp_path):
    # torch.load alone does not check CRCs and would return a silently wrong tensor.
    path = tmp_path / "ckpt.pt"
    data = bytearray(_small_checkpoint(path))
    offset = bytes(data).find(struct.pack("<f", 5.0))
    data[offset + 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"truncated or corrupt: Bad CRC-32"):
        safe_load(path)


# ---- unsafe pickles -------------------------------------------------------------------


@pytest.fixture
def malicious(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "payload": _TouchOnLoad(marker)}, path)
    return path, marker


def test_malicious_pickle_is_refused(malicious):
    path, marker = malicious
    with pytest.raises(CheckpointError, match=r"not plain tensors.*trust_checkpoint=True") as info:
        safe_load(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_malicious_pickle_refused_despite_env_override(malicious, monkeypatch):
    path, marker = malicious
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="trust_checkpoint"):
        safe_load(path)
    assert not marker.exists()
    # Control: the variable is live here, so a torch.load without weights_only runs the code.
    with pytest.warns(UserWarning, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        torch.load(path)
    assert marker.exists()


def test_malicious_pickle_refused_in_process_started_with_env_override(malicious):
    # A fresh interpreter, so even code that reads the variable at import time sees it.
    path, marker = malicious
    code = (
        "import sys\n"
        "from kerastorch.checkpointing import CheckpointError, safe_load\n"
        "try:\n    safe_load(sys.argv[1])\n"
        "except CheckpointError as exc:\n    print(exc)\n    sys.exit(3)\n"
    )
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    command = [sys.executable, "-c", code, str(path)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "trust_checkpoint=True" in result.stdout
    assert not marker.exists()


def test_trust_checkpoint_loads_it(malicious):
    path, marker = malicious
    loaded = safe_load(path, trust_checkpoint=True)
    assert torch.equal(loaded["w"], torch.ones(2))
    assert marker.exists()  # Proves the payload is real, so the refusal tests can fail.


# ---- newest_valid and check_writable -----------------------------------------------------


def test_newest_valid_skips_corrupt_newest(tmp_path):
    paths = [tmp_path / f"epoch_{i}.pt" for i in range(3)]
    for epoch, path in enumerate(paths):
        atomic_save({"epoch": epoch}, path)
        os.utime(path, ns=(epoch * 10**9, epoch * 10**9))
    paths[2].write_bytes(paths[2].read_bytes()[:100])
    os.utime(paths[2], ns=(3 * 10**9, 3 * 10**9))
    with pytest.warns(UserWarning, match=re.escape(f"Skipping checkpoint '{paths[2]}'")):
        chosen = newest_valid(reversed(paths + [tmp_path / "missing.pt"]))
    assert chosen == paths[1]


def test_newest_valid_returns_none_when_nothing_is_valid(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.warns(UserWarning, match="bad.pt"):
        assert newest_valid([bad]) is None
    assert newest_valid([]) is None


def test_check_writable_creates_missing_directory(tmp_path):
    target = tmp_path / "a" / "b"
    check_writable(target)
    assert target.is_dir() and list(target.iterdir()) == []


def test_check_writable_rejects_unwritable_path(tmp_path):
    # chmod cannot stop root, but nothing can create a folder below a regular file.
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    expected = r"'.*file\.txt/sub' is not writable: .*Not a directory"
    with pytest.raises(CheckpointError, match=expected):
        check_writable(blocker / "sub")


# ---- RNG state ---------------------------------------------------------------------------


def _draws() -> tuple:
    return (
        [random.random() for _ in range(3)] + [random.gauss(0.0, 1.0)],
        np.random.rand(3).tolist() + [float(np.random.standard_normal())],
        torch.rand(3),
        torch.randn(3),
    )


def test_rng_state_survives_save_and_load(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0.0, 1.0)  # Leaves a cached Gaussian in both Python and NumPy state.
    np.random.standard_normal()
    path = tmp_path / "rng.pt"
    atomic_save({"rng": capture_rng_state()}, path)
    expected = _draws()
    _draws()  # Move every generator on.
    restore_rng_state(safe_load(path)["rng"])
    actual = _draws()
    assert actual[0] == expected[0]
    assert actual[1] == expected[1]
    assert torch.equal(actual[2], expected[2]) and torch.equal(actual[3], expected[3])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_state_survives_save_and_load(tmp_path):
    torch.cuda.manual_seed_all(4)
    path = tmp_path / "rng.pt"
    atomic_save({"rng": capture_rng_state()}, path)
    expected = torch.rand(4, device="cuda")
    torch.rand(4, device="cuda")
    restore_rng_state(safe_load(path)["rng"])
    assert torch.equal(torch.rand(4, device="cuda"), expected)
