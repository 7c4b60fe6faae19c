"""Run PlanCache.get in a separate process against the fake TensorRT (for the race test).

Usage: python plan_cache_worker.py ONNX CACHE_ROOT PRECISION BUILD_DELAY_S
Prints one JSON line: {"built": bool, "plan": str, "builds": int}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_tensorrt  # noqa: E402


def main() -> None:
    onnx, root, precision, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    state = fake_tensorrt.FakeTrtState(build_delay=delay)
    fake_tensorrt.install(None, state)
    from cp3rt.engines.tensorrt import BuildConfig, PlanCache

    entry = PlanCache(root).get(onnx, BuildConfig(precision=precision))
    print(json.dumps({"built": entry.built, "plan": str(entry.plan_path), "builds": state.builds}))


if __name__ == "__main__":
    main()
