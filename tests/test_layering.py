"""Layering: no import cycles, no upward import, no borrowed private names (docs/architecture.md).

Layers, top to bottom: the CLI driver / orchestrations / experiments (one module per command) / fitting and
training (what produces models) / mixing, attacks, certify, models, data / results and the small shared leaves.
A module may import its own layer or a lower one, never a higher one.
"""

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Top to bottom.  A module belongs to the layer of its longest matching entry (an entry matches itself and its
# submodules; the root package ``robustmix``, the public facade, matches only itself).
LAYERS = [
    ("robustmix", "robustmix.__main__", "robustmix.cli", "robustmix.commands"),              # the driver
    ("robustmix.experiments.demo", "robustmix.experiments.pareto", "robustmix.reports"),      # orchestrations
    ("robustmix.experiments",),                                                               # one per command
    ("robustmix.fitting", "robustmix.training"),                                              # produce models
    ("robustmix.mixing", "robustmix.attacks", "robustmix.certify", "robustmix.models", "robustmix.data",
     "robustmix.distributed", "robustmix.zoo_table"),                                         # the core
    ("robustmix.results", "robustmix._binomial", "robustmix._io", "robustmix._seeding", "robustmix._validation", "robustmix.errors",
     "robustmix._config", "robustmix.groups"),                                                                  # the bottom
]
ORCHESTRATIONS = ("robustmix.experiments.demo", "robustmix.experiments.pareto")
# The drawing and formatting leaves live in results/ so summaries draw and format themselves without importing
# reports/ (which assembles pages from summaries, above them): they import only the standard library, numpy and
# matplotlib (and each other).
PLOT_LEAVES = ("robustmix.results.plots", "robustmix.results.format")
LEAF_THIRD_PARTY = {"matplotlib", "numpy"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _lazy_nodes(tree) -> set[int]:
    """ids of the import nodes inside a function (run on call, not on import)."""
    out = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            out.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return out


def imports(name: str, path: Path, files: dict[str, Path]):
    """Every import of ``name``'s source as (target, imported name or None, lazy, line).

    ``target`` is the robustmix module a name comes from (or the submodule itself when the name is one), or
    the top-level package of a third-party / standard-library import.
    """
    tree = ast.parse(path.read_text())
    lazy = _lazy_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in files:
                    out.append((target, None, id(node) in lazy, node.lineno))
                else:
                    out.append((base, alias.name, id(node) in lazy, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, None, id(node) in lazy, node.lineno) for a in node.names]
    return out


def import_graph() -> dict[str, set[str]]:
    files = _files()
    graph = {}
    for name, path in files.items():
        edges = {target for target, _, _, _ in imports(name, path, files)}
        # a package's own __init__ importing its children is how packages work, not a cycle
        graph[name] = {e for e in edges if e in files and e != name and not (path.name == "__init__.py" and
                                                                              e.startswith(name + "."))}
        graph[name] = {e for e in graph[name] if not name.startswith(e + ".")}
    return graph


def layer_of(name: str) -> int | None:
    best, depth = None, -1
    for i, entries in enumerate(LAYERS):
        for e in entries:
            if (name == e or (e != "robustmix" and name.startswith(e + "."))) and e.count(".") > depth:
                best, depth = i, e.count(".")
    return best


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _robustmix_edges():
    """(importer, imported robustmix module, lazy, line) for every import between two robustmix modules."""
    files = _files()
    for name, path in files.items():
        for target, _, lazy, line in imports(name, path, files):
            if target in files and target != name and not (path.name == "__init__.py" and
                                                           target.startswith(name + ".")):
                yield name, target, lazy, line


def _cycles(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _package(name: str) -> str:
    """``robustmix.results.base`` -> ``robustmix.results``: the top-level package (or module) a module is part of."""
    return ".".join(name.split(".")[:2])


def test_no_import_cycles():
    graph = import_graph()
    assert "robustmix.mixing.modules" in graph and graph["robustmix.models.mixers"]
    cycles = _cycles(graph)
    assert not cycles, ("import cycles (the lower module must not import the higher one; move the shared code down "
                        f"or pass it in): {cycles}")


def test_no_import_cycles_between_packages():
    """Importing a submodule runs its package's __init__, so packages that import each other form a cycle even when
    their modules do not (results -> reports.format and reports.report -> results, before the leaves moved)."""
    graph: dict[str, set[str]] = {}
    for a, b, _, _ in _robustmix_edges():
        graph.setdefault(_package(a), set())
        graph.setdefault(_package(b), set())
        if _package(a) != _package(b):
            graph[_package(a)].add(_package(b))
    cycles = _cycles(graph)
    assert not cycles, ("packages that import each other (the lower one must not import the higher: move what it "
                        f"needs down, into the lower package or a leaf of its own): {cycles}")


def test_results_never_imports_reports():
    """results sits below reports: summaries render themselves, reports only assembles their sections into pages."""
    bad = [f"{a} imports {b}, line {line}" for a, b, _, line in _robustmix_edges()
           if _within(a, "robustmix.results") and _within(b, "robustmix.reports")]
    assert not bad, ("results must not import reports: what a summary's render() needs goes into robustmix/results/ "
                     "(numbers: results/format.py, figures: results/plots.py); reports/ may import it from there:\n"
                     + "\n".join(sorted(set(bad))))


def test_core_layers_do_not_import_upper_layers():
    graph = import_graph()
    upper = ("robustmix.models", "robustmix.data", "robustmix.fitting", "robustmix.training", "robustmix.experiments",
             "robustmix.cli", "robustmix.commands", "robustmix.reports")
    for name, edges in graph.items():
        if name.startswith(("robustmix.mixing", "robustmix.attacks", "robustmix.certify")):
            bad = [e for e in edges if e.startswith(upper)]
            assert not bad, f"{name} imports {bad}"


def test_every_module_has_a_layer():
    missing = sorted(name for name in _files() if layer_of(name) is None)
    assert not missing, f"place these modules in tests/test_layering.py's LAYERS: {missing}"


def test_no_upward_imports():
    bad = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)}), line {line}"
           for a, b, _, line in _robustmix_edges() if layer_of(b) < layer_of(a)]
    assert not bad, "\n".join(sorted(set(bad)))


def test_experiments_and_training_do_not_import_each_other():
    bad = [f"{a} imports {b}, line {line}" for a, b, _, line in _robustmix_edges()
           if (_within(a, "robustmix.experiments") and _within(b, "robustmix.training"))
           or (_within(a, "robustmix.training") and _within(b, "robustmix.experiments"))]
    assert not bad, "\n".join(sorted(set(bad)))


def test_fitting_imports_nothing_above_it():
    above = ("robustmix.experiments", "robustmix.training", "robustmix.cli", "robustmix.commands", "robustmix.reports")
    bad = [f"{a} imports {b}, line {line}" for a, b, _, line in _robustmix_edges()
           if _within(a, "robustmix.fitting") and (_within(b, *above) or b == "robustmix")
           and not _within(b, *PLOT_LEAVES)]
    assert not bad, "\n".join(sorted(set(bad)))


def test_only_orchestrations_import_orchestrations():
    bad = [f"{a} imports {b}, line {line}" for a, b, _, line in _robustmix_edges()
           if _within(a, "robustmix.experiments") and not _within(a, *ORCHESTRATIONS) and _within(b, *ORCHESTRATIONS)]
    assert not bad, "\n".join(sorted(set(bad)))


def test_plot_leaves_import_only_stdlib_numpy_matplotlib():
    files = _files()
    for name in PLOT_LEAVES:
        if name not in files:
            continue
        for target, _, _, line in imports(name, files[name], files):
            top = target.partition(".")[0]
            ok = (target in PLOT_LEAVES or top in LEAF_THIRD_PARTY or top == "__future__"
                  or (top in sys.stdlib_module_names and top != "robustmix"))
            assert ok, f"{name} imports {target} (line {line}); a plot leaf imports only the standard library, " \
                       f"numpy, matplotlib and the other leaves {PLOT_LEAVES}"


def test_results_draws_plots_lazily():
    # the bottom layer may use the plot leaf, but only results, and only inside the functions that draw
    bad = []
    for a, b, lazy, line in _robustmix_edges():
        if b == "robustmix.results.plots" and layer_of(a) == len(LAYERS) - 1 and a not in PLOT_LEAVES:
            if not _within(a, "robustmix.results") or not lazy:
                bad.append(f"{a} imports {b} (line {line}){'' if lazy else ' at module level'}")
    assert not bad, "\n".join(sorted(set(bad)))


def _private(attr: str) -> bool:
    return attr.startswith("_") and not attr.endswith("__")


def test_no_module_imports_another_modules_private_names():
    files = _files()
    bad = []
    for name, path in files.items():
        for target, imported, _, line in imports(name, path, files):
            if target.startswith("robustmix") and imported is not None and _private(imported):
                bad.append(f"{name} imports {imported} from {target} (line {line})")
        # `module._private` on a name bound to a robustmix module (import robustmix.x as m; from . import x)
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        modules = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update({a.asname or a.name.partition(".")[0]: a.name if a.asname else "robustmix"
                                for a in node.names if a.name.startswith("robustmix")})
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    base = ".".join(anchor[:len(anchor) - node.level + 1] + ([base] if base else []))
                modules.update({a.asname or a.name: f"{base}.{a.name}" for a in node.names
                                if base.startswith("robustmix") and f"{base}.{a.name}" in files})
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                    and _private(node.attr) and f"{modules[node.value.id]}.{node.attr}" not in files
                    and modules[node.value.id] != name):
                bad.append(f"{name} uses {node.value.id}.{node.attr} (line {node.lineno})")
    assert not bad, "make the helper public (and documented) or move it to its owner:\n" + "\n".join(sorted(set(bad)))
