"""Every `§` reference in the repository can be followed inside it: docs/reference-behaviour.md.

Citations are read from src/, tests/ and benchmarks/ (Python) and from docs/ and README.md
(Markdown, the reference page itself excluded). Forms understood, as the page explains:
``§3.5``, ``§3.2.7``, ``§3.5 step 6`` / ``§4.2 steps 1-3`` / ``§6.1 steps 4, 6, 7, 8`` (steps of a
section, headed ``§3.5.6`` ...), ``§9 item 2`` (= ``§9.2``), and ``Appendix A``.

Both directions are checked:

* every citation has a heading with that number;
* every heading is cited, or is an ancestor of a cited heading (a chapter), or is a numbered step
  of a cited section. Steps are allowed uncited so that a procedure reads whole, in order; any
  other uncited heading is stale text nobody relies on and should go.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reference-behaviour.md"

NUM = r"[0-9]+(?:\.[0-9]+)*"
CITE = re.compile(
    rf"§ ?(?P<num>{NUM})"
    r"(?:\s+(?P<kind>steps?|items?)\s+(?P<list>[0-9]+(?:\s*(?:[-–,]|and)\s*[0-9]+)*))?"
)
APPENDIX = re.compile(r"\bAppendix (?P<letter>[A-Z])\b")
HEADING = re.compile(rf"^#+ (?:§(?P<num>{NUM})|Appendix (?P<letter>[A-Z]))\b")


def _sources() -> list[Path]:
    files = [p for d in ("src", "tests", "benchmarks") if (ROOT / d).is_dir()
             for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts]
    files += [p for p in (ROOT / "docs").rglob("*.md") if p != DOC]
    files += [p for p in (ROOT / "README.md",) if p.exists()]
    return sorted(f for f in files if f.resolve() != Path(__file__).resolve())


def _expand(list_text: str) -> list[int]:
    """'1-3' -> [1, 2, 3]; '4, 6, 7, 8' -> [4, 6, 7, 8]; '2–3 and 6' -> [2, 3, 6]."""
    out: list[int] = []
    for part in re.split(r"\s*(?:,|and)\s*", list_text):
        bounds = re.split(r"\s*[-–]\s*", part.strip())
        lo, hi = int(bounds[0]), int(bounds[-1])
        out += range(lo, hi + 1)
    return out


def citations_in(text: str) -> set[str]:
    found: set[str] = set()
    for m in CITE.finditer(text):
        num = m.group("num")
        found.add(num)
        if m.group("list"):
            found.update(f"{num}.{k}" for k in _expand(m.group("list")))
    found.update(f"Appendix {m.group('letter')}" for m in APPENDIX.finditer(text))
    return found


def citations() -> dict[str, list[str]]:
    """Cited number -> files citing it."""
    cited: dict[str, list[str]] = {}
    for path in _sources():
        for num in citations_in(path.read_text(errors="replace")):
            cited.setdefault(num, []).append(str(path.relative_to(ROOT)))
    return cited


def headings() -> list[str]:
    out = []
    for line in DOC.read_text().splitlines():
        m = HEADING.match(line)
        if m:
            out.append(m.group("num") or f"Appendix {m.group('letter')}")
    return out


def test_every_citation_has_a_heading():
    have = set(headings())
    missing = {num: files for num, files in citations().items() if num not in have}
    assert not missing, "§ references without a heading in docs/reference-behaviour.md:\n  " + \
        "\n  ".join(f"§{n}: {', '.join(sorted(set(f)))}" for n, f in sorted(missing.items()))


def test_every_heading_is_used():
    cited = set(citations())
    stale = []
    for num in headings():
        if num in cited:
            continue
        if num.startswith("Appendix"):
            stale.append(num)
            continue
        is_ancestor = any(c.startswith(num + ".") for c in cited)
        parent = num.rsplit(".", 1)[0]
        is_step = num.count(".") == 2 and parent in cited
        if not (is_ancestor or is_step):
            stale.append(num)
    assert not stale, "headings of docs/reference-behaviour.md that nothing cites: " + \
        ", ".join(stale)


def test_headings_are_unique():
    seen = headings()
    assert len(seen) == len(set(seen)), sorted({h for h in seen if seen.count(h) > 1})


def test_citation_forms():
    assert citations_in("see §3.5 step 6 and §4.2 steps 1-3") == {
        "3.5", "3.5.6", "4.2", "4.2.1", "4.2.2", "4.2.3"}
    assert citations_in("(spec §3.5 steps 2–3 and 6, Appendix A)") == {
        "3.5", "3.5.2", "3.5.3", "3.5.6", "Appendix A"}
    assert citations_in("§6.1 steps 4, 6, 7, 8") == {"6.1", "6.1.4", "6.1.6", "6.1.7", "6.1.8"}
    assert citations_in("§9 item 2") == {"9", "9.2"}
    assert citations_in("§3.2.7 and § 1.5") == {"3.2.7", "1.5"}


def test_no_reference_points_outside_the_repository():
    """The behaviour notes cp3rt was written from are not in the repository; cite this page."""
    bad = [str(p.relative_to(ROOT)) for p in _sources()
           if "cellpose3-behaviour" in p.read_text(errors="replace")]
    assert not bad, bad
