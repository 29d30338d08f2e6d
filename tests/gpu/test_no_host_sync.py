"""No host-device sync inside the training step (CUDA only; skipped elsewhere).

Runs fit under ``torch.cuda.set_sync_debug_mode("error")`` for the steps of an
epoch, in fp32, bf16 and fp16 modes: any ``.item()``, ``bool(tensor)`` or blocking
copy inside the step raises. Epoch ends, where logs are read once, are
outside the checked region. fp16's GradScaler syncs in ``step()`` (it reads
its inf check on the host) unless the optimizer is fused: fp16 is checked with
``Adam(fused=True)``, where the check stays on the device.
"""
import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class SyncGuard(Callback):
    """Turn sync debugging on for batches 1.. of each epoch (batch 0 resolves lazy state)."""

    def on_train_batch_end(self, batch, logs=None):
        torch.cuda.set_sync_debug_mode("error" if batch + 2 < self.params["steps"] else 0)

    def on_epoch_end(self, epoch, logs=None):
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
def test_training_steps_do_not_sync(precision):
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1)))
    # fp16: GradScaler.step reads found_inf on the host unless the optimizer is fused.
    optimizer = torch.optim.Adam(model.parameters(), fused=True) if precision == "16-mixed" else "adam"
    model.compile(optimizer, "bce_with_logits", ["accuracy", "auc", "precision", "f1", "mae"],
                  regularizers=kt.regularizers.L1L2(1e-4, 1e-4), grad_clip_norm=1.0,
                  precision=precision, device="cuda")
    x = torch.randn(512, 8)
    y = (x[:, 0] > 0).float()
    try:
        history = model.fit(x, y, batch_size=32, epochs=2, callbacks=[SyncGuard()], verbose=0)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert len(history) == 2
