"""The package's layering: no import cycle (also through imports inside functions), one framework per module.

Every module of :mod:`resbook` is imported alone in a fresh interpreter, so a
module that only works after another one was imported fails here, and no
module may pull in both TensorFlow and PyTorch (their bundled LLVM clash, see
conftest.py). The cycle check reads the source, since an import inside a
function hides a cycle from any import-time test.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "resbook"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """The resbook modules ``name`` imports anywhere in its source, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            base = ".".join(filter(None, [base, node.module or ""]))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    done, path = set(), []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph[node]):
            found = visit(nxt)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    return next((c for c in map(visit, sorted(graph)) if c), None)


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from .sources import fetch\n    from ..settings import profile\n")
    name = "resbook.data.mnist"
    assert _imports(name, src) == {"resbook.data.sources", "resbook.settings"}


def test_resbook_has_no_import_cycle():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert "resbook.settings" in graph["resbook.data.sources"]  # the parser sees relative imports
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_alone_and_loads_at_most_one_framework(module):
    code = (f"import sys, {module}\n"
            "print('loaded:', *(m for m in ('tensorflow', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    frameworks = next(line for line in done.stdout.splitlines() if line.startswith("loaded:")).split()[1:]
    assert len(frameworks) <= 1, f"{module} imports both TensorFlow and PyTorch"
