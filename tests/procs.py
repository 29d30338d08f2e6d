"""Run a function in a real child process (fork), for kill/signal tests.

Forking avoids re-importing torch (seconds) for every child. The child runs
single-threaded, as DataLoader workers do, because OpenMP thread pools do not
survive a fork.
"""
import os
import signal
import tempfile
import time
import traceback

import torch


def start_child(fn, *args):
    """Fork; the child runs ``fn(*args)`` and saves its return value. Returns (pid, result_path)."""
    fd, result_path = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            torch.set_num_threads(1)
            torch.save({"value": fn(*args)}, result_path)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # report any failure to the parent, then exit non-zero
            with open(result_path + ".err", "w") as handle:
                handle.write(traceback.format_exc())
            code = 1
        finally:
            os._exit(code)
    return pid, result_path


def wait_child(pid, result_path, timeout=60.0):
    """Wait for the child; return (exit code or -signal, value or None, error text or None)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError("child process did not finish")
        time.sleep(0.02)
    code = os.waitstatus_to_exitcode(status)
    value = error = None
    if os.path.exists(result_path) and os.path.getsize(result_path):
        value = torch.load(result_path, weights_only=False)["value"]
    if os.path.exists(result_path + ".err"):
        with open(result_path + ".err") as file:
            error = file.read()
        os.remove(result_path + ".err")
    os.remove(result_path)
    return code, value, error


def run_child(fn, *args, timeout=60.0):
    pid, path = start_child(fn, *args)
    return wait_child(pid, path, timeout)
