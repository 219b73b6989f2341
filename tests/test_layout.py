"""The layout rules docs/architecture.md states, checked on the source: no import cycle between
minigpt's modules, and no module using another module's private (`_name`) names.

Every module under minigpt/ is parsed with `ast` (nothing is imported or run). What counts:

- every import, at module level or inside a function: an import deferred into a function is
  still a dependency a reader has to follow, and a cycle through one is still a cycle in the
  reader's head (and an ImportError waiting for the day someone moves the import up);
- `from X import name` depends on the module X.name when there is one, else on X;
  `import X.Y` on X.Y. An import of minigpt.a.b is an edge to minigpt.a.b only: Python also
  runs the packages' __init__ files on the way, but a package's __init__ gathering its own
  modules is how a package is built, not a cycle anyone follows;
- a private name is `_x` (not `__x__`), imported with `from X import _x` or read as
  `module._x` through a module bound by an import, from another module of minigpt.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import minigpt

ROOT = Path(minigpt.__file__).resolve().parent


def module_files(root: Path, package: str) -> dict:
    """{dotted module name: path} of every .py file under `root` (the package `package`)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _target(name: str, modules: dict) -> str | None:
    """`name` or its nearest enclosing module that is one of ours (None: not ours)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports(root: Path, package: str) -> tuple[dict, list]:
    """(edges, private uses) of the package: edges {module: {imported module: line}}, and
    private uses as (module, line, 'what') for each private name used across modules."""
    modules = module_files(root, package)
    edges, private = {}, []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]  # its package
        deps = edges.setdefault(name, {})
        bound = {}  # local name -> one of our modules, for `module._x`
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _target(alias.name, modules)
                    if target is not None:
                        deps.setdefault(target, node.lineno)
                        if alias.asname:
                            bound[alias.asname] = target
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if _target(source, modules) is None:
                    continue  # not ours (numpy, the standard library ...)
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:  # a module: `from . import autograd`
                        deps.setdefault(sub, node.lineno)
                        bound[alias.asname or alias.name] = sub
                        continue
                    target = _target(source, modules)
                    deps.setdefault(target, node.lineno)
                    if _is_private(alias.name) and target != name:
                        private.append((name, node.lineno, f"from {source} import {alias.name}"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and _is_private(node.attr)
                    and bound[node.value.id] != name):
                private.append((name, node.lineno, f"{node.value.id}.{node.attr} "
                                f"({bound[node.value.id]})"))
        deps.pop(name, None)  # a module importing itself (`from . import x` in x's package)
    return edges, private


def cycles(edges: dict) -> list:
    """The import cycles: each strongly connected group of two or more modules, as a path
    through it (a -> b -> ... -> a), found with Tarjan's algorithm."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_path_through(sorted(g)[0], set(g), edges) for g in groups]


def _path_through(start: str, group: set, edges: dict) -> str:
    """One cycle from `start` inside `group`, with the line of each import: a breadth-first
    search for the shortest way back to start."""
    previous = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w, line in sorted(edges[v].items()):
            if w not in group:
                continue
            if w == start:
                hops = [(v, line)]
                while previous[v] is not None:
                    v, step_line = previous[v]
                    hops.append((v, step_line))
                hops.reverse()
                return " -> ".join(f"{m} (line {n})" for m, n in hops) + f" -> {start}"
            if w not in previous:
                previous[w] = (v, line)
                queue.append(w)
    return " <-> ".join(sorted(group))


def test_no_import_cycle_between_minigpt_modules():
    edges, _ = imports(ROOT, "minigpt")
    found = cycles(edges)
    assert not found, "import cycles (module (line of its import) -> the module it imports):\n" \
        + "\n".join(found)


def test_no_private_name_used_across_modules():
    _, private = imports(ROOT, "minigpt")
    assert not private, "private names used from another module:\n" + "\n".join(
        f"{m}:{line}: {what}" for m, line, what in private)


def test_every_module_is_seen():
    modules = module_files(ROOT, "minigpt")
    assert {"minigpt", "minigpt.autograd", "minigpt.cli", "minigpt.cli.pretrain",
            "minigpt.training.pretrain"} <= set(modules)


def _package(tmp_path: Path, files: dict) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize("files", [
    {"__init__.py": "", "a.py": "from . import b\n", "b.py": "from .a import f\n"},
    # through a function-level import, and across sub-packages
    {"__init__.py": "", "x/__init__.py": "", "x/a.py": "from ..y.b import g\n",
     "y/__init__.py": "", "y/b.py": "def g():\n    from ..x import a\n"},
    # three modules, absolute imports
    {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "from pkg import c\n",
     "c.py": "from pkg.a import thing\n"},
])
def test_a_planted_cycle_is_found(tmp_path, files):
    edges, _ = imports(_package(tmp_path, files), "pkg")
    found = cycles(edges)
    assert len(found) == 1 and found[0].count("->") >= 2, found


def test_no_cycle_is_reported_where_there_is_none(tmp_path):
    files = {"__init__.py": "from .a import f\nfrom .b import g\n", "a.py": "def f(): pass\n",
             "b.py": "from .a import f\nfrom . import a\nimport numpy\n",
             "sub/__init__.py": "from .c import h\n", "sub/c.py": "from ..b import g\n"}
    edges, private = imports(_package(tmp_path, files), "pkg")
    assert cycles(edges) == [] and private == []


def test_a_planted_private_import_is_found(tmp_path):
    files = {"__init__.py": "", "a.py": "_hidden = 1\n__version__ = 2\n",
             "b.py": "from .a import _hidden, __version__\n",
             "c.py": "from . import a\nprint(a._hidden, a.__doc__)\n",
             "d.py": "def _mine():\n    pass\n_mine()\n"}
    _, private = imports(_package(tmp_path, files), "pkg")
    assert sorted((m, what) for m, _, what in private) == [
        ("pkg.b", "from pkg.a import _hidden"), ("pkg.c", "a._hidden (pkg.a)")]
