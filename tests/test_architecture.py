"""The layers of docs/architecture.md, enforced: every module of the package sits in exactly one
layer of the doc's table, no import cycles, no import from a lower layer to a higher one. The
layers are read from the doc itself (its table is the one source); imports are read with ``ast``
(module level and inside functions alike; imports under ``if TYPE_CHECKING:`` are annotations only
and not counted)."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "flashsim_coffea"
DOC = "docs/architecture.md"


def parse_layers(markdown: str) -> list[tuple[str, tuple[str, ...]]]:
    """The layer table of a markdown text, bottom to top: [(layer, (module, ...)), ...].

    The table is the one whose header has the columns ``layer`` and ``modules``; a row's layer is
    its bold (or plain) name, its modules every backticked entry of the modules cell, named as in
    the package: ``cli`` → ``flashsim_coffea.cli``, ``nanoaod/`` (a package) →
    ``flashsim_coffea.nanoaod``, ``samples.__main__`` → ``flashsim_coffea.samples.__main__``,
    ``flashsim_coffea.processors`` as is. A parenthesised list after an entry details its
    submodules (``nanoaod/`` (``conventions``, ``io``)) and places nothing by itself.
    """
    layers: list[tuple[str, tuple[str, ...]]] = []
    columns: list[str] | None = None
    for line in markdown.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            if columns is not None and layers:
                break  # the end of the layer table
            columns = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if columns is None:
            header = [c.strip("* ").lower() for c in cells]
            if "layer" in header and "modules" in header:
                columns = header
            continue
        if all(set(c) <= set(":- ") for c in cells):
            continue  # the separator row
        row = dict(zip(columns, cells))
        name = row["layer"].strip("* ")
        cell = row["modules"]
        while True:  # drop parenthesised details, innermost first
            stripped = re.sub(r"\([^()]*\)", "", cell)
            if stripped == cell:
                break
            cell = stripped
        modules = []
        for entry in re.findall(r"`([^`]+)`", cell):
            entry = entry.strip().rstrip("/").replace("/", ".")
            if entry.endswith(".py"):
                entry = entry[: -len(".py")]
            module = entry if entry == PACKAGE or entry.startswith(PACKAGE + ".") else f"{PACKAGE}.{entry}"
            if module not in modules:
                modules.append(module)
        layers.append((name, tuple(modules)))
    return layers


#: bottom to top; a module may import its own layer and the layers below (docs/architecture.md)
LAYERS = parse_layers((ROOT / DOC).read_text())


def _modules() -> dict[str, Path]:
    """module name → file; the top-level processors/ folder is installed as flashsim_coffea.processors."""
    mods = {}
    for p in sorted([*ROOT.glob(f"{PACKAGE}/**/*.py"), *ROOT.glob("processors/**/*.py")]):
        parts = p.relative_to(ROOT).with_suffix("").parts
        if parts[0] == "processors":
            parts = (PACKAGE, *parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _placements(module: str, layers=None) -> list[tuple[int, str]]:
    """The (layer index, entry) of the most specific entries of the doc containing ``module``."""
    layers = LAYERS if layers is None else layers
    found = [(i, entry) for i, (_, entries) in enumerate(layers) for entry in entries
             if module == entry or module.startswith(entry + ".")]
    if not found:
        return []
    longest = max(len(entry) for _, entry in found)
    return sorted({(i, entry) for i, entry in found if len(entry) == longest})


def _layer(module: str, layers=None) -> int:
    """The layer of ``module``: that of the doc's most specific entry containing it (``samples``
    is base, ``samples.__main__`` cli). The package's own ``__init__`` (lazy entry points only,
    no project import) is the bottom layer."""
    layers = LAYERS if layers is None else layers
    if module == PACKAGE:
        return 0
    places = _placements(module, layers)
    if not places:
        raise AssertionError(f"module {module} is in no layer of {DOC}: add it to the layer table there")
    if len({i for i, _ in places}) > 1:
        where = ", ".join(f"{layers[i][0]} (`{entry}`)" for i, entry in places)
        raise AssertionError(f"module {module} is in more than one layer of {DOC}: {where}")
    return places[0][0]


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
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_module_is_in_exactly_one_layer_of_the_doc():
    problems = []
    for name in _modules():
        try:
            _layer(name)
        except AssertionError as e:
            problems.append(str(e))
    assert not problems, "\n".join(problems)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    graph = import_graph()
    placed = {m for m in {*graph, *(b for t in graph.values() for b in t)} if m == PACKAGE or _placements(m)}
    upward = [f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
              for a, targets in sorted(graph.items()) if a in placed
              for b in sorted(targets) if b in placed and _layer(b) > _layer(a)]
    assert not upward, "upward imports (docs/architecture.md):\n" + "\n".join(upward)


def test_every_entry_of_the_doc_is_a_module():
    mods = _modules()
    stale = [f"{layer}: `{entry}`" for layer, entries in LAYERS for entry in entries
             if not any(m == entry or m.startswith(entry + ".") for m in mods)]
    assert stale == [], f"{DOC} places modules that do not exist: {stale}"


def test_the_doc_has_the_layer_table():
    names = [name for name, _ in LAYERS]
    assert len(names) == len(set(names)) >= 5, f"{DOC}: no layer table found, or a layer twice: {names}"
    assert all(entries for _, entries in LAYERS), f"{DOC}: a layer without modules: {LAYERS}"


def test_the_parser_reads_a_small_table():
    text = """# Layers

Some prose with `not_a_module` and a | pipe.

| layer | modules | one job each |
|---|---|---|
| **base** | `errors`, `nanoaod/` (`conventions`, `io`), `samples` | facts: `UserError`, `respond(gen)` |
| **runner** | `runner/`, `outputs` | running (`run_processor`) |
| **processors** | `processors/`, installed as `flashsim_coffea.processors` | processors |
| **cli** | `commands/`, `cli`, `samples.__main__` | the console script |

| other | table |
|---|---|
| `x` | `y` |
"""
    layers = parse_layers(text)
    assert layers == [
        ("base", ("flashsim_coffea.errors", "flashsim_coffea.nanoaod", "flashsim_coffea.samples")),
        ("runner", ("flashsim_coffea.runner", "flashsim_coffea.outputs")),
        ("processors", ("flashsim_coffea.processors",)),
        ("cli", ("flashsim_coffea.commands", "flashsim_coffea.cli", "flashsim_coffea.samples.__main__")),
    ]
    assert _layer("flashsim_coffea.nanoaod.io", layers) == 0
    assert _layer("flashsim_coffea.runner.executors", layers) == 1  # a module of the runner/ package
    assert _layer("flashsim_coffea.runner", layers) == 1  # runner.py or runner/__init__.py alike
    assert _layer("flashsim_coffea.processors.zmumu_jets", layers) == 2
    assert _layer("flashsim_coffea.samples", layers) == 0
    assert _layer("flashsim_coffea.samples.__main__", layers) == 3  # the most specific entry wins
    assert _layer("flashsim_coffea", layers) == 0
    with pytest.raises(AssertionError, match=r"flashsim_coffea\.safe_write is in no layer of docs/architecture\.md"):
        _layer("flashsim_coffea.safe_write", layers)
    with pytest.raises(AssertionError, match="more than one layer"):
        _layer("flashsim_coffea.cli", [*layers, ("top", ("flashsim_coffea.cli",))])
    assert parse_layers("no table here\n") == []


def test_the_checker_sees_a_cycle_and_an_upward_import():
    graph = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert _cycles(graph) == [["a", "b"]]
    assert _layer("flashsim_coffea.inject") > _layer("flashsim_coffea.objects.spec")
