"""The torch-free promise: importing the runtime and running the light CLI commands must not load
torch, tensorrt, the reference cellpose package or cp3rt's torch-side code.

Each scenario runs in a fresh interpreter (this test process itself has torch loaded).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("torch", "tensorrt", "cellpose", "cp3rt.models", "cp3rt.export")

_CHECK = """
import json, sys
{body}
print("@@" + json.dumps(sorted(m for m in {forbidden!r} if m in sys.modules)))
"""

_CLI = "from cp3rt.cli.app import main\nrc = main({argv!r})\nassert rc == 0, rc"

SCENARIOS = {
    "import cp3rt": "import cp3rt",
    "import cp3rt.runtime": "import cp3rt.runtime",
    "import cp3rt.engines": "import cp3rt.engines",
    "import cp3rt.engines.ort": "import cp3rt.engines.ort",
    "import cp3rt.zoo": "import cp3rt.zoo",
    "cp3rt --help": _CLI.format(argv=["--help"]),
    "cp3rt info": _CLI.format(argv=["info", "--json"]),
    "cp3rt models": _CLI.format(argv=["models"]),
}


def loaded_forbidden(body: str) -> list[str]:
    """Run ``body`` in a new interpreter and return the forbidden modules it left loaded."""
    code = _CHECK.format(body=body, forbidden=FORBIDDEN)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    marker = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
    return json.loads(marker[-1][2:])


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_heavy_imports(scenario: str) -> None:
    assert loaded_forbidden(SCENARIOS[scenario]) == [], f"{scenario} imported a forbidden module"


def test_the_check_can_fail() -> None:
    # A top-level torch import anywhere in the chain would look exactly like this.
    assert loaded_forbidden("import cp3rt\nimport torch") == ["torch"]
    assert loaded_forbidden("import cp3rt.models") == ["cp3rt.models"]
    assert loaded_forbidden("import cp3rt.export") == ["cp3rt.export"]


# ---- every module on its own, with only the core dependencies ------------------------------------
# Import names of the optional extras (pyproject [project.optional-dependencies]): a core install
# has none of them, so a module that loads one at import time breaks there.
EXTRA_IMPORTS = ("torch", "onnx", "onnxscript", "tensorrt", "cuda", "numba_cuda", "numba.cuda", "zarr",
                 "dask", "distributed", "cellpose", "cv2", "fastremap", "fill_voids", "hypothesis", "pyarrow",
                 "skimage")
# The parts that need an extra to import at all: the torch side (models, export, train) and the CUDA
# dynamics kernels (numba-cuda). Everything else must import with the core dependencies only.
NEEDS_EXTRA = ("cp3rt.models", "cp3rt.export", "cp3rt.train", "cp3rt.runtime.dynamics.cuda._")
CORE_PRELOAD = ("numpy", "numba", "scipy", "tifffile", "typer", "rich", "onnxruntime", "platformdirs",
                "filelock", "PIL")

# One fresh interpreter loads the core dependencies once, then forks a child per module: each
# child starts with no cp3rt module loaded, imports one, and reports an error or the extras it
# pulled in. (A module that works only because another one was imported first fails here.)
_EACH = r"""
import importlib, json, os, sys, traceback
for dep in {preload!r}:
    importlib.import_module(dep)
def extras():
    return sorted(m for m in sys.modules if any(m == e or m.startswith(e + ".") for e in {extras!r}))
assert not extras(), extras()
assert not [m for m in sys.modules if m.split(".")[0] == "cp3rt"]
report = {{}}
for name in {modules!r}:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(name)
            out = {{"extras": extras()}}
        except BaseException:
            out = {{"error": traceback.format_exc(limit=3)}}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        report[name] = json.loads(f.read() or '{{"error": "child died"}}')
    os.waitpid(pid, 0)
print("@@" + json.dumps(report))
"""


def core_modules() -> list[str]:
    from test_layering import module_files

    return sorted(m for m in module_files() if m.startswith("cp3rt") and not m.endswith("__main__")
                  and not m.startswith(NEEDS_EXTRA))


def import_each(modules: list[str]) -> dict[str, dict]:
    code = _EACH.format(preload=CORE_PRELOAD, extras=EXTRA_IMPORTS, modules=modules)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    marker = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
    return json.loads(marker[-1][2:])


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork (POSIX)")
def test_every_core_module_imports_alone_without_extras() -> None:
    modules = core_modules()
    assert "cp3rt.runtime.batch.files" in modules and "cp3rt.engines.ort" in modules
    report = import_each(modules)
    broken = {m: r["error"].strip().splitlines()[-1] for m, r in report.items() if "error" in r}
    heavy = {m: r["extras"] for m, r in report.items() if r.get("extras")}
    assert not broken, f"modules that do not import on their own: {broken}"
    assert not heavy, f"modules that load an optional extra at import time: {heavy}"


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork (POSIX)")
def test_the_per_module_check_can_fail() -> None:
    report = import_each(["cp3rt.models.cpnet", "cp3rt.no_such_module"])
    assert "torch" in report["cp3rt.models.cpnet"]["extras"]
    assert "ModuleNotFoundError" in report["cp3rt.no_such_module"]["error"]
