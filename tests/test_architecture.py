"""The shape of the library (docs/ARCHITECTURE.md): no file too long to read, imports that point
down the layers and never round in a cycle, no library module that depends on the command line,
and the promises of ``import rlteach`` (lazy, torch-free, visible to IDEs)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rlteach

PACKAGE = Path(rlteach.__file__).parent
MAX_LINES = 650

# Each module's layer; a module may import its own layer or a lower one, never a higher one.
LAYERS = {
    "rlteach": 0,  # the package's lazy names; imports only the registry at run time
    "rlteach.registry": 0,
    "rlteach.config": 0,
    "rlteach.tabular": 1,
    "rlteach.nets": 1,
    "rlteach.advantages": 1,
    "rlteach.losses": 1,
    "rlteach.envs": 2,
    "rlteach.history": 2,
    "rlteach.rollout": 2,
    "rlteach.progress": 2,
    "rlteach.algos": 3,
    "rlteach.checkpoint": 3,
    "rlteach.distributed": 4,
    "rlteach.plots": 5,
    "rlteach.episodes": 5,
    "rlteach.checks": 5,
    "rlteach.widgets": 6,
    "rlteach.panel": 6,
    "rlteach.release": 6,
    "rlteach.grading": 6,
    "rlteach.cli": 7,
    "rlteach.__main__": 8,
}
LAYER_NAMES = [
    "foundation",
    "maths",
    "experience",
    "algorithms",
    "distributed",
    "figures",
    "widgets and teaching",
    "command line",
    "entry point",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    """The layer of ``module``: that of the longest prefix in LAYERS."""
    prefixes = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    assert prefixes, f"{module} is in no layer: add it to LAYERS and docs/ARCHITECTURE.md"
    return LAYERS[max(prefixes, key=len)]


def runtime_imports(tree: ast.AST) -> list[ast.AST]:
    """Every import statement of a module, at any depth (inside functions too), except those
    under ``if TYPE_CHECKING:``, which never run."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imported_modules(module: str) -> set[str]:
    """The rlteach modules that ``module`` imports (``from rlteach.x import y`` counts
    ``rlteach.x.y`` when y is a module, else ``rlteach.x``)."""
    tree = ast.parse(MODULES[module].read_text())
    targets = set()
    for node in runtime_imports(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            assert node.level == 0, f"{module}: use absolute imports"
            base = node.module or ""
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        targets |= {name for name in names if name.split(".")[0] == "rlteach"}
    return {t for t in targets if t in MODULES and t != module}


GRAPH = {module: imported_modules(module) for module in MODULES}


def test_no_file_of_the_library_is_longer_than_a_reader_can_hold():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_imports_point_down_the_layers():
    upward = [
        f"{m} ({LAYER_NAMES[layer(m)]}) imports {t} ({LAYER_NAMES[layer(t)]})"
        for m, targets in GRAPH.items()
        for t in targets
        if layer(t) > layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    """Depth-first search over every runtime import, those inside functions included."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_no_library_module_imports_the_command_line():
    users = {m for m, targets in GRAPH.items() if targets & {"rlteach.cli", "rlteach.__main__"}}
    assert users <= {"rlteach.__main__"}, users


def test_the_lazy_names_are_the_ones_ides_see_and_dir_lists_the_submodules():
    tree = ast.parse(MODULES["rlteach"].read_text())
    guarded = next(
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    )
    seen = {alias.name for node in guarded.body for alias in node.names}
    assert (
        seen == set(rlteach._EXPORTS) == set(rlteach.__all__) - {"__version__", "require_version"}
    )
    listed = dir(rlteach)
    assert {"plots", "tabular", "distributed", "registry", "cli"} <= set(listed)
    for name in rlteach._EXPORTS:
        assert getattr(rlteach, name) is not None


def test_import_rlteach_and_its_distributed_plumbing_stays_torch_free():
    """A worker that only needs rlteach.distributed's runtime starts without importing torch."""
    code = (
        "import sys, rlteach, rlteach.distributed, rlteach.registry, rlteach.config\n"
        "print(sorted(m for m in ('torch', 'gymnasium', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
