"""The layers of docs/architecture.md, enforced: no import cycles, no import from a lower layer to a
higher one. Imports are read with ``ast`` (module level and inside functions alike; imports under
``if TYPE_CHECKING:`` are annotations only and not counted)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: bottom to top; a module may import its own layer and the layers below (docs/architecture.md)
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("flashsim_coffea", "flashsim_coffea.errors", "flashsim_coffea._quiet", "flashsim_coffea.noise",
              "flashsim_coffea.sampling_precision", "flashsim_coffea.cards", "flashsim_coffea.nanoaod",
              "flashsim_coffea.folds", "flashsim_coffea.hists", "flashsim_coffea.stats", "flashsim_coffea.plotting", "flashsim_coffea.samples",
              "flashsim_coffea.models")),
    ("reference", ("flashsim_coffea.reference",)),
    ("generate", ("flashsim_coffea.generate",)),
    ("objects", ("flashsim_coffea.objects",)),
    ("flows", ("flashsim_coffea.flows", "flashsim_coffea.efficiency")),
    ("inject", ("flashsim_coffea.inject", "flashsim_coffea.validation")),
    ("analysis", ("flashsim_coffea.analysis",)),
    ("processors", ("flashsim_coffea.processors",)),
    ("runner", ("flashsim_coffea.runner", "flashsim_coffea.outputs", "flashsim_coffea.simulate_file", "flashsim_coffea.closure")),
    ("demo", ("flashsim_coffea.demo",)),
    ("cli", ("flashsim_coffea.commands", "flashsim_coffea.cli", "flashsim_coffea.samples.__main__")),
]


def _modules() -> dict[str, Path]:
    """module name → file; the top-level processors/ folder is installed as flashsim_coffea.processors."""
    mods = {}
    for p in sorted([*ROOT.glob("flashsim_coffea/**/*.py"), *ROOT.glob("processors/*.py")]):
        parts = p.relative_to(ROOT).with_suffix("").parts
        if parts[0] == "processors":
            parts = ("flashsim_coffea", *parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _layer(module: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    if best is None:
        raise AssertionError(f"module {module} is in no layer of tests/test_architecture.py (add it, and to docs/architecture.md)")
    return best


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    return skip


def import_graph() -> dict[str, set[str]]:
    """module → modules of the project it imports (a submodule import counts, not its parent package)."""
    mods = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                targets = found if found else [target]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                # importing a module always imports its parent packages: not a dependency to count
                if t and t != name and not name.startswith(t + "."):
                    graph[name].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = [f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
              for a, targets in sorted(import_graph().items()) for b in sorted(targets) if _layer(b) > _layer(a)]
    assert upward == []


def test_every_module_has_a_layer():
    for name in _modules():
        _layer(name)


def test_the_checker_sees_a_cycle_and_an_upward_import():
    graph = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert _cycles(graph) == [["a", "b"]]
    assert _layer("flashsim_coffea.inject") > _layer("flashsim_coffea.objects.spec")


@pytest.mark.parametrize("doc", ["docs/architecture.md"])
def test_architecture_doc_names_every_layer(doc):
    text = (ROOT / doc).read_text()
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if prefix != "flashsim_coffea":
                assert prefix.replace("flashsim_coffea.", "") in text, f"{doc} does not mention {prefix}"
