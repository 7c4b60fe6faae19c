"""The house rules, read from the code's own imports (parsed with ``ast``; nothing is imported).

1. Levels point down: a module may import its own level and the levels below it, bottom first;
   docs/layout.md says why each level sits where it does. Twice: the package's floors
   (``PACKAGES``: ground floor, zoo, models, export, engines, artefacts, runtime, tools, cli) and,
   inside the runtime, its levels (``LEVELS``).
2. No import cycles between cp3rt modules (``KNOWN_CYCLES`` lists the ones not yet undone).
3. ``runtime`` and ``engines`` never import torch, the reference cellpose or cp3rt's torch side
   (``cp3rt.models``, ``cp3rt.export`` and ``cp3rt.train``) at module level.

Every import counts for rules 1 and 2, also one inside a function or under ``TYPE_CHECKING``:
a lazy import is still a dependency, it only moves the moment it breaks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom first. Within a level modules may import each other (rule 2 still forbids cycles).
LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prep", ("cp3rt.runtime.prep",)),            # pixels: axes, normalisation, resizing
    ("tiles", ("cp3rt.runtime.tiles",)),          # tile geometry, blending, a net over tiles
    ("dynamics", ("cp3rt.runtime.dynamics",)),    # flows -> masks
    ("io", ("cp3rt.runtime.io",)),                # files in and out
    ("quality", ("cp3rt.runtime.quality",)),      # metrics, evaluation, degradations
    ("contracts", ("cp3rt.runtime.config", "cp3rt.runtime.result", "cp3rt.runtime.nets")),
    ("stages", ("cp3rt.runtime.stages",)),        # one image / one volume through the nets
    ("pipeline", ("cp3rt.runtime.pipeline",)),    # opens the nets, runs one image
    ("batch", ("cp3rt.runtime.batch",)),          # files, folders, plates, huge images, streams
)
RUNTIME_FACE = "cp3rt.runtime"  # the package __init__: the public face may import any level

# The package's floors, bottom first (docs/layout.md). A floor is whole subpackages or modules.
PACKAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("cp3rt.errors", "cp3rt.defaults", "cp3rt._fs", "cp3rt._lazy", "cp3rt._version",
                "cp3rt.manifest", "cp3rt.cache")),   # shared contracts and helpers, no cp3rt part
    ("zoo", ("cp3rt.zoo",)),                        # model names, metadata, weight-file locations
    ("models", ("cp3rt.models",)),                  # the net: CPnet, weight files, folding (torch)
    ("export", ("cp3rt.export",)),                  # the net -> ONNX artefact and back (torch)
    ("engines", ("cp3rt.engines",)),                # the Engine protocol and its backends
    ("artefacts", ("cp3rt.artefacts", "cp3rt.build")),  # model spec -> the file an engine opens
    ("runtime", ("cp3rt.runtime",)),                # images -> masks (numpy + numba + engines)
    ("tools", ("cp3rt.check", "cp3rt.calibrate", "cp3rt.distributed", "cp3rt.train")),  # built on the runtime
    ("cli", ("cp3rt.cli", "cp3rt.__main__")),       # thin commands
)
PACKAGE_FACE = "cp3rt"  # the top-level __init__: the public face may import any floor

# Cycles that exist today and are someone's open work; a fixed one must leave this list.
KNOWN_CYCLES: set[frozenset[str]] = set()

TORCH_SIDE = ("torch", "cellpose", "cp3rt.models", "cp3rt.export", "cp3rt.train")


# ---- reading the imports ----------------------------------------------------------------------
def module_files(root: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``root`` (packages by their __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _target(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, source: str, known: Iterable[str], *, is_package: bool = False,
               module_level_only: bool = False) -> set[str]:
    """The known modules ``source`` imports. ``from pkg import name`` counts as an import of
    ``pkg.name`` when that is a module, else of ``pkg``; an unknown dotted name counts as its
    longest known prefix. ``module_level_only`` skips function bodies and ``if TYPE_CHECKING``."""
    known = set(known)
    found: set[str] = set()
    for node in _import_nodes(ast.parse(source), module_level_only):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = _target(node, module, is_package)
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            names = subs + ([base] if len(subs) < len(node.names) else [])
        for name in names:
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known and name != module:
                found.add(name)
    return found


def imported_names(source: str, *, module_level_only: bool) -> set[str]:
    """Every dotted name ``source`` imports (third-party included)."""
    names = set()
    for node in _import_nodes(ast.parse(source), module_level_only):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        else:
            names.add(node.module or "")
    return names


def _import_nodes(tree: ast.AST, module_level_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if module_level_only and (isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                                      or _is_type_checking(child)):
                continue
            stack.append(child)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    return {m: imports_of(m, p.read_text(), files, is_package=p.name == "__init__.py", module_level_only=False)
            for m, p in files.items() if m.startswith("cp3rt")}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.add(member)
                        if member == node:
                            break
                    if len(comp) > 1:
                        found.append(frozenset(comp))
    return found


Levels = tuple[tuple[str, tuple[str, ...]], ...]


def level_of(module: str, levels: Levels = LEVELS) -> int | None:
    for rank, (_, prefixes) in enumerate(levels):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def upward_imports(graph: dict[str, set[str]], levels: Levels = LEVELS) -> list[str]:
    bad = []
    for module, deps in sorted(graph.items()):
        here = level_of(module, levels)
        for dep in sorted(deps):
            there = level_of(dep, levels)
            if here is not None and there is not None and there > here:
                bad.append(f"{module} ({levels[here][0]}) imports {dep} ({levels[there][0]})")
    return bad


# ---- the rules on the real code -----------------------------------------------------------------
@pytest.fixture(scope="module")
def files() -> dict[str, Path]:
    return module_files()


@pytest.fixture(scope="module")
def graph(files) -> dict[str, set[str]]:
    return import_graph(files)


def test_every_runtime_module_has_a_level(files):
    homeless = [m for m in files if m.startswith(RUNTIME_FACE + ".") and level_of(m) is None]
    assert not homeless, f"put these in a level of LEVELS (and docs/layout.md): {homeless}"


def test_runtime_levels_only_import_downward(graph):
    bad = upward_imports(graph)
    assert not bad, "imports that point up a level:\n" + "\n".join(bad)


def test_every_module_is_on_a_floor(files):
    homeless = [m for m in files if m.startswith("cp3rt.") and level_of(m, PACKAGES) is None]
    assert not homeless, f"put these on a floor of PACKAGES (and docs/layout.md): {homeless}"


def test_floors_only_import_downward(graph):
    bad = upward_imports(graph, PACKAGES)
    assert not bad, "imports that point up a floor:\n" + "\n".join(bad)


def test_no_import_cycles(graph):
    found = set(cycles(graph))
    new = [sorted(c) for c in found - KNOWN_CYCLES]
    gone = [sorted(c) for c in KNOWN_CYCLES - found]
    assert not new, f"import cycles: {new}"
    assert not gone, f"these cycles are gone: remove them from KNOWN_CYCLES: {gone}"


def test_runtime_and_engines_never_import_the_torch_side_at_module_level(files):
    bad = []
    for module, path in files.items():
        if not module.startswith(("cp3rt.runtime", "cp3rt.engines")):
            continue
        for name in imported_names(path.read_text(), module_level_only=True):
            if any(name == t or name.startswith(t + ".") for t in TORCH_SIDE):
                bad.append(f"{module} imports {name}")
    assert not bad, "\n".join(bad)


# ---- the checkers catch what they are for --------------------------------------------------------
KNOWN = {"cp3rt.runtime.prep.axes", "cp3rt.runtime.batch", "cp3rt.runtime.batch.files",
         "cp3rt.runtime.stages", "cp3rt.runtime.stages.image"}


def test_an_upward_import_is_reported_even_when_lazy():
    src = "def f():\n    from cp3rt.runtime.batch.files import run_batch\n"
    graph = {"cp3rt.runtime.prep.axes": imports_of("cp3rt.runtime.prep.axes", src, KNOWN)}
    assert upward_imports(graph) == [
        "cp3rt.runtime.prep.axes (prep) imports cp3rt.runtime.batch.files (batch)"]


def test_an_upward_import_between_floors_is_reported():
    known = {"cp3rt.engines.select", "cp3rt.artefacts", "cp3rt.manifest", "cp3rt.zoo.registry"}
    engines = "def f():\n    from cp3rt.artefacts import resolve_model\n"
    ground = "from cp3rt.zoo.registry import ZOO\n"
    graph = {"cp3rt.engines.select": imports_of("cp3rt.engines.select", engines, known),
             "cp3rt.manifest": imports_of("cp3rt.manifest", ground, known),
             "cp3rt.artefacts": {"cp3rt.engines.select", "cp3rt.manifest"}}
    assert upward_imports(graph, PACKAGES) == [
        "cp3rt.engines.select (engines) imports cp3rt.artefacts (artefacts)",
        "cp3rt.manifest (ground) imports cp3rt.zoo.registry (zoo)"]


def test_from_package_import_module_is_an_import_of_the_module():
    src = "from cp3rt.runtime.stages import image\nimport cp3rt.runtime.prep.axes.sub\n"
    assert imports_of("x", src, KNOWN) == {"cp3rt.runtime.stages.image", "cp3rt.runtime.prep.axes"}
    rel = "from ..prep import axes\nfrom . import image\n"
    assert imports_of("cp3rt.runtime.stages.image2", rel, KNOWN) == {"cp3rt.runtime.prep.axes",
                                                                    "cp3rt.runtime.stages.image"}


def test_a_cycle_through_a_type_checking_import_is_found():
    a = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cp3rt.runtime.batch.files import X\n"
    b = "from cp3rt.runtime.stages.image import run_image\n"
    graph = {"cp3rt.runtime.stages.image": imports_of("cp3rt.runtime.stages.image", a, KNOWN),
             "cp3rt.runtime.batch.files": imports_of("cp3rt.runtime.batch.files", b, KNOWN),
             "cp3rt.runtime.prep.axes": set()}
    assert cycles(graph) == [frozenset({"cp3rt.runtime.stages.image", "cp3rt.runtime.batch.files"})]


def test_module_level_means_outside_functions_and_type_checking():
    src = ("import numpy\nif TYPE_CHECKING:\n    import torch\ndef f():\n    import cellpose\n"
           "try:\n    import cp3rt.export.to_onnx\nexcept ImportError:\n    pass\n")
    assert imported_names(src, module_level_only=True) == {"numpy", "cp3rt.export.to_onnx"}
