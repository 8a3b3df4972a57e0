"""No import cycles among the modules of hubness_pr/ (and the old names hubness/, features/, hyp2/): every package-internal import
(module level or inside a function, ``import a.b``, ``from . import x``, ``from .m import y``,
``importlib.import_module(".m", __package__)``) is an edge, and the graph has no cycle."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hubness_pr", "hubness", "features", "hyp2")



def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _resolve(name: str, known: dict) -> str | None:
    """The module ``name`` names (itself, or the package module holding an imported name)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: Path, known: dict) -> set:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            target = node.args[0].value
            targets = [f"{package}{target}" if target.startswith(".") else target]
        for target in targets:
            hit = _resolve(target, known)
            if hit is not None and hit != name and not name.startswith(hit + "."):  # a package's own parents
                out.add(hit)
    return out


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

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
            component = set()
            while True:
                w = stack.pop()
                on.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graph() -> dict:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_no_import_cycles():
    found = [sorted(c) for c in cycles(import_graph())]
    assert not found, f"import cycles: {found}"


def test_the_check_sees_function_level_and_relative_imports():
    """The checker itself: a cycle made by a function-level relative import is found."""
    graph = {"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": {"a.x"}}
    assert cycles(graph) == [frozenset({"a.x", "a.y"})]
    known = modules()
    kernels = imports_of("hubness_pr.engine.kernels", known["hubness_pr.engine.kernels"], known)
    assert "hubness_pr.engine.kernels_jit" in kernels and "hubness_pr.engine.reductions" in kernels  # importlib and from-imports
    ann = imports_of("hubness_pr.engine.ann", known["hubness_pr.engine.ann"], known)
    assert "hubness_pr.engine.knn" in ann  # imported inside a function


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_parsed(package):
    assert any(name.startswith(package) for name in modules())


def _engine_sources():
    return sorted((ROOT / "hubness_pr" / "engine").glob("*.py"))


def test_the_engine_is_numerics_only():
    """hubness_pr.engine parses no options and reads no environment variable: its modules import no
    argparse and no command, report or file-format module, and never touch os.environ / os.getenv."""
    known = modules()
    for path in _engine_sources():
        name = module_name(path)
        imported = imports_of(name, path, known)
        outside = {m for m in imported if m.startswith("hubness_pr.") and not m.startswith("hubness_pr.engine")
                   and m not in ("hubness_pr.lazy", "hubness_pr.validation", "hubness_pr.errors")}
        assert not outside, f"{name} imports {sorted(outside)}"
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                assert "argparse" not in names, f"{name} imports argparse"
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                raise AssertionError(f"{name} line {node.lineno} reads the environment ({node.attr})")


def test_importing_the_engine_imports_no_argparse():
    """The issue's check, literally (torch itself imports argparse, so the module-level check above is the
    one that sees the engine's own imports)."""
    code = "import sys; import hubness_pr.engine; assert 'argparse' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
