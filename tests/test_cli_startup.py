"""Startup: `mdhub --help`, `list` and `show` never import torch (or the envs, plotting, the Hub client), `import hub`
imports its public names on first use only, and the project's modules import each other without a cycle.

The CLI runs in a fresh interpreter (a subprocess): in this one, the other tests have long imported torch.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

import hub
from tests.conftest import critic_card, small_critic

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cards", "hub", "modules")
# what a store command has no use for: each costs a large part of a second to import
HEAVY = ("torch", "pybullet", "gymnasium", "matplotlib", "huggingface_hub")

RUN_CLI = """
import json, sys
argv, report = sys.argv[1:-1], sys.argv[-1]
sys.argv = ["mdhub", *argv]
from hub.cli import main
code = 0
try:
    main()
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
with open(report, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def run_fresh(code: str, *args: str, home: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `code` in a new interpreter (repository root first on the path, MDHUB_HOME=home); it writes a JSON
    report to the path given as its last argument."""
    report = tmp_path / "report.json"
    env = {**os.environ, "MDHUB_HOME": str(home), "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run([sys.executable, "-c", code, *args, str(report)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert report.exists(), f"no report; stderr:\n{proc.stderr}"
    return proc, json.loads(report.read_text())


def heavy_imports(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.fixture
def stored(hub_home):
    net = small_critic()
    hub.save(net, critic_card(net, "startup-critic"))
    return "startup-critic"


@pytest.mark.parametrize("args, expect", [
    (["--help"], "Usage: mdhub"),
    (["list"], "startup-critic"),
    (["list", "--json"], "startup-critic"),
    (["show", "startup-critic"], "expectile"),
    (["show", "startup-critic", "--json"], '"startup-critic"'),
    (["show", "no-such-module"], None),
])
def test_store_commands_start_without_torch(stored, hub_home, tmp_path, args, expect):
    proc, report = run_fresh(RUN_CLI, *args, home=hub_home, tmp_path=tmp_path)
    if expect is None:  # an error is one line, exit code 1, and still no torch
        assert report["code"] == 1 and "error: no module 'no-such-module'" in proc.stderr, proc.stderr
    else:
        assert report["code"] == 0, proc.stderr
        assert expect in proc.stdout, proc.stdout
    heavy = heavy_imports(report["modules"])
    assert heavy == [], f"mdhub {' '.join(args)} imported {heavy[:8]}"


def test_import_hub_is_lazy_and_complete(tmp_path, hub_home):
    code = """
import json, sys
import hub
report = {"after_import": sorted(sys.modules), "missing_in_dir": sorted(set(hub.__all__) - set(dir(hub)))}
from hub.combine import TrainSpec          # binds the submodule hub.combine on the package ...
import hub.registry                        # ... and hub.registry
report["combine_is_function"] = callable(hub.combine) and hub.combine.__module__ == "hub.combine"
report["registry_is_function"] = callable(hub.registry) and not isinstance(hub.registry, type(sys))
from hub import combine, evaluate, push, Store, MdhubError, NotCachedError
report["from_import"] = combine is hub.combine and hub.TrainSpec is TrainSpec
report["all_resolve"] = all(getattr(hub, n) is not None for n in hub.__all__)
try:
    hub.no_such_name
except AttributeError:
    report["unknown_is_attribute_error"] = True
json.dump(report, open(sys.argv[-1], "w"))
"""
    proc, report = run_fresh(code, home=hub_home, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert heavy_imports(report["after_import"]) == []
    assert not [m for m in report["after_import"] if m.startswith(("hub.", "cards", "modules"))]
    assert report["missing_in_dir"] == []
    assert report["combine_is_function"] and report["registry_is_function"] and report["from_import"]
    assert report["all_resolve"] and report["unknown_is_attribute_error"]


def test_cli_modules_do_not_import_the_cli_package():
    """One registration pattern: hub/cli/__init__.py builds the app and calls each command module's register(app);
    a command module never reaches back for the app (hub.cli itself)."""
    graph, _ = import_graph()
    for name, deps in graph.items():
        if name.startswith("hub.cli."):
            assert "hub.cli" not in deps, f"{name} imports hub.cli (the package __init__)"
    import hub.cli as cli
    for name in ("data", "demo", "share", "store", "train"):
        assert callable(getattr(cli, name).register), name


def test_the_error_policy_catches_the_modules_errors_by_their_torch_free_base():
    from hub.cli.errors import USER_ERRORS
    from modules.data.errors import DatasetError, MissingDependencyError
    from modules.envs import UnknownEnvError
    from modules.train.checkpoint import CheckpointError, CheckpointMismatch

    for cls in (DatasetError, MissingDependencyError, UnknownEnvError, CheckpointError, CheckpointMismatch):
        assert issubclass(cls, USER_ERRORS) and issubclass(cls, ValueError), cls


# --- the import graph of cards/, hub/, modules/ ---------------------------------------------------------------------

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import statement, at any depth (functions, classes, try blocks), but not under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], int]]:
    """module -> the project modules it imports, and (module, dependency) -> the line of the first such import.

    `import a.b` depends on a.b; `from a import x` on a and on a.x where that is a module; relative imports are
    resolved against the importing module's package. Importing a.b also runs the package a (its __init__): a module
    outside a depends on a as well (one inside a runs after a has started, so that is no dependency)."""
    files = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}
    known = set(files)
    graph: dict[str, set[str]] = {m: set() for m in known}
    lines: dict[tuple[str, str], int] = {}

    def add(src: str, dst: str, line: int) -> None:
        if dst not in known:
            return
        parts = dst.split(".")
        for dep in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if dep == dst or not (src == dep or src.startswith(dep + ".")):  # the module and its parents outside src's
                if dep != src:
                    graph[src].add(dep)
                    lines.setdefault((src, dep), line)

    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(mod, alias.name, node.lineno)
                continue
            if node.level:
                package = mod.split(".") if is_pkg else mod.split(".")[:-1]
                up = node.level - 1
                assert up < len(package), f"{path}:{node.lineno}: relative import beyond the top-level package"
                base_parts = package[: len(package) - up] + (node.module.split(".") if node.module else [])
                base = ".".join(base_parts)
            else:
                base = node.module or ""
            add(mod, base, node.lineno)
            for alias in node.names:
                if alias.name != "*":
                    add(mod, f"{base}.{alias.name}", node.lineno)
    return graph, lines


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def shortest_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first, inside the component)."""
    start, inside = comp[0], set(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & inside):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def test_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}, "g": set()}
    assert strongly_connected(graph) == [["a", "b", "c"], ["e", "f"]]
    assert shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_import_graph_resolves_relative_and_from_imports():
    graph, _ = import_graph()
    assert "modules.errors" in graph["modules.data.errors"]  # from ..errors import ModulesError
    assert "modules.errors" in graph["modules.envs"]  # from .errors import ModulesError
    assert {"hub.cli.store", "hub.cli.train", "hub.cli.data"} <= graph["hub.cli"]  # from hub.cli import store, ...
    assert "hub.api" in graph["hub.cli.store"]  # `from hub import api` inside a function
    assert "modules.data" in graph["hub.datasets"]  # from modules.data.dataset import ... runs modules/data/__init__
    assert "modules" not in graph["modules.envs"]  # its own package: already running


def test_no_import_cycles():
    """No cycle among the modules of cards/, hub/ and modules/, counting every import (top level and inside
    functions): a cycle works only as long as the imports stay in the order they happen to be in."""
    graph, lines = import_graph()
    comps = strongly_connected(graph)
    report = []
    for comp in comps:
        cycle = shortest_cycle(graph, comp)
        steps = ", ".join(f"{a} -> {b} (line {lines[a, b]})" for a, b in pairwise(cycle))
        report.append(f"{{{', '.join(comp)}}}: {steps}")
    assert not comps, f"{len(comps)} import cycle(s):\n" + "\n".join(report)
