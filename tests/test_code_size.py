"""Size rule for src/cp3rt: no module over 300 lines, no function over 60 lines, unless the code
says why it is long.

Counting: a module's lines are the lines of its file; a function's lines run from its ``def``
line to its last line (docstring and nested functions included, decorators not); a nested
function is measured on its own as well.

The way out is a comment that starts with ``# long:`` followed by the reason:

* for a module, on a line of its own before the first statement after the module docstring
  (i.e. among the lines that open the file, before the imports);
* for a function, in the block of comment lines directly above the ``def`` or above its first
  decorator.

A bare ``# long:`` without a reason does not count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cp3rt"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
MARKER = re.compile(r"^\s*#\s*long:\s*\S")


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _module_says_why(lines: list[str], tree: ast.Module) -> bool:
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    first = body[0].lineno - 1 if body else len(lines)
    return any(MARKER.match(line) for line in lines[:first])


def _function_says_why(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    top = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1  # 0-based
    k = top - 1
    while k >= 0 and lines[k].strip().startswith("#"):
        if MARKER.match(lines[k]):
            return True
        k -= 1
    return False


def offenders() -> tuple[list[str], list[str]]:
    """(long modules, long functions) without a ``# long:`` reason, each with its line count."""
    long_modules, long_functions = [], []
    for path in _modules():
        text = path.read_text()
        lines = text.splitlines()
        rel = path.relative_to(SRC.parent)
        tree = ast.parse(text)
        if len(lines) > MAX_MODULE_LINES and not _module_says_why(lines, tree):
            long_modules.append(f"{rel}: {len(lines)} lines")
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES and not _function_says_why(lines, node):
                long_functions.append(f"{rel}::{node.name} (line {node.lineno}): {n} lines")
    return long_modules, long_functions


def test_no_module_over_300_lines_without_a_reason():
    long_modules, _ = offenders()
    assert not long_modules, (
        f"modules over {MAX_MODULE_LINES} lines (split them, or say why with a '# long: <why>' "
        "line before the imports):\n  " + "\n  ".join(long_modules))


def test_no_function_over_60_lines_without_a_reason():
    _, long_functions = offenders()
    assert not long_functions, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them, or say why with a "
        "'# long: <why>' comment directly above the def or its decorators):\n  "
        + "\n  ".join(long_functions))


@pytest.mark.parametrize("source, expected", [
    ("def f():\n" + "    x = 1\n" * 61, 1),
    ("# long: one kernel, see the module docstring\ndef f():\n" + "    x = 1\n" * 61, 0),
    ("# long:\ndef f():\n" + "    x = 1\n" * 61, 1),  # no reason given
    ("# long: why\n@deco\n@deco2\ndef f():\n" + "    x = 1\n" * 61, 0),
    ("# long: why\n\ndef f():\n" + "    x = 1\n" * 61, 1),  # a blank line breaks the block
    ("def f():\n" + "    x = 1\n" * 59, 0),
])
def test_function_rule_reads_the_marker(source, expected):
    tree = ast.parse(source)
    lines = source.splitlines()
    found = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
             and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES
             and not _function_says_why(lines, n)]
    assert len(found) == expected


@pytest.mark.parametrize("source, expected", [
    ('"""Doc."""\n# long: generated table\nimport os\n', True),
    ("# long: generated table\nimport os\n", True),
    ('"""Doc."""\nimport os\n# long: too late\n', False),
    ('"""Doc."""\nimport os\n', False),
])
def test_module_rule_reads_the_marker(source, expected):
    assert _module_says_why(source.splitlines(), ast.parse(source)) is expected
