"""The house in numbers, for the before/after of issue 12: lines and modules per folder, import
cycles, the longest modules and functions, and the `§` references into a spec outside the repo.

    python benchmarks/house_metrics.py                      # this checkout
    python benchmarks/house_metrics.py --rev d874d73        # a commit (read with git archive)
    python benchmarks/house_metrics.py --rev d874d73 --rev HEAD --out benchmarks/results/house_metrics.md

The import graph and cycle search are the ones tests/test_layering.py enforces (loaded from that
file, so both read imports the same way).
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib.util
import io
import re
import subprocess
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION_REF = re.compile(r"§ ?[0-9A-Z]+(?:\.[0-9]+)*")


def _layering():
    spec = importlib.util.spec_from_file_location("_layering", ROOT / "tests" / "test_layering.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _checkout(rev: str, into: Path) -> Path:
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def measure(src: Path) -> dict:
    lay = _layering()
    files = lay.module_files(src)
    per_folder: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    modules, functions, refs = [], [], 0
    for name, path in files.items():
        if not name.startswith("cp3rt"):
            continue
        text = path.read_text()
        n = text.count("\n")
        folder = str(path.parent.relative_to(src))
        per_folder[folder][0] += 1
        per_folder[folder][1] += n
        modules.append((n, name))
        refs += len(SECTION_REF.findall(text))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
    graph = lay.import_graph({m: p for m, p in files.items()})
    return {
        "folders": dict(sorted(per_folder.items())),
        "cycles": sorted(sorted(c) for c in lay.cycles(graph)),
        "modules_over_300": sorted([m for m in modules if m[0] > 300], reverse=True),
        "functions_over_60": sorted([f for f in functions if f[0] > 60], reverse=True),
        "total_lines": sum(m[0] for m in modules),
        "section_refs": refs,
    }


def render(rev: str, m: dict) -> str:
    out = [f"## {rev}", "", f"{m['total_lines']} lines of Python in src/cp3rt; "
           f"{m['section_refs']} `§` references in src/", "", "| folder | modules | lines |", "|---|---|---|"]
    out += [f"| {k} | {v[0]} | {v[1]} |" for k, v in m["folders"].items()]
    out += ["", f"import cycles: {len(m['cycles'])}"] + [f"- {' <-> '.join(c)}" for c in m["cycles"]]
    out += ["", "modules over 300 lines: " + (", ".join(f"{n} ({k})" for k, n in m["modules_over_300"]) or "none")]
    out += ["", "functions over 60 lines: " + (", ".join(f"{n} ({k})" for k, n in m["functions_over_60"]) or "none"), ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", action="append", help="git revision(s); default: the working tree")
    ap.add_argument("--out", type=Path, help="write the markdown report here")
    args = ap.parse_args()
    parts = [f"# The house in numbers ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             "Command: `python benchmarks/house_metrics.py " +
             " ".join(f"--rev {r}" for r in args.rev or []) + "`", ""]
    for rev in args.rev or ["working tree"]:
        if rev == "working tree":
            parts.append(render(rev, measure(ROOT / "src")))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True,
                                 capture_output=True, text=True).stdout.strip()
            parts.append(render(f"{rev} ({sha})", measure(_checkout(rev, Path(tmp)))))
    text = "\n".join(parts)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
