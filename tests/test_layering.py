"""Layering: no module under src/ imports a module that imports it back (directly or through a chain)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    edges.add(target if target in files else base)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        # a package's own __init__ importing its children is how packages work, not a cycle
        graph[name] = {e for e in edges if e in files and e != name and not (path.name == "__init__.py" and
                                                                              e.startswith(name + "."))}
        graph[name] = {e for e in graph[name] if not name.startswith(e + ".")}
    return graph


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


def test_no_import_cycles():
    graph = import_graph()
    assert "robustmix.mixing.modules" in graph and graph["robustmix.models.mixers"]
    assert _cycles(graph) == []


def test_core_layers_do_not_import_upper_layers():
    graph = import_graph()
    upper = ("robustmix.models", "robustmix.data", "robustmix.training", "robustmix.experiments", "robustmix.cli",
             "robustmix.reports")
    for name, edges in graph.items():
        if name.startswith(("robustmix.mixing", "robustmix.attacks", "robustmix.certify")):
            bad = [e for e in edges if e.startswith(upper)]
            assert not bad, f"{name} imports {bad}"
