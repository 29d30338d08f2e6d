"""FocalLoss: cross-entropy that down-weights easy examples (Lin et al., 2017), binary or multiclass."""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_REDUCTIONS = ("mean", "sum", "none")


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): cross-entropy scaled down on easy examples.

    ``loss = alpha_t * (1 - p_t) ** gamma * CE``, where ``p_t`` is the
    probability the model gives to the true label. ``gamma=0`` and
    ``alpha=None`` give plain (binary) cross-entropy.

    The mode is chosen from the shapes of ``forward(y_pred, y_true)``:

    * **binary** (also multi-label): ``y_pred`` and ``y_true`` have the same
      shape; targets are 0/1 or soft labels in [0, 1]. With ``p`` the
      predicted probability and ``y`` the target,
      ``p_t = y*p + (1-y)*(1-p)``, ``alpha_t = y*alpha + (1-y)*(1-alpha)`` and
      CE is the binary cross-entropy.
    * **multiclass**: ``y_pred`` is ``(N, C, ...)`` and ``y_true`` holds
      integer class indices of shape ``(N, ...)``. ``p_t`` is the softmax
      probability of the target class. A float ``alpha`` is a uniform factor
      on every element (so the default 0.25 scales the loss by 0.25; pass
      ``alpha=None`` for none); a sequence of ``C`` floats weights each
      class (``alpha_t = alpha[target]``). Targets equal to ``ignore_index``
      contribute 0 and are left out of the mean.

    Any other shape pairing raises ``ValueError``.

    Args:
        gamma: Focusing parameter, >= 0.
        alpha: Float in [0, 1], a sequence of ``C`` non-negative per-class
            weights (multiclass only; kept as a buffer so ``.to(device)``
            moves it), or ``None`` for no weighting.
        from_logits: ``True`` if ``y_pred`` holds logits (sigmoid in binary
            mode, softmax over dim 1 in multiclass mode); ``False`` if it holds
            probabilities, which are clamped to ``[eps, 1 - eps]``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (the per-element loss,
            shaped like ``y_pred`` in binary mode and like ``y_true`` in
            multiclass mode). The multiclass mean divides by the number of
            non-ignored targets, also with per-class ``alpha`` (unlike
            ``F.cross_entropy(weight=...)``, which divides by the weight sum),
            and is 0, not nan, when every target is ignored.
        ignore_index: Multiclass target value to skip; unused in binary mode.

    The loss is computed in at least float32 (bf16/fp16 inputs, e.g. under
    autocast, are upcast), so the result is float32 or float64.

    Example:
        >>> loss_fn = FocalLoss(gamma=2.0, alpha=0.75, from_logits=False)
        >>> p, y = torch.tensor([[0.5], [0.5]]), torch.tensor([[1.0], [0.0]])
        >>> round(loss_fn(p, y).item(), 4)
        0.0866
        >>> multi = FocalLoss(alpha=[0.2, 0.3, 0.5])
        >>> multi(torch.randn(4, 3), torch.tensor([0, 2, 1, 2])).shape
        torch.Size([])
    """

    def __init__(self, gamma: float = 2.0,
                 alpha: float | Sequence[float] | torch.Tensor | None = 0.25,
                 from_logits: bool = True, reduction: str = "mean",
                 ignore_index: int = -100) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"FocalLoss reduction must be one of {_REDUCTIONS}. Received: {reduction!r}")
        if not float(gamma) >= 0:  # also rejects nan
            raise ValueError(f"FocalLoss gamma must be >= 0. Received: {gamma!r}")
        self.gamma = float(gamma)
        self.from_logits = bool(from_logits)
        self.reduction = reduction
        self.ignore_index = int(ignore_index)
        alpha = _parse_alpha(alpha)
        if isinstance(alpha, torch.Tensor):
            # A hyperparameter, not learned state: keep it out of state_dict.
            self.register_buffer("alpha", alpha, persistent=False)
        else:
            self.alpha = alpha

    def extra_repr(self) -> str:
        alpha = self.alpha.tolist() if isinstance(self.alpha, torch.Tensor) else self.alpha
        return (f"gamma={self.gamma}, alpha={alpha}, from_logits={self.from_logits}, "
                f"reduction={self.reduction!r}, ignore_index={self.ignore_index}")

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Focal loss of predictions ``y_pred`` against targets ``y_true``."""
        multiclass = _is_multiclass(y_pred, y_true)
        # bf16/fp16 lose too much in log/pow; float64 stays float64.
        dtype = torch.promote_types(y_pred.dtype, torch.float32)
        y_pred = y_pred.to(dtype)
        if multiclass:
            loss, valid = self._multiclass(y_pred, y_true)
        else:
            loss, valid = self._binary(y_pred, y_true.to(dtype)), None
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        if valid is None:
            return loss.mean()
        return loss.sum() / valid.sum().clamp_min(1)

    def _binary(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if isinstance(self.alpha, torch.Tensor):
            raise ValueError("FocalLoss: per-class alpha needs multiclass inputs "
                             "(y_pred (N, C, ...) and integer y_true (N, ...)); "
                             "use a float alpha in binary mode")
        if self.from_logits:
            # Log space keeps logits of +-1e4 finite: log(sigmoid) never hits log(0).
            log_p, log_1mp = F.logsigmoid(y_pred), F.logsigmoid(-y_pred)
            p, one_mp = torch.sigmoid(y_pred), torch.sigmoid(-y_pred)
        else:
            eps = torch.finfo(y_pred.dtype).eps  # 1 - eps is exact in this dtype
            p = y_pred.clamp(eps, 1 - eps)
            one_mp = 1 - p
            log_p, log_1mp = torch.log(p), torch.log1p(-p)
        bce = -(y * log_p + (1 - y) * log_1mp)
        # 1 - p_t written without the subtraction, so it is exact near 0.
        loss = self._modulation(y * one_mp + (1 - y) * p) * bce
        if self.alpha is not None:
            loss = (y * self.alpha + (1 - y) * (1 - self.alpha)) * loss
        return loss

    def _multiclass(self, y_pred: torch.Tensor,
                    y_true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.from_logits:
            log_p = F.log_softmax(y_pred, dim=1)
        else:
            eps = torch.finfo(y_pred.dtype).eps
            log_p = y_pred.clamp(eps, 1 - eps).log()
        valid = y_true != self.ignore_index
        # gather needs an in-range int64 index everywhere (uint8 would even index as
        # a mask); ignored slots are zeroed below.
        target = torch.where(valid, y_true, torch.zeros_like(y_true)).long()
        log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        # -expm1(log p_t) = 1 - p_t, accurate when p_t is small.
        loss = self._modulation(-torch.expm1(log_pt)) * -log_pt
        if isinstance(self.alpha, torch.Tensor):
            if self.alpha.numel() != y_pred.shape[1]:
                raise ValueError(f"FocalLoss: alpha has {self.alpha.numel()} class weights "
                                 f"but y_pred has {y_pred.shape[1]} classes (dim 1)")
            loss = self.alpha.to(loss.dtype)[target] * loss
        elif self.alpha is not None:
            loss = self.alpha * loss
        return torch.where(valid, loss, torch.zeros_like(loss)), valid

    def _modulation(self, one_minus_pt: torch.Tensor) -> torch.Tensor:
        """``(1 - p_t) ** gamma``, with finite gradients also for 0 < gamma < 1."""
        if self.gamma == 0:
            return torch.ones_like(one_minus_pt)
        # x**gamma has an infinite slope at x=0 when gamma < 1; a floor at the
        # smallest normal float changes the loss by less than float resolution.
        tiny = torch.finfo(one_minus_pt.dtype).tiny
        return one_minus_pt.clamp_min(tiny).pow(self.gamma)


def _parse_alpha(alpha: object) -> float | torch.Tensor | None:
    """Validate ``alpha``: ``None``, a float in [0, 1] or per-class weights."""
    if alpha is None:
        return None
    if isinstance(alpha, torch.Tensor) and alpha.dim() == 0:
        alpha = alpha.item()
    if isinstance(alpha, numbers.Real):
        if not 0 <= float(alpha) <= 1:
            raise ValueError(f"FocalLoss alpha must be in [0, 1]. Received: {alpha!r}")
        return float(alpha)
    try:
        weights = torch.as_tensor(alpha, dtype=torch.float32).detach().clone()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError("FocalLoss alpha must be None, a float or a sequence of "
                        f"per-class weights. Received: {type(alpha).__name__}") from None
    if weights.dim() != 1 or weights.numel() == 0:
        raise ValueError(f"FocalLoss per-class alpha must be 1-D and non-empty. Received: shape "
                         f"{tuple(weights.shape)}")
    if not bool((weights >= 0).all()):
        raise ValueError(f"FocalLoss per-class alpha must be >= 0. Received: {weights.tolist()}")
    return weights


def _is_multiclass(y_pred: torch.Tensor, y_true: torch.Tensor) -> bool:
    """``False`` for binary (same shapes), ``True`` for multiclass, else ValueError."""
    if y_pred.shape == y_true.shape:
        return False
    integer = not (y_true.dtype.is_floating_point or y_true.dtype.is_complex
                   or y_true.dtype == torch.bool)
    if (integer and y_pred.dim() == y_true.dim() + 1
            and y_pred.shape[:1] + y_pred.shape[2:] == y_true.shape):
        return True
    raise ValueError(
        f"FocalLoss got y_pred of shape {tuple(y_pred.shape)} and y_true of shape "
        f"{tuple(y_true.shape)} ({y_true.dtype}). Binary mode needs equal shapes; "
        "multiclass mode needs y_pred (N, C, ...) and integer class indices y_true (N, ...).")

