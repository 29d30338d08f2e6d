"""Losses: the name registry, kerastorch's own losses (FocalLoss) and the compiled-loss computer.

* :mod:`.registry`: names -> fresh loss modules (``get``, ``register``, ``available``);
* :mod:`.focal`: :class:`FocalLoss`;
* :mod:`.computer`: :class:`LossComputer`, what ``compile(loss=...)`` becomes (target
  checks and alignment, sample and class weights, multi-output losses);
* :mod:`.first_batch`: the first-batch checks of what a built-in loss receives;
* :mod:`.model_loss`: models that compute their own loss (Hugging Face ``ModelOutput``, a dict
  with a "loss" entry): that loss and the predictions, and the rule when a loss is also compiled.
"""
from .computer import LossComputer
from .focal import FocalLoss
from .registry import LOGIT_LOSSES, available, get, register

__all__ = ["FocalLoss", "LOGIT_LOSSES", "LossComputer", "available", "get", "register"]
