"""docs/architecture.md's "Callback hook order" section matches what the engine calls.

The section holds three ```text blocks, in order: a ``fit`` with validation data
(2 epochs, 2 training batches and 1 validation batch per epoch), an ``evaluate``
on 2 batches and a ``predict`` on 2 batches, one hook name per line. These tests
run the same calls with a callback that records every hook and compare the
recorded sequences with the documented ones exactly. When they differ, the
document is what gets corrected.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback
from kerastorch.callbacks.base import HOOKS

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
SECTION = "## Callback hook order"
BLOCK = re.compile(r"^```text[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def documented_blocks() -> list[list[str]]:
    """The hook names of each ```text block under SECTION (up to the next ``## `` heading)."""
    text = DOC.read_text(encoding="utf-8")
    start = text.find(f"\n{SECTION}\n")
    assert start != -1, f"{DOC} has no '{SECTION}' heading"
    body = text[start + len(SECTION) + 2:]
    next_heading = re.search(r"^## ", body, re.MULTILINE)
    if next_heading is not None:
        body = body[:next_heading.start()]
    return [[line.strip() for line in block.splitlines() if line.strip()] for block in BLOCK.findall(body)]


def _recording(name: str):
    def hook(self, *args, **kwargs):
        self.calls.append(name)

    hook.__name__ = hook.__qualname__ = name
    return hook


class Recorder(Callback):
    """Records the name of every hook as the engine calls it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []


# Defined on the class itself: the engine only calls the hooks a callback's class overrides.
for _name in HOOKS:
    setattr(Recorder, _name, _recording(_name))


@pytest.fixture
def compiled():
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(2, 1))
    model.compile("sgd", "mse", device="cpu")
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    return model, x, y


def test_documented_hook_order_matches_the_engine(compiled):
    model, x, y = compiled
    blocks = documented_blocks()
    assert len(blocks) == 3, f"expected 3 ```text blocks (fit, evaluate, predict), found {len(blocks)}"
    fit_doc, evaluate_doc, predict_doc = blocks

    on_fit, on_evaluate, on_predict = Recorder(), Recorder(), Recorder()
    model.fit(x, y, batch_size=4, epochs=2, validation_data=(x[:4], y[:4]), callbacks=[on_fit], verbose=0)
    model.evaluate(x, y, batch_size=4, callbacks=[on_evaluate])
    model.predict(x, batch_size=4, callbacks=[on_predict])

    assert on_fit.calls == fit_doc
    assert on_evaluate.calls == evaluate_doc
    assert on_predict.calls == predict_doc


def test_documented_names_are_hooks():
    blocks = documented_blocks()
    assert blocks and all(blocks), "the hook-order blocks are missing or empty"
    unknown = sorted({name for block in blocks for name in block} - set(HOOKS))
    assert not unknown, f"names in {DOC.name} that are not in kerastorch.callbacks.base.HOOKS: {unknown}"
