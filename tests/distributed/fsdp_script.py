"""compile(strategy="fsdp") under torchrun, the same training with DDP, and in one process.

Usage: python fsdp_script.py OUT_DIR MODE [--killed | --resumed]
  MODE "single": one process, batches of 8; "ddp" / "fsdp": under torchrun --nproc_per_node=2, batches of 4
  per rank (each rank's batch k holds half of the single process's batch k, so the averaged gradients agree).
Training: Adam, gradient clipping, accumulation over 2 batches, synchronised BatchNorm, shuffling, a full
ModelCheckpoint every 3 batches. --killed: both ranks SIGKILL themselves mid-epoch 2; --resumed: the same
script again, with fit(resume_from="auto") (it finds the killed run's checkpoint).
Writes OUT_DIR/<MODE>[_resumed]_rank<r>.pt: full weights, history, evaluate logs, predictions, per-rank bytes.
KT_FSDP_DEVICE=auto (make gpu-check, 2 GPUs) runs it on the GPUs (nccl) instead of the CPU (gloo).
"""
import os
import signal
import sys

import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback, ModelCheckpoint
from kerastorch.fsdp import full_model_state, sharded_bytes

WIDTH = 16
DEVICE = os.environ.get("KT_FSDP_DEVICE", "cpu")


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        return x + torch.tanh(self.linear(x))


class Net(kt.Model):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, WIDTH, bias=False)  # a bias before BatchNorm gets ~0 gradients Adam would blow up
        self.norm = nn.BatchNorm1d(WIDTH)
        self.blocks = nn.ModuleList([Block() for _ in range(3)])
        self.head = nn.Linear(WIDTH, 2)

    def forward(self, x):
        x = torch.relu(self.norm(self.inp(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] * x[:, 1] + x[:, 2] > 0).long()


class MeasureBytes(Callback):
    """This rank's parameter, gradient and optimizer-state bytes after the backward of batch 3 (Adam has
    stepped once, the gradients of the second window are reduced)."""

    measured = None

    def on_backward_end(self, batch, logs=None):
        if self.session.epoch == 0 and batch == 3:
            MeasureBytes.measured = sharded_bytes(self.model, self.model.optimizer)


class KillAt(Callback):
    def on_train_batch_end(self, batch, logs=None):
        if self.session.epoch == 1 and batch == 5:  # the last checkpoint: 3 batches before (epoch 1, batch 2)
            os.kill(os.getpid(), signal.SIGKILL)


def build(mode):
    torch.manual_seed(0)
    model = Net()
    strategy = kt.FSDP(modules=(Block,)) if mode == "fsdp" else ("ddp" if mode == "ddp" else "auto")
    model.compile("adam", "cross_entropy", {"acc": "accuracy"}, optimizer_kwargs={"lr": 0.02}, device=DEVICE,
                  grad_clip_norm=0.5, grad_accum_steps=2, sync_batchnorm=mode != "single", strategy=strategy)
    return model


def mixed_run(x, y, precision):
    """A mixed precision under FSDP: blocks compute with bf16/fp16 copies of float32 shards."""
    torch.manual_seed(0)
    model = Net()
    model.compile("adam", "cross_entropy", device=DEVICE, precision=precision, strategy=kt.FSDP(modules=(Block,)))
    seen = []
    model.blocks[0].linear.register_forward_pre_hook(lambda module, args: seen.append(module.weight.dtype))
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    return {"forward_dtype": seen[0], "shard_dtype": model.blocks[0].linear.weight.dtype,
            "loss": history["loss"].tolist()}


def main(out_dir, mode, killed, resumed):
    batch = 8 if mode == "single" else 4
    checkpoints = os.path.join(out_dir, f"{mode}{'_killed' if killed or resumed else ''}_checkpoints")
    os.makedirs(checkpoints, exist_ok=True)
    last = os.path.join(checkpoints, "ckpt.pt")
    resumed_at = torch.load(last, weights_only=True) if resumed else {}
    model = build(mode)
    callbacks = [ModelCheckpoint(last, save_freq=3, save_weights_only=False), MeasureBytes()]
    if killed:
        callbacks.append(KillAt())
    x, y = data(64, 1)
    torch.manual_seed(0)
    history = model.fit(x, y, batch_size=batch, epochs=3, validation_data=data(16, 2), verbose=0,
                        callbacks=callbacks, resume_from="auto" if resumed else None)
    x_test, y_test = data(16, 3)
    result = {"weights": {key: value.cpu() for key, value in full_model_state(model).items()},
              "history": history.to_dict("list"),
              "evaluate": model.evaluate(x_test, y_test, batch_size=batch),
              "predict": model.predict(x_test, batch_size=batch), "bytes": MeasureBytes.measured,
              "bn_type": type(model.norm).__name__, "model_type": type(model).__name__,
              "resumed_at": {key: resumed_at[key] for key in ("epoch", "batch", "global_step") if key in resumed_at}}
    if mode == "fsdp" and not resumed:
        path = os.path.join(out_dir, "fsdp_weights.pt")
        model.save_weights(path)  # every rank gathers, rank 0 writes
        again = build(mode)  # a new sharded model takes the full state_dict: each rank keeps its shard
        again.load_weights(path)
        result["reloaded_predict"] = again.predict(x_test, batch_size=batch)
    if resumed:
        precisions = ["bf16-mixed"] if DEVICE == "cpu" else ["bf16-mixed", "16-mixed"]  # fp16 needs CUDA
        result["mixed"] = {precision: mixed_run(x, y, precision) for precision in precisions}
    rank = int(os.environ.get("RANK", "0"))
    torch.save(result, os.path.join(out_dir, f"{mode}{'_resumed' if resumed else ''}_rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--killed" in sys.argv[3:], "--resumed" in sys.argv[3:])
