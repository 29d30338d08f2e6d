"""The house rules that a reader of the tree relies on: no import cycles, layering, module size."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kerastorch"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Package modules each module imports, counting function-level and TYPE_CHECKING imports."""
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                targets |= {f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        resolved = set()
        for target in targets:
            while target and target not in modules:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name:
                resolved.add(target)
        edges[name] = resolved
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_the_import_graph_has_the_expected_shape():
    edges = _imports(_modules())
    assert {"kerastorch.data", "kerastorch.engine.epoch_iterator", "kerastorch.engine.step"} <= \
        edges["kerastorch.engine.fit"]
    assert "kerastorch.checkpointing.rng" in edges["kerastorch.engine.epoch_iterator"]
    assert "kerastorch.engine.logs" in edges["kerastorch.engine.session"]


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    assert _cycles(_imports(_modules())) == []


def test_nothing_imports_the_package_root():
    importers = [name for name, targets in _imports(_modules()).items() if "kerastorch" in targets]
    assert importers == []


def test_nothing_below_the_engine_imports_the_engine_or_the_model():
    upper = ("kerastorch.model", "kerastorch.engine")
    lower = ("kerastorch.callbacks", "kerastorch.data", "kerastorch.losses", "kerastorch.metrics",
             "kerastorch.checkpointing", "kerastorch.amp", "kerastorch.regularizers", "kerastorch.distributed",
             "kerastorch.checks", "kerastorch.readback", "kerastorch.compat", "kerastorch.summary")
    offenders = sorted(f"{name} -> {target}" for name, targets in _imports(_modules()).items()
                       if name.startswith(lower) for target in targets if target.startswith(upper))
    assert offenders == []


def test_the_engine_knows_only_keras_form_steps():
    """The torchkeras step form is resolved at the Model surface (compat/), never in the engine."""
    offenders = sorted(f"{name} -> {target}" for name, targets in _imports(_modules()).items()
                       if name.startswith("kerastorch.engine") for target in targets
                       if target.startswith("kerastorch.compat"))
    assert offenders == []


def test_only_the_model_and_the_engine_import_the_callbacks():
    allowed = ("kerastorch.model", "kerastorch.exploring", "kerastorch.engine", "kerastorch.callbacks")
    offenders = sorted(f"{name} -> {target}" for name, targets in _imports(_modules()).items()
                       if not name.startswith(allowed) and name != "kerastorch" for target in targets
                       if target.startswith("kerastorch.callbacks"))
    assert offenders == []


def test_no_module_over_400_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in sizes.items() if n > 400} == {}
