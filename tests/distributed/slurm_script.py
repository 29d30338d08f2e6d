"""Fit the same tiny model under SLURM variables only, or under torchrun: one script for both.

Usage: python slurm_script.py OUT_DIR [--usr1-at EPOCH:BATCH] [--resume] [--samples N]

``--usr1-at 1:2``: rank 0 (only) sends itself SIGUSR1 after batch 2 (0-based) of epoch 1, as SLURM's
``--signal=USR1@90`` would; every rank must still stop after that same batch. ``--samples 41`` (48 by
default) splits unevenly: 21 samples (6 batches) on rank 0, 20 (5 batches) on rank 1. ``--resume``: continue
with ``fit(resume_from="auto")`` from OUT_DIR's checkpoints. Writes OUT_DIR/rank<r>.pt with the final
weights, the history, the environment the process group was set up from and the warnings fit gave.
"""
import os
import signal
import sys
import warnings

import torch
from torch import nn

import kerastorch as kt
from kerastorch.distributed import rank

EPOCHS = 3
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def data(samples=48):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(samples, 3, generator=g)
    return x, (x[:, :1] - x[:, 1:2] > 0).float()


class Usr1At(kt.callbacks.Callback):
    """SLURM's early warning reaching rank 0 after one batch (other ranks get none)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, batch, logs=None):
        if rank() == 0 and self.session.epoch == self.epoch and batch == self.batch:
            os.kill(os.getpid(), signal.SIGUSR1)


def main(out_dir, usr1_at=None, resume=False, samples=48):
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)))
    model.compile("adam", "bce_with_logits", ["accuracy"], optimizer_kwargs={"lr": 0.05}, device="auto")
    callbacks = [kt.callbacks.ModelCheckpoint(os.path.join(out_dir, "epoch{epoch}.pt"))]
    if usr1_at is not None:
        callbacks.append(Usr1At(*usr1_at))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(*data(samples), batch_size=4, epochs=EPOCHS, verbose=0, callbacks=callbacks,
                            resume_from="auto" if resume else None)
    torch.save({"weights": model.state_dict(), "history": history.to_dict("list"),
                "env": {key: os.environ.get(key) for key in ENV_KEYS},
                "world": torch.distributed.get_world_size(), "ddp": model._config.ddp is not None,
                "device": str(model._config.device),
                "warnings": [str(w.message) for w in caught if "SIGUSR1" in str(w.message)],
                "handler_after": signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL},
               os.path.join(out_dir, f"rank{rank()}.pt"))


if __name__ == "__main__":
    args = sys.argv[2:]
    at = tuple(int(n) for n in args[args.index("--usr1-at") + 1].split(":")) if "--usr1-at" in args else None
    main(sys.argv[1], at, "--resume" in args, int(args[args.index("--samples") + 1]) if "--samples" in args else 48)
