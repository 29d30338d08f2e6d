"""The docstring examples of every kerastorch module run, and pass, with the suite.

Each module's examples run with the standard library ``doctest`` in the module's own
globals, with torch seeded, the working directory set to a fresh temporary folder and
``tempfile``'s folder pointed there too, so an example that writes files (under
``tempfile.mkdtemp()``) leaves nothing behind.
"""
import doctest
import importlib
import io
import pkgutil
import tempfile

import pytest
import torch

import kerastorch

MODULES = sorted(
    [kerastorch.__name__]
    + [info.name for info in pkgutil.walk_packages(kerastorch.__path__, prefix="kerastorch.")]
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# Modules whose examples need an optional package (an extra in pyproject.toml).
OPTIONAL = {"kerastorch.callbacks.tensorboard": "tensorboard"}


def _examples(module_name):
    """The doctests of one module that hold at least one example."""
    module = importlib.import_module(module_name)
    return [test for test in doctest.DocTestFinder().find(module) if test.examples]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_pass(module_name, tmp_path, monkeypatch):
    if module_name in OPTIONAL:
        pytest.importorskip(OPTIONAL[module_name])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    torch.manual_seed(0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    failed = attempted = 0
    for test in _examples(module_name):
        result = runner.run(test, out=report.write)
        failed, attempted = failed + result.failed, attempted + result.attempted
    assert failed == 0, f"{failed} of {attempted} example(s) failed in {module_name}:\n{report.getvalue()}"


def test_docstring_examples_exist():
    counts = {name: sum(len(test.examples) for test in _examples(name)) for name in MODULES}
    assert sum(counts.values()) > 0
    for module_name in ("kerastorch.model", "kerastorch.compiling", "kerastorch.checks"):
        assert counts[module_name] > 0, f"{module_name} has no docstring example"
