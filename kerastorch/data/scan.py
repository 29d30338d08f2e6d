"""One look at in-memory training data before any step: non-finite values and negative sample weights.

A NaN in ``x`` or ``y`` makes every batch holding it produce a NaN loss, and a negative sample weight
turns its sample's descent into ascent: both are almost always bugs, and both are cheap to see once
per call on in-memory data (one pass over the tensors on their device, one read of a few counts).
Data from a DataLoader or a generator is not scanned (that would mean reading it twice).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .batcher import TensorBatcher
from .trees import tree_leaves

_NAMES = ("x", "y", "sample_weight")
_ADVICE = {
    "nonfinite": "A batch that holds one gets a non-finite loss (training stops there) or a NaN metric. Clean the "
                 "data first: e.g. x = torch.nan_to_num(x), or drop those rows (df.dropna()).",
    "negative": "A negative weight makes the optimizer climb that sample's loss (gradient ascent), which is almost "
                "always a bug. Pass weights >= 0, e.g. sample_weight.clamp(min=0).",
}


@dataclass(frozen=True)
class Finding:
    """What the scan found in one argument: ``count`` samples, the first at index ``first``."""

    name: str
    kind: str  # "nonfinite" or "negative"
    count: int
    first: int
    samples: torch.Tensor  # the indices of those samples (CPU)

    def describe(self) -> str:
        what = "non-finite values (NaN or inf)" if self.kind == "nonfinite" else "negative values"
        plural = "sample" if self.count == 1 else "samples"
        return f"`{self.name}` holds {what} in {self.count} {plural} (the first: sample {self.first})"

    def warning(self) -> str:
        """The warning a call gives before its first step."""
        return f"{self.describe()}. {_ADVICE[self.kind]}"


def scan(source: object, names: tuple[str, ...] = _NAMES) -> list[Finding]:
    """Non-finite values in ``x`` / ``y`` / ``sample_weight`` and negative weights of an in-memory source.

    Example:
        >>> x = torch.tensor([[0.0], [float("nan")], [2.0]])
        >>> [f.describe() for f in scan(TensorBatcher((x, torch.zeros(3, 1)), batch_size=2, shuffle=False))]
        ['`x` holds non-finite values (NaN or inf) in 1 sample (the first: sample 1)']
    """
    if not isinstance(source, TensorBatcher):
        return []
    suspects: list[tuple[str, str, list[torch.Tensor]]] = []
    quick: list[torch.Tensor] = []  # per suspect: True when the cheap look says it may hold what it looks for
    for name, part in zip(names, source.arrays, strict=False):
        floating = [t for t in tree_leaves(part) if t.is_floating_point() and t.dim() > 0 and t.numel() > 0]
        if floating:
            # A sum is finite only if every value is: ~25x cheaper than isfinite's full mask (an overflow to
            # inf only sends the tensor to the exact look below).
            quick.append(~torch.stack([t.sum().float() for t in floating]).isfinite().all())
            suspects.append((name, "nonfinite", floating))
        if name == names[-1] and len(source.arrays) == 3 and floating:
            quick.append(floating[0].min() < 0)
            suspects.append((name, "negative", floating))
    if not quick:
        return []
    flagged = torch.stack(quick).tolist()  # host-sync: once per call
    masks = [(name, kind, _per_sample(kind, leaves))
             for (name, kind, leaves), suspect in zip(suspects, flagged, strict=True) if suspect]
    if not masks:
        return []
    counts = torch.stack([mask.sum() for _, _, mask in masks]).tolist()  # host-sync: only when something is found
    findings = []
    for (name, kind, mask), count in zip(masks, counts, strict=True):
        if count:
            samples = mask.nonzero().flatten().cpu()
            findings.append(Finding(name, kind, int(count), int(samples[0]), samples))
    return findings


def _per_sample(kind: str, leaves: list[torch.Tensor]) -> torch.Tensor:
    """Which samples hold a non-finite value (in any leaf), or a negative weight (the first leaf)."""
    if kind == "negative":
        return leaves[0].reshape(leaves[0].shape[0], -1).lt(0).any(1)
    return torch.stack([~torch.isfinite(t).reshape(t.shape[0], -1).all(1) for t in leaves]).any(0)


def batch_holding(source: TensorBatcher, index: int, generator_state: torch.Tensor | None,
                  samples: torch.Tensor) -> bool:
    """Whether batch ``index`` of the epoch that started at ``generator_state`` holds one of ``samples``.

    Redraws that epoch's order as :meth:`TensorBatcher.__iter__` drew it (a plain TensorBatcher only).

    Example:
        >>> b = TensorBatcher((torch.zeros(6, 1),), batch_size=2, shuffle=False)
        >>> batch_holding(b, 1, None, torch.tensor([3])), batch_holding(b, 0, None, torch.tensor([3]))
        (True, False)
    """
    if source.shuffle:
        if generator_state is None:
            return False
        generator = torch.Generator()
        generator.set_state(generator_state)
        order = torch.randperm(source.total_samples, generator=generator)
    else:
        order = torch.arange(source.total_samples)
    order = order[source.rank::source.world]
    batch = order[index * source.batch_size:(index + 1) * source.batch_size]
    return bool(torch.isin(batch, samples).any())
