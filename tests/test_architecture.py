"""The package's shape: no import cycles in ``src/hypalign`` (imports inside functions included), recipe modules
that stay small. A cycle hidden by a function-level import still couples two modules both ways."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "hypalign"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in SRC.rglob("*.py"):
        parts = list(f.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """``module -> modules it imports`` (anywhere in the file). Importing ``a.b.c`` also runs the packages
    ``a.b`` and ``a``: those count too, except the importing module's own enclosing packages (a submodule
    importing its sibling through the package is how packages work, not a cycle)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
        own = {".".join(m.split(".")[:i]) for i in range(1, len(m.split(".")) + 1)}
        targets: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(t for a in node.names if (t := resolve(a.name)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    head = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(head + ([base] if base else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    t = full if full in mods else resolve(base)
                    if t:
                        targets.add(t)
        for t in targets:
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                p = ".".join(parts[:i])
                if p in mods and p not in own:
                    graph[m].add(p)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out


def test_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(g) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_package() -> None:
    graph = import_graph()
    assert "hypalign.geometry.cones" in graph  # the walk sees the whole package
    cycles = find_cycles(graph)
    detail = "; ".join(" <-> ".join(c) + " (" + ", ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) + ")"
                       for c in cycles)
    assert not cycles, f"import cycles: {detail}"


def test_recipe_modules_stay_small() -> None:
    """A recipe is its configuration plus its own parts: no recipe module over 400 lines (shared parts go to the
    core: data, eval, search, objectives, models)."""
    sizes = {str(f.relative_to(SRC)): len(f.read_text(encoding="utf-8").splitlines())
             for f in (SRC / "recipes").rglob("*.py")}
    assert "recipes/protclip/task.py" in sizes and "recipes/hierarchy/task.py" in sizes
    big = {k: v for k, v in sizes.items() if v > 400}
    assert not big, f"recipe modules over 400 lines: {big}"


def test_every_builtin_recipe_registers_itself_under_its_name() -> None:
    import importlib

    from hypalign.recipes.registry import BUILTIN, Recipe

    for name, (module, summary) in BUILTIN.items():
        recipe = importlib.import_module(module).RECIPE
        assert isinstance(recipe, Recipe) and recipe.name == name and recipe.summary == summary
