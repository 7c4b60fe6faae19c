"""The torch-free promise: importing the runtime and running the light CLI commands must not load
torch, tensorrt, the reference cellpose package or cp3rt's torch-side code.

Each scenario runs in a fresh interpreter (this test process itself has torch loaded).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("torch", "tensorrt", "cellpose", "cp3rt.models")

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
