"""A module's private names (``_name``) stay its own: no module imports another module's private
function, class or constant. A private *module* (``pkg/_impl.py``) may be imported inside its own
package — that is what makes it package-private — but not from outside that package."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cp3rt"


def _module_path(dotted: str) -> Path:
    return SRC.joinpath(*dotted.split("."))


def _is_module(dotted: str) -> bool:
    path = _module_path(dotted)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def private_imports(path: Path, root: Path = SRC) -> list[str]:
    """``file:line: from X import _y`` for every import of another module's private name, and
    of a private module from outside its package (``root``: the folder holding ``cp3rt/``)."""
    own_module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
    own_package = own_module if path.name == "__init__.py" else own_module.rpartition(".")[0]
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cp3rt")):
            continue
        for alias in node.names:
            if not alias.name.startswith("_") or alias.name.startswith("__"):
                continue
            target = f"{node.module}.{alias.name}"
            if _is_module(target):
                inside = own_package == node.module or own_package.startswith(node.module + ".")
                if inside or node.module == "cp3rt":  # cp3rt._fs, _lazy, _version: the ground floor's shared helpers
                    continue
            bad.append(f"{path.relative_to(root)}:{node.lineno}: from {node.module} import {alias.name}")
    return bad


def test_no_module_imports_another_modules_private_names() -> None:
    bad = [line for path in sorted(PACKAGE.rglob("*.py")) for line in private_imports(path)]
    assert bad == [], "private names imported across modules (make them public or move them):\n" + "\n".join(bad)


def test_the_check_sees_a_private_name(tmp_path) -> None:
    assert private_imports(PACKAGE / "runtime" / "io" / "pictures.py") == []
    probe = tmp_path / "cp3rt" / "runtime" / "io" / "probe.py"  # a module of io, outside the source tree
    probe.parent.mkdir(parents=True)
    probe.write_text("from cp3rt.runtime.io.render import _secret\nfrom cp3rt.runtime.dynamics.cuda import _env\n"
                     "from cp3rt.runtime.io import _outlines\n")
    assert [line.split(": ", 1)[1] for line in private_imports(probe, tmp_path)] == [
        "from cp3rt.runtime.io.render import _secret",  # another module's private name
        "from cp3rt.runtime.dynamics.cuda import _env",  # a private module from outside its package
    ]  # _outlines: a private module of its own package, allowed
