"""The terminal bar at 80 and 160 columns, drawn into a real pseudo-terminal: whole pairs, a bar of fixed width."""
import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback
from kerastorch.callbacks.display import progress

METRICS = ("accuracy", "precision", "recall")
PAIR = re.compile(rf"(loss|{'|'.join(METRICS)})=\d\.\d{{4}}")
COUNTERS = re.compile(r"\d\d:\d\d<(\d\d:\d\d|\?)|\s*(\d+\.\d\d|\?)step/s")  # elapsed<remaining, the rate


def compiled_model():
    """Built here, before the fork: the optimizer's first construction imports torch._dynamo (seconds)."""
    torch.manual_seed(0)
    net = kt.Model.wrap(nn.Linear(4, 1))
    net.compile("sgd", "bce_with_logits", list(METRICS), device="cpu")
    x = torch.randn(80, 4)
    return net, x, (x.sum(1, keepdim=True) > 0).float()


def train_in_terminal(columns, net, x, y):
    """In a forked child whose stdout is a pty of ``columns``: a fit whose bar refreshes every other batch or so."""
    fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    os.environ.pop("COLUMNS", None)  # what shutil.get_terminal_size would read first
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (the child's stdout until it exits)
    progress.ProgressBar.__init__.__defaults__ = (0.05,)  # refresh_seconds in this child only
    torch.set_num_threads(1)  # OpenMP thread pools do not survive a fork

    class Slow(Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.01)

    net.fit(x, y, batch_size=4, epochs=2, callbacks=[Slow()])


def terminal_output(columns):
    """What the child wrote to its terminal, split on carriage returns and newlines."""
    model = compiled_model()
    pid, master = pty.fork()
    if pid == 0:  # child
        code = 0
        try:
            train_in_terminal(columns, *model)
        except BaseException as error:  # shown in the parent's failure message
            print(f"child failed: {error!r}", flush=True)
            code = 1
        finally:
            os._exit(code)
    output, deadline = b"", time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([master], [], [], 1.0)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child has exited and closed its end
                break
            if not chunk:
                break
            output += chunk
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(master)
    text = output.decode()
    assert os.waitstatus_to_exitcode(status) == 0, text
    return re.split(r"[\r\n]+", text)


def bar_lines(lines):
    """{epoch description: [(the bar's characters, the line's values)]} of every bar frame drawn."""
    frames = {}
    for line in (line.rstrip() for line in lines):
        match = re.fullmatch(r"(Epoch \d/2).*?\|(.*?)\| +\d+/20 \[(.*)\]", line)
        if line.startswith("Epoch"):
            assert match, f"a cut or malformed bar line: {line!r}"
            frames.setdefault(match[1], []).append((match[2], match[3].split(", ")))
    return frames


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 160])
def test_the_bar_keeps_its_width_and_shows_only_whole_pairs(columns):
    lines = terminal_output(columns)
    assert max(len(line) for line in lines) <= columns - 2  # room for the "^C" a terminal echoes
    frames = bar_lines(lines)
    assert sorted(frames) == ["Epoch 1/2", "Epoch 2/2"]
    for epoch, drawn in frames.items():
        widths = {len(bar) for bar, _ in drawn}
        assert len(widths) == 1 and widths.pop() >= progress.MIN_BAR, (epoch, drawn)  # one width all epoch
        for _, items in drawn:
            for item in items:  # the counters, then whole name=value pairs
                assert PAIR.fullmatch(item) or COUNTERS.fullmatch(item), (epoch, item)
    shown = [sorted(PAIR.fullmatch(i)[1] for i in items if PAIR.fullmatch(i)) for _, items in frames["Epoch 2/2"]]
    if columns == 80:  # the loss fits beside a 20-character bar; the metrics are left out, not cut
        assert ["loss"] in shown
    else:
        assert sorted(["loss", *METRICS]) in shown
