"""No import cycles in sdar/, between modules or between sub-packages (sdar.envs <-> sdar.rollout counts).

Every `import` / `from ... import` of the package's own modules counts, at any depth of a file (an import
inside a function still ties the two modules together), except those under `if TYPE_CHECKING:`. Relative
imports are resolved against the importing module. A sub-package is the first two parts of a module's name
(sdar.envs.alfworld.env -> sdar.envs; sdar.config -> sdar.config); the package graph leaves out imports of
the root package itself (`sdar/__init__.py`, the public facade above every layer).
"""

from __future__ import annotations

import ast
import textwrap
from collections import deque
from pathlib import Path

SDAR = Path(__file__).resolve().parents[1] / "sdar"

Graph = dict[str, dict[str, int]]  # module -> {imported module: line of the first such import}


def module_name(path: Path, root: Path) -> str:
    """root/envs/base.py -> "sdar.envs.base"; root/envs/__init__.py -> "sdar.envs" (root = the package)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, name: str, is_package: bool, top: str) -> dict[str, int]:
    """Dotted names of `top` that a module's source imports, with the line of each; `from m import x` yields
    both m and m.x (x may be a submodule). Imports in the body of `if TYPE_CHECKING:` do not count."""
    tree = ast.parse(source)
    type_checking_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in type_checking_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from . import x` in a/b.py is relative to a; in a/__init__.py to a itself
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        for target in targets:
            if target.split(".")[0] == top:
                found.setdefault(target, node.lineno)
    return found


def module_graph(root: Path) -> tuple[Graph, dict[str, Path]]:
    """The import graph of every module of the package folder `root`, and each module's file."""
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: Graph = {}
    for name, path in files.items():
        names = imported_names(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", root.name)
        graph[name] = {target: line for target, line in names.items() if target in files and target != name}
    return graph, files


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_graph(graph: Graph, top: str) -> dict[str, dict[str, tuple[str, str, int]]]:
    """Sub-package -> {imported sub-package: (importing module, imported module, line) of one such import}."""
    packages: dict[str, dict[str, tuple[str, str, int]]] = {}
    for module, targets in graph.items():
        for target, line in targets.items():
            source, destination = package_of(module), package_of(target)
            if source != destination and destination != top:
                packages.setdefault(source, {}).setdefault(destination, (module, target, line))
    return packages


def strongly_connected(graph: dict[str, dict]) -> list[list[str]]:
    """The components of more than one node (Tarjan, iterative), each sorted; the cycles of the graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def cycle_through(graph: dict[str, dict], component: list[str]) -> list[str]:
    """One shortest cycle inside a component, from its first member back to it: [a, b, ..., a]."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph.get(node, ())):
            if successor not in members or successor in previous:
                continue
            previous[successor] = node
            if successor == start:
                path = [start]
                while path[-1] != start or len(path) == 1:
                    path.append(previous[path[-1]])
                return path[::-1]
            queue.append(successor)
    raise AssertionError(f"no cycle through {start} inside {component}")


def describe(kind: str, component: list[str], path: list[str], steps: list[str]) -> str:
    """`kind cycle a -> b -> a (the imports)`, plus the component's other members when it holds more."""
    line = f"{kind} cycle {' -> '.join(path)} ({'; '.join(steps)})"
    others = sorted(set(component) - set(path))
    return line + (f"; tangled with it: {', '.join(others)}" if others else "")


def cycle_report(root: Path) -> list[str]:
    """One line per cycle, module-level then package-level, naming every import that closes it."""
    graph, files = module_graph(root)
    base = root.parent
    lines = []
    for component in strongly_connected(graph):
        path = cycle_through(graph, component)
        steps = [
            f"{files[a].relative_to(base)}:{graph[a][b]} imports {b}"
            for a, b in zip(path, path[1:], strict=False)
        ]
        lines.append(describe("module", component, path, steps))
    packages = package_graph(graph, root.name)
    for component in strongly_connected(packages):
        path = cycle_through(packages, component)
        steps = []
        for a, b in zip(path, path[1:], strict=False):
            module, target, line = packages[a][b]
            steps.append(f"{files[module].relative_to(base)}:{line} imports {target}")
        lines.append(describe("package", component, path, steps))
    return lines


# ---- the walker on packages built for the test -------------------------------------------------------
def write_package(root: Path, files: dict[str, str]) -> Path:
    """A package folder `root` holding `files` (relative path -> source), an __init__.py in every folder."""
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    for folder in [root, *(path for path in root.rglob("*") if path.is_dir())]:
        (folder / "__init__.py").touch()
    return root


def test_a_lazy_relative_import_closes_a_module_cycle(tmp_path):
    root = write_package(
        tmp_path / "pkg",
        {
            "a.py": "from . import b\n",
            "b.py": "def late():\n    from pkg.a import thing\n    return thing\n",
            "c.py": "import pkg.a\n",
        },
    )
    closing = "(pkg/a.py:1 imports pkg.b; pkg/b.py:2 imports pkg.a)"
    # Top-level modules are sub-packages of their own (as sdar.config is), so the cycle shows twice.
    assert cycle_report(root) == [
        f"module cycle pkg.a -> pkg.b -> pkg.a {closing}",
        f"package cycle pkg.a -> pkg.b -> pkg.a {closing}",
    ]


def test_a_tangle_of_cycles_names_every_member(tmp_path):
    root = write_package(
        tmp_path / "pkg",
        {
            "lib/a.py": "import pkg.lib.b\n",
            "lib/b.py": "import pkg.lib.a\nimport pkg.lib.c\n",
            "lib/c.py": "import pkg.lib.b\n",
        },
    )
    assert cycle_report(root) == [
        "module cycle pkg.lib.a -> pkg.lib.b -> pkg.lib.a "
        "(pkg/lib/a.py:1 imports pkg.lib.b; pkg/lib/b.py:1 imports pkg.lib.a); tangled with it: pkg.lib.c"
    ]


def test_imports_under_type_checking_do_not_count(tmp_path):
    root = write_package(
        tmp_path / "pkg",
        {
            "a.py": "import pkg.b\n",
            "b.py": """\
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from pkg.a import Thing
                """,
        },
    )
    assert cycle_report(root) == []


def test_a_cycle_between_sub_packages_is_named_with_its_imports(tmp_path):
    # No module imports itself back: only the sub-packages form a cycle (envs.prompts -> rollout.memory,
    # rollout.engine -> envs.base).
    root = write_package(
        tmp_path / "pkg",
        {
            "envs/base.py": "",
            "envs/prompts.py": "from ..rollout.memory import render\n",
            "rollout/memory.py": "",
            "rollout/engine.py": "from pkg.envs.base import Task\n",
            "records.py": "from pkg.envs import base\n",
        },
    )
    graph, _ = module_graph(root)
    assert graph["pkg.envs.prompts"] == {"pkg.rollout.memory": 1}  # `..` from pkg/envs/prompts.py is pkg
    assert strongly_connected(graph) == []
    assert cycle_report(root) == [
        "package cycle pkg.envs -> pkg.rollout -> pkg.envs "
        "(pkg/envs/prompts.py:1 imports pkg.rollout.memory; pkg/rollout/engine.py:1 imports pkg.envs.base)"
    ]


def test_imports_of_the_root_facade_count_between_modules_only(tmp_path):
    # pkg/__init__.py imports pkg.api, which imports pkg.training.log, which imports pkg: a module cycle; the
    # package graph leaves the root out.
    root = write_package(
        tmp_path / "pkg",
        {
            "__init__.py": "def __getattr__(name):\n    from pkg import api\n    return getattr(api, name)\n",
            "api.py": "from pkg.training import log\n",
            "training/log.py": "def version():\n    import pkg\n    return pkg.__version__\n",
        },
    )
    graph, _ = module_graph(root)
    assert strongly_connected(graph) == [["pkg", "pkg.api", "pkg.training.log"]]
    assert strongly_connected(package_graph(graph, "pkg")) == []


# ---- sdar itself -------------------------------------------------------------------------------------
def test_sdar_has_no_import_cycles():
    cycles = cycle_report(SDAR)
    advice = "move the shared piece down to where both sides can import it"
    assert not cycles, f"import cycles in sdar/ ({advice}):\n" + "\n".join(cycles)
