"""``captum_regadv.fileio`` is a house without circles (issue 21 §3): no module
imports, directly or through others, a module that imports it back, and every
module imports first in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from test_cli import subprocess_env

PACKAGE = Path(__file__).resolve().parents[1] / "captum_regadv" / "fileio"


def local_imports(path: Path) -> set[str]:
    """The sibling modules a module imports anywhere (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_fileio_import_graph_has_no_cycle() -> None:
    graph = {p.stem: local_imports(p) for p in PACKAGE.glob("*.py")}
    assert graph["kinds"] <= {"_base"}  # the bottom floor
    assert "readers" not in set().union(*(graph[m] for m in graph if m != "__init__"))
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph.get(module, set())):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(path + [dep])}"
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_every_fileio_module_imports_first() -> None:
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    modules += ["__init__"]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r} + ['image_io']:\n"
        "    for m in [m for m in sys.modules if m.startswith('captum_regadv')]:\n"
        "        del sys.modules[m]\n"
        "    full = 'captum_regadv.image_io' if name == 'image_io' else (\n"
        "        'captum_regadv.fileio' if name == '__init__' else 'captum_regadv.fileio.' + name)\n"
        "    importlib.import_module(full)\n"
        "from captum_regadv.image_io import load_image, read_dicom_series, render_slices\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
