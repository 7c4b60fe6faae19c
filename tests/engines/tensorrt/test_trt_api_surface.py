"""Static check of cp3rt's TensorRT code against the published TensorRT API (tensorrt-stubs,
generated from the real compiled bindings; snapshot in data/, see tensorrt_api.py):

* every ``tensorrt`` name the code uses (``trt.X.Y``, ``getattr(trt, "X")``), and every method or
  attribute it uses on a TensorRT object, exists, and each call's arguments fit a signature;
* the fake ``tensorrt`` the other tests run against has nothing the real API lacks, with the
  real parameter names and enum values, so code that runs against the fake uses real names only.

A misspelt name or a wrong argument form fails here, without TensorRT or a GPU."""

from __future__ import annotations

import ast
import enum
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import tensorrt_api

SRC = Path(__file__).resolve().parents[3] / "src" / "cp3rt" / "engines" / "tensorrt"
API = tensorrt_api.load()

# Which variables hold which TensorRT objects, per module (the code passes them as Any).
TYPED = {
    "builder.py": {"builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
                   "bconf": "IBuilderConfig", "profile": "IOptimizationProfile", "cache": "ITimingCache"},
    "timing_cache.py": {"bconf": "IBuilderConfig", "cache": "ITimingCache"},
    "engine.py": {"engine": "ICudaEngine", "self._engine": "ICudaEngine", "ctx": "IExecutionContext",
                  "self._runtime": "Runtime", "strategy": "ExecutionContextAllocationStrategy"},
    "_trt.py": {},
}
MODULE_VARS = ("trt", "self._trt")


def _members(cls: str) -> dict:
    """Members of a stub class with those of its bases."""
    out: dict = {}
    todo = [cls]
    while todo:
        entry = API["classes"].get(todo.pop())
        if entry:
            out = {**entry["members"], **out}
            todo += entry["bases"]
    return out


def _fits(overloads: list, positional: int, keywords: list[str]) -> bool:
    for params in overloads:
        plain = [p for p in params if not p.startswith("*")]
        names = [p.rstrip("=") for p in plain]
        required = sum(1 for p in plain if not p.endswith("="))
        if required <= positional + len(keywords) and positional <= len(plain) \
                and all(k in names[positional:] for k in keywords):
            return True
    return any(any(p.startswith("*") for p in params) for params in overloads)


def _chain(node: ast.AST) -> list[str] | None:
    """``trt.A.B`` -> ["A", "B"]; ``getattr(trt.A, "B")`` -> ["A", "B"]; None if not rooted at trt."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
        base = _chain(node.args[0])
        return None if base is None else base + [node.args[1].value]
    if isinstance(node, ast.Attribute):
        base = _chain(node.value)
        return None if base is None else base + [node.attr]
    return [] if ast.unparse(node) in MODULE_VARS else None


def problems(source: str, typed: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems, what was checked) for one module's source."""
    bad, seen = [], []
    for node in ast.walk(ast.parse(source)):
        # construct(trt, "Builder", logger): trt.Builder(logger)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "construct":
            cls = node.args[1].value
            seen.append(f"trt.{cls}()")
            if cls not in API["module"] or not _fits(_members(cls).get("__init__", [[]]), 1, []):
                bad.append(f"trt.{cls}(logger)")
        chain = _chain(node) if isinstance(node, (ast.Attribute, ast.Call)) else None
        if chain:
            name = "trt." + ".".join(chain)
            seen.append(name)
            if chain[0] not in API["module"]:
                bad.append(name)
            elif len(chain) > 1:
                cls = chain[0]
                for part in chain[1:]:
                    members = _members(cls)
                    if part not in members:
                        bad.append(name)
                        break
                    cls = f"{cls}.{part}" if members[part] == "class" else cls
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) in typed:
            cls = typed[ast.unparse(node.value)]
            seen.append(f"{cls}.{node.attr}")
            if node.attr not in _members(cls):
                bad.append(f"{cls}.{node.attr} ({ast.unparse(node)})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and ast.unparse(node.func.value) in typed:
            cls = typed[ast.unparse(node.func.value)]
            overloads = _members(cls).get(node.func.attr)
            if isinstance(overloads, list):
                keywords = [k.arg for k in node.keywords if k.arg]
                if not _fits(overloads, len(node.args), keywords):
                    bad.append(f"{cls}.{node.func.attr}: call {ast.unparse(node)} fits none of {overloads}")
    return bad, seen


def test_every_tensorrt_name_and_call_in_the_code_exists() -> None:
    checked: list[str] = []
    for module, typed in TYPED.items():
        bad, seen = problems((SRC / module).read_text(), typed)
        assert bad == [], f"{module}: not in the TensorRT API ({API['source']}): {bad}"
        checked += seen
    # the scan must really see the calls that matter (a scanner that checks nothing passes too)
    for name in ("trt.Builder()", "trt.Runtime()", "trt.ExecutionContextAllocationStrategy",
                 "ICudaEngine.create_execution_context", "ICudaEngine.device_memory_size_v2",
                 "IExecutionContext.set_device_memory", "IExecutionContext.execute_async_v3",
                 "Builder.build_serialized_network", "IBuilderConfig.set_timing_cache",
                 "trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED", "trt.BuilderFlag.TF32"):
        assert name in checked, name


@pytest.mark.parametrize("snippet", [
    "ctx.set_device_memroy(block.ptr, block.nbytes)",                # misspelt method
    "ctx.set_device_memory(block.ptr)",                              # a required argument missing
    "engine.create_execution_context(stratgy=trt.ExecutionContextAllocationStrategy.USER_MANAGED)",
    "trt.ExecutionContextAllocationStrategy.USER_MANAGD",             # misspelt enum member
    "getattr(trt.NetworkDefinitionCreationFlag, 'STRONGLY_TYPD', None)",
    "x = engine.device_memory_size_v3",
])
def test_the_check_catches_a_wrong_name_or_signature(snippet: str) -> None:
    bad, _ = problems(snippet, TYPED["engine.py"])
    assert bad, snippet


def _fake_module(version: str):  # noqa: ANN202
    import fake_cuda
    import fake_tensorrt

    return fake_tensorrt.build_module(fake_tensorrt.FakeTrtState(version=version, cuda=fake_cuda.FakeCudaState()))


def _own_members(cls: type) -> dict:
    out: dict = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__ in ("builtins", "enum") or klass is object:
            continue
        out.update(vars(klass))
    return {k: v for k, v in out.items() if not k.startswith("_") or k == "__init__"}


@pytest.mark.parametrize("version", ["10.9.0.34", "11.0.0"])
def test_the_fake_tensorrt_has_nothing_the_real_api_lacks(version: str) -> None:
    trt = _fake_module(version)
    bad = []
    for name, value in vars(trt).items():
        if name.startswith("_") or name in ("STATE",) or isinstance(value, type(trt)):
            continue
        if name not in API["module"]:
            bad.append(f"trt.{name}")
            continue
        if not isinstance(value, type):
            continue
        todo = [(name, value)]
        while todo:
            cls_name, cls = todo.pop()
            real = _members(cls_name)
            if issubclass(cls, enum.Enum):
                values = API["classes"].get(cls_name, {}).get("values", {})
                bad += [f"{cls_name}.{m}" for m in cls.__members__ if m not in real]
                bad += [f"{cls_name}.{m} = {int(v)}, real {values[m]}" for m, v in cls.__members__.items()
                        if m in values and int(v) != values[m]]
                continue
            for member, obj in _own_members(cls).items():
                if isinstance(obj, type):
                    todo.append((f"{cls_name}.{member}", obj))
                    if member not in real:
                        bad.append(f"{cls_name}.{member}")
                    continue
                if member == "__init__" and "__init__" not in real:
                    continue
                if member not in real:
                    bad.append(f"{cls_name}.{member}")
                elif inspect.isfunction(obj) and isinstance(real[member], list):
                    params = [p for p in list(inspect.signature(obj).parameters)[1:]]
                    if not any([p.rstrip("=") for p in o][:len(params)] == params
                               and all(p.endswith("=") for p in o[len(params):]) for o in real[member]):
                        bad.append(f"{cls_name}.{member}{tuple(params)} vs {real[member]}")
    assert bad == [], f"the fake has names or signatures the real TensorRT API ({API['source']}) lacks: {bad}"


def test_the_snapshot_is_what_the_stubs_say(tmp_path: Path) -> None:
    """The committed snapshot against the pinned tensorrt-stubs wheel itself. Its declared
    dependency is tensorrt, which cannot be installed here, so it goes --no-deps into a folder of
    its own (it is only read as text, never imported)."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
           "--target", str(tmp_path), f"tensorrt-stubs=={tensorrt_api.STUBS_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"cannot install tensorrt-stubs: {proc.stderr.strip()[-500:]}"
    assert tensorrt_api.snapshot(tmp_path) == API
