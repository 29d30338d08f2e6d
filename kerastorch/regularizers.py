"""Weight penalties (L1, L2, L1L2) added to the training loss.

Conventions (as in the project's seed tutorial)::

    L1 penalty = l1 * sum(|w|)
    L2 penalty = 0.5 * l2 * sum(w ** 2)     # note the 0.5

The 0.5 makes the L2 gradient exactly ``l2 * w``, so ``L2(l2)`` with plain SGD
takes the same step as ``SGD(weight_decay=l2)`` on the covered weights. (Keras
has no 0.5: ``keras.regularizers.L2(l2)`` equals ``L2(2 * l2)`` here.)

By default a regularizer covers *weights only*: trainable parameters except
biases (names ending in ``"bias"``) and the parameters of normalization layers
(BatchNorm*, InstanceNorm*, LayerNorm, GroupNorm, RMSNorm). Embedding tables
are weights and are covered.

A regularizer is *bound* to a model once, which resolves its parameter list;
the resulting :class:`BoundPenalty` computes the penalty with fused
``torch._foreach_norm`` kernels (one call per norm type, no Python loop over
parameters). In training, ``fit`` adds the penalty's exact gradient with
:meth:`BoundPenalty.add_gradients` (two fused kernels) rather than
differentiating the penalty: the same update for a fraction of the cost.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.parameter import is_lazy

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    _NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())

#: A glob on dotted parameter names, a module type, or a list mixing those.
Selector = str | type | Sequence[str | type] | None


class _Term(NamedTuple):
    """One regularizer's resolved parameters and coefficients."""
    names: tuple[str, ...]
    params: tuple[nn.Parameter, ...]
    l1: float
    l2: float


class Regularizer:
    """Base class of :class:`L1`, :class:`L2` and :class:`L1L2`.

    Args:
        include: Replaces the default selection (weights only). A glob matched
            with ``fnmatch`` on the dotted parameter name relative to the
            module the regularizer is bound to (e.g. ``"fc*.weight"``), a
            module type (the parameters held directly by modules of that
            type, e.g. ``nn.Linear``), or a list mixing those.
        exclude: Same forms; removes parameters from the selection.

    Frozen parameters (``requires_grad=False`` at bind time) are never covered.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        >>> penalty = L2(1e-4, exclude="2.*").bind(model)
        >>> [name for name, _ in penalty.parameters]
        ['0.weight']
    """

    l1: float = 0.0
    l2: float = 0.0

    def __init__(self, *, include: Selector = None, exclude: Selector = None) -> None:
        self.include = _parse_selector(include, "include")
        self.exclude = _parse_selector(exclude, "exclude")

    def __repr__(self) -> str:
        args = [f"{k}={getattr(self, k)!r}" for k in self._coef_names()]
        args += [f"{k}={list(getattr(self, k))!r}" for k in ("include", "exclude")
                 if getattr(self, k) is not None]
        return f"{type(self).__name__}({', '.join(args)})"

    def _coef_names(self) -> tuple[str, ...]:
        return ("l1", "l2")

    def bind(self, module: nn.Module) -> BoundPenalty:
        """Resolve the covered parameters of ``module`` once.

        Parameters are held by reference, so a later ``module.to(device)`` or
        ``.double()`` (which keep parameter identity) is followed. Bind after
        lazy modules are initialized (after one forward pass).

        Raises:
            ValueError: if nothing is selected or a selected parameter is lazy.

        Example:
            >>> penalty = L1(0.01).bind(nn.Linear(3, 2))
            >>> penalty().shape
            torch.Size([])
        """
        return BoundPenalty([self._term(module, "")])

    def _term(self, module: nn.Module, prefix: str) -> _Term:
        named = [(name, p) for name, p, owner in _owned_parameters(module)
                 if p.requires_grad and self._selects(name, owner)]
        if not named:
            trainable = [n for n, p in module.named_parameters() if p.requires_grad]
            shown = ", ".join(trainable[:20]) + (", ..." if len(trainable) > 20 else "")
            where = f" (submodule {prefix!r})" if prefix else ""
            raise ValueError(
                f"{type(self).__name__} regularizer selects no parameters of "
                f"{type(module).__name__}{where}: {self!r}; its trainable "
                f"parameters are: {shown or 'none'}")
        lazy = [name for name, p in named if is_lazy(p)]
        if lazy:
            raise ValueError(f"{type(self).__name__} regularizer: parameters {lazy} are "
                             "uninitialized (lazy modules); bind after one forward pass")
        names = tuple(f"{prefix}.{n}" if prefix else n for n, _ in named)
        return _Term(names, tuple(p for _, p in named), self.l1, self.l2)

    def _selects(self, name: str, owner: nn.Module) -> bool:
        if self.include is None:
            chosen = not name.endswith("bias") and not isinstance(owner, _NORM_TYPES)
        else:
            chosen = _matches(name, owner, self.include)
        return chosen and not (self.exclude and _matches(name, owner, self.exclude))


class L1(Regularizer):
    """L1 penalty ``l1 * sum(|w|)`` over the selected weights.

    Example:
        >>> L1(0.01)
        L1(l1=0.01)
    """

    def __init__(self, l1: float = 0.01, *, include: Selector = None,
                 exclude: Selector = None) -> None:
        super().__init__(include=include, exclude=exclude)
        self.l1 = _coefficient("l1", l1)

    def _coef_names(self) -> tuple[str, ...]:
        return ("l1",)


class L2(Regularizer):
    """L2 penalty ``0.5 * l2 * sum(w ** 2)`` over the selected weights.

    The 0.5 factor makes the gradient ``l2 * w``: with plain SGD this equals
    ``SGD(weight_decay=l2)`` restricted to the covered weights.

    Example:
        >>> L2(1e-4, exclude=nn.Embedding)
        L2(l2=0.0001, exclude=[<class 'torch.nn.modules.sparse.Embedding'>])
    """

    def __init__(self, l2: float = 0.01, *, include: Selector = None,
                 exclude: Selector = None) -> None:
        super().__init__(include=include, exclude=exclude)
        self.l2 = _coefficient("l2", l2)

    def _coef_names(self) -> tuple[str, ...]:
        return ("l2",)


class L1L2(Regularizer):
    """Sum of ``l1 * sum(|w|)`` and ``0.5 * l2 * sum(w ** 2)`` (elastic net).

    Example:
        >>> L1L2(l1=1e-5, l2=1e-4)
        L1L2(l1=1e-05, l2=0.0001)
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, *, include: Selector = None,
                 exclude: Selector = None) -> None:
        super().__init__(include=include, exclude=exclude)
        self.l1 = _coefficient("l1", l1)
        self.l2 = _coefficient("l2", l2)


class BoundPenalty:
    """Penalty of one or more regularizers bound to a model; call it each step.

    Attributes:
        parameters: ``(dotted_name, parameter)`` pairs it covers, each parameter
            once (names are relative to the model passed to :func:`bind`).

    Example:
        >>> model = nn.Linear(3, 1)
        >>> penalty = bind(L2(0.1), model)
        >>> loss = model(torch.ones(2, 3)).pow(2).mean() + penalty()
    """

    def __init__(self, terms: Sequence[_Term]) -> None:
        self._terms = tuple(terms)
        seen: set[int] = set()
        self.parameters: list[tuple[str, nn.Parameter]] = []
        for term in self._terms:
            for name, p in zip(term.names, term.params, strict=True):
                if id(p) not in seen:
                    seen.add(id(p))
                    self.parameters.append((name, p))

    def __repr__(self) -> str:
        return f"BoundPenalty({len(self._terms)} term(s), {len(self.parameters)} parameters)"

    @torch.no_grad()
    def add_gradients(self) -> None:
        """Add the penalty's exact gradient to each covered ``.grad``: ``l1 * sign(w) + l2 * w``.

        This is what ``backward()`` of :meth:`__call__` would add, in two fused
        ``_foreach`` kernels per regularizer instead of an autograd graph whose
        backward costs a dozen small kernels per parameter. ``fit`` calls it
        after ``backward`` and before clipping and the optimizer step, so
        training with a regularizer equals minimising loss + penalty.
        """
        for term in self._terms:
            params = term.params
            for p in params:
                if p.grad is None:  # the data loss did not reach this weight; the penalty still does
                    p.grad = torch.zeros_like(p)
            grads: list[torch.Tensor] = [p.grad for p in params]  # type: ignore[misc]  # none is None now
            if term.l1:
                torch._foreach_add_(grads, torch._foreach_sign(params), alpha=term.l1)
            if term.l2:
                torch._foreach_add_(grads, params, alpha=term.l2)

    def __call__(self) -> torch.Tensor:
        """The penalty: a differentiable scalar tensor on the parameters' device."""
        # Loops over regularizers (usually one), not over parameters.
        total = _term_penalty(self._terms[0])
        for term in self._terms[1:]:
            total = total + _term_penalty(term)
        return total


def bind(spec: object, module: nn.Module) -> BoundPenalty | None:
    """Bind a ``regularizers=`` specification to ``module``.

    Args:
        spec: ``None``; a :class:`Regularizer` (whole model); a dict
            ``{submodule_name: Regularizer}`` with names as in
            ``module.named_modules()`` (``""`` is the whole model); or a
            list/tuple of those, whose penalties add.
        module: The model.

    Returns:
        A :class:`BoundPenalty`, or ``None`` when ``spec`` holds no regularizer.

    Raises:
        TypeError: ``spec`` has another type.
        ValueError: unknown submodule name, or a regularizer selects nothing.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        >>> penalty = bind([L2(1e-4), {"2": L1(1e-5)}], model)
        >>> [name for name, _ in penalty.parameters]
        ['0.weight', '2.weight']
    """
    terms: list[_Term] = []
    _collect(spec, module, terms)
    return BoundPenalty(terms) if terms else None


def _collect(spec: object, module: nn.Module, terms: list[_Term]) -> None:
    if spec is None:
        return
    if isinstance(spec, Regularizer):
        terms.append(spec._term(module, ""))
    elif isinstance(spec, dict):
        modules = dict(module.named_modules())
        for name, reg in spec.items():
            if name not in modules:
                valid = ", ".join(repr(n) for n in modules)
                raise ValueError(f"regularizers: {type(module).__name__} has no submodule "
                                 f"named {name!r}; valid names: {valid}")
            if not isinstance(reg, Regularizer):
                raise TypeError(f"regularizers[{name!r}] must be a Regularizer, "
                                f"Received: {type(reg).__name__}: {reg!r:.80}")
            terms.append(reg._term(modules[name], name))
    elif isinstance(spec, (list, tuple)):
        for item in spec:
            _collect(item, module, terms)
    else:
        raise TypeError("regularizers must be None, a Regularizer, a dict "
                        "{submodule_name: Regularizer} or a list of those; "
                        f"Received: {type(spec).__name__}: {spec!r:.80}")


def _term_penalty(term: _Term) -> torch.Tensor:
    params: list[torch.Tensor] = list(term.params)
    total = params[0].new_zeros(())  # right device; stays 0 if both coefficients are 0
    if term.l1:
        total = total + term.l1 * _stacked(torch._foreach_norm(params, 1)).sum()
    if term.l2:
        total = total + 0.5 * term.l2 * _stacked(torch._foreach_norm(params, 2)).square().sum()
    return total


def _stacked(norms: tuple[torch.Tensor, ...]) -> torch.Tensor:
    stacked = torch.stack(norms)  # promotes mixed parameter dtypes
    # bf16/fp16 norms would round badly once squared and summed.
    return stacked if stacked.dtype.itemsize >= 4 else stacked.float()


def _owned_parameters(module: nn.Module) -> Iterator[tuple[str, nn.Parameter, nn.Module]]:
    """``(dotted_name, parameter, owning_module)``, each parameter once."""
    seen: set[int] = set()
    # Same traversal order as named_parameters(), so a tied parameter gets
    # the name (and owner) of its first occurrence and is counted once.
    for mod_name, mod in module.named_modules():
        for p_name, p in mod.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                yield (f"{mod_name}.{p_name}" if mod_name else p_name), p, mod


def _matches(name: str, owner: nn.Module, selectors: tuple[str | type, ...]) -> bool:
    return any(fnmatchcase(name, s) if isinstance(s, str) else isinstance(owner, s)
               for s in selectors)


def _parse_selector(value: Selector, arg: str) -> tuple[str | type, ...] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (str, type)) else value
    if not isinstance(items, (list, tuple)) or not all(
            isinstance(s, str) or (isinstance(s, type) and issubclass(s, nn.Module))
            for s in items):
        raise TypeError(f"{arg}= takes a glob string, an nn.Module subclass or a list of "
                        f"those. Received: {value!r:.80}")
    return tuple(items)


def _coefficient(name: str, value: float) -> float:
    value = float(value)
    if not (value >= 0 and math.isfinite(value)):  # `not >=` also catches nan
        raise ValueError(f"{name} must be a finite number >= 0. Received: {value!r}")
    return value
