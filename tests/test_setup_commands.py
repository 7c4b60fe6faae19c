"""CI runs the README's test command, and that command installs the pinned test environment."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints" / "test.txt"


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version.strip(), f"not an exact pin: {line!r}"
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_ci_runs_the_readme_test_command_with_the_constraints() -> None:
    command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme_lines = (ROOT / "README.md").read_text().splitlines()
    assert readme_lines.count(command) == 1, "the README's test command and .ci/run differ"
    # Both installs (cp3rt's extras and the --no-deps reference) go through the constraints.
    assert command.count("pip install") == 2
    assert command.count("-c constraints/test.txt") == 2


def test_constraints_pin_the_reference_on_opencv_4() -> None:
    pins = _pins()
    assert pins["cellpose"] == "3.1.1.2"
    # cp3rt's resize is bit-exact against OpenCV 4 only (docs/deviations.md).
    assert pins["opencv-python-headless"].startswith("4.")
    # A bare torch would be a multi-GB CUDA build; pyproject pins the local CPU wheel's version.
    assert pins["torch"] == "2.13.0"
