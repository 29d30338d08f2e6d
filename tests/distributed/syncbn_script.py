"""sync_batchnorm under torchrun (or plainly): BatchNorm statistics of the global batch.

Usage: python syncbn_script.py OUT_DIR GLOBAL_BATCH
Under torchrun with W ranks each rank's batch is GLOBAL_BATCH / W (every W-th sample, unshuffled);
run plainly, one process trains on the whole global batch. Writes OUT_DIR/bn<rank|_single>.pt.
"""
import os
import sys
import warnings

import torch
from torch import nn

import kerastorch as kt


def main(out_dir, global_batch):
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one process: "no effect outside DistributedDataParallel"
        model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.05}, device="cpu", sync_batchnorm=True)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 3, generator=g) * 3 + 1
    y = x.sum(1, keepdim=True)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    model.fit(x, y, batch_size=global_batch // world, epochs=2, shuffle=False, verbose=0)
    bn = model[1]
    name = f"bn{os.environ['RANK']}" if world > 1 else "bn_single"
    torch.save({"type": type(bn).__name__, "mean": bn.running_mean, "var": bn.running_var,
                "weights": {k: v.detach() for k, v in model.state_dict().items()}},
               os.path.join(out_dir, f"{name}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
