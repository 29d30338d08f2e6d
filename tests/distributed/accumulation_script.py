"""Accumulation and a schedule preset under torchrun: every update's gradient, lr and the batches it saw.

Usage: torchrun --nproc_per_node=2 accumulation_script.py OUT_DIR MODE   (MODE: whole | interrupt | resume)

27 samples sharded over 2 ranks (14 and 13), batches of 4 (4, 4, 4, 2 and 4, 4, 4, 1), grad_accum_steps=3:
windows of 3 batches and a short one of 1, 2 updates an epoch, 4 in 2 epochs; SGD with
WarmupCosine(warmup=2, min_lr=0.01) on a float64 model. ``interrupt`` stops both ranks in epoch 2 at
batch 1 (SIGINT on every rank at the same batch; the interrupt checkpoint is written after the window
closes); ``resume`` continues from it. Writes OUT_DIR/<MODE>_rank<r>.pt: the batches each update
accumulated (x, y per batch), the gradients and lr at each update, the final weights.
"""
import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback
from kerastorch.distributed import rank


class Recorded(kt.Model):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
        self.seen = []  # per update: the batches (x, y) of its window

    def forward(self, x):
        return self.body(x)

    def train_step(self, batch):
        if self._session.window.total == 0:  # a window opens (plan() reset its count)
            self.seen.append([])
        self.seen[-1].append((batch[0].clone(), batch[1].clone()))
        return super().train_step(batch)


class InterruptAt(Callback):
    def on_train_batch_end(self, batch, logs=None):
        if (self.session.epoch, batch) == (1, 1):
            os.kill(os.getpid(), signal.SIGINT)


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(27, 3, generator=g, dtype=torch.float64)
    return x, torch.sin(x).sum(1, keepdim=True)


def main(out: Path, mode: str) -> None:
    model = Recorded()
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, device="cpu", grad_accum_steps=3,
                  lr_scheduler=kt.schedules.WarmupCosine(warmup=2, min_lr=0.01))
    updates = []
    model.optimizer.register_step_pre_hook(lambda opt, args, kwargs: updates.append(
        {"lr": opt.param_groups[0]["lr"], "grads": [p.grad.clone() for p in model.parameters()]}))
    checkpoint = kt.callbacks.ModelCheckpoint(str(out / "ep{epoch}.pt"), save_weights_only=False)
    callbacks = [checkpoint, InterruptAt()] if mode == "interrupt" else [checkpoint]
    x, y = data()
    try:
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=callbacks,
                  resume_from=str(out / "interrupted.pt") if mode == "resume" else None)
    except KeyboardInterrupt:
        assert mode == "interrupt"
    torch.save({"seen": model.seen, "updates": updates, "weights": model.state_dict(),
                "start_weights": Recorded().state_dict()}, out / f"{mode}_rank{rank()}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
