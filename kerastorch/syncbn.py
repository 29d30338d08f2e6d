"""BatchNorm with statistics over all ranks' batches, on any device (torch's SyncBatchNorm is CUDA-only).

:func:`convert_sync_batchnorm` turns a model's BatchNorm layers into torch's
``nn.SyncBatchNorm`` on CUDA and into :class:`SyncBatchNormAnyDevice` elsewhere
(CPU under torchrun with gloo). Both compute each training batch's mean and
variance over the global batch, so the running statistics are those one process
would compute on all ranks' samples at once.
"""
from __future__ import annotations

import torch
import torch.distributed.nn.functional as distributed_functional
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class SyncBatchNormAnyDevice(_BatchNorm):
    """Batch normalization whose training statistics are summed over all ranks (differentiably).

    Per batch: each rank's per-channel sum, sum of squares and count are all-reduced
    (``torch.distributed.nn.functional.all_reduce``, whose backward sends the gradients
    back through the same sums), giving the global mean and biased variance used to
    normalize; the running variance gets the unbiased one, as BatchNorm does. Outside
    training, or without a process group of more than one rank, it is plain BatchNorm.

    Example:
        >>> layer = SyncBatchNormAnyDevice(3)
        >>> layer(torch.randn(4, 3)).shape  # one process: plain BatchNorm
        torch.Size([4, 3])
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"SyncBatchNormAnyDevice expects at least 2-D input. Received: {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        group_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        if not self.training or group_size == 1:
            return super().forward(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        count = torch.full((1,), input.numel() / channels, dtype=input.dtype, device=input.device)
        totals = distributed_functional.all_reduce(torch.cat([input.sum(dims), input.square().sum(dims), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = totals[channels:2 * channels] / n - mean.square()
        self._update_running_stats(mean.detach(), var.detach(), n.detach())
        shape = [1, channels] + [1] * (input.dim() - 2)
        output = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        tracked = self.num_batches_tracked
        if not self.track_running_stats or self.running_mean is None or self.running_var is None or tracked is None:
            return
        tracked.add_(1)
        # momentum=None is a cumulative average, as in BatchNorm (which reads the count the same way).
        momentum = self.momentum if self.momentum is not None else 1.0 / float(tracked)  # host-sync: as BatchNorm
        unbiased = var * n / (n - 1).clamp(min=1)
        self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with its BatchNorm layers synchronised over ranks (the same parameters and buffers).

    CUDA: torch's ``nn.SyncBatchNorm``; any other device: :class:`SyncBatchNormAnyDevice`.

    Example:
        >>> net = convert_sync_batchnorm(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)), torch.device("cpu"))
        >>> type(net[1]).__name__
        'SyncBatchNormAnyDevice'
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, (nn.SyncBatchNorm, SyncBatchNormAnyDevice)):
        synced = SyncBatchNormAnyDevice(module.num_features, module.eps, module.momentum, module.affine,
                                        module.track_running_stats)
        if module.affine:
            synced.weight, synced.bias = module.weight, module.bias
        synced.running_mean, synced.running_var = module.running_mean, module.running_var
        synced.num_batches_tracked = module.num_batches_tracked
        synced.train(module.training)
        return synced
    for name, child in list(module.named_children()):
        setattr(module, name, convert_sync_batchnorm(child, device))
    return module
