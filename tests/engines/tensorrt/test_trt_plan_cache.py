"""PlanCache: keyed by what makes a plan valid, rebuilt when corrupted, and safe when two real
processes build the same key at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from trt_fixtures import FAKES

from cp3rt.engines.tensorrt import BuildConfig, PlanCache, TrtEngine
from cp3rt.manifest import ShapeRange
from cp3rt.errors import IncompatibleEngineError


def test_built_once_then_found(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    state = fake_trt()
    cache = PlanCache(tmp_path / "plans")
    first = cache.get(exports.fp16)
    again = cache.get(exports.fp16)
    assert first.built and not again.built and state.builds == 1
    assert again.plan_path == first.plan_path and first.plan_path.parent.name == first.manifest.cache_key()
    with TrtEngine(again.plan_path) as engine:
        assert engine.manifest == first.manifest


def test_key_covers_precision_shapes_tensorrt_and_gpu(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    root = tmp_path / "plans"
    fake_trt()
    folders = {PlanCache(root).get(exports.fp16).plan_path.parent,
               PlanCache(root).get(exports.fp32, BuildConfig(precision="fp32")).plan_path.parent,
               PlanCache(root).get(exports.fp16, BuildConfig(shapes=ShapeRange(1, 8, 32))).plan_path.parent}
    fake_trt("11.0.0")
    folders.add(PlanCache(root).get(exports.fp16).plan_path.parent)
    fake_trt(cc=(8, 9))
    folders.add(PlanCache(root).get(exports.fp16).plan_path.parent)
    assert len(folders) == 5


def test_corrupted_plan_is_rebuilt(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    state = fake_trt()
    cache = PlanCache(tmp_path / "plans")
    plan = cache.get(exports.fp16).plan_path
    plan.write_bytes(plan.read_bytes()[:-100])
    entry = cache.get(exports.fp16)
    assert entry.built and "corrupted" in entry.reason and state.builds == 2
    TrtEngine(entry.plan_path).close()


def test_no_build_allowed_says_how_to_build(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    fake_trt()
    with pytest.raises(IncompatibleEngineError) as info:
        PlanCache(tmp_path / "plans").get(exports.fp16, build=False)
    assert str(info.value).endswith(f"build it with: cp3rt build {exports.fp16.resolve()} --precision fp16 "
                                    "--batch 1:64:256")


def test_a_failed_build_leaves_nothing_that_looks_finished(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    state = fake_trt()
    state.fail_build_with = "Error Code 2: Internal Error (boom)"
    root = tmp_path / "plans"
    with pytest.raises(Exception, match="boom"):
        PlanCache(root).get(exports.fp16)
    assert [p for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_two_processes_building_the_same_key_build_once(exports, tmp_path) -> None:  # noqa: ANN001
    root = tmp_path / "plans"
    cmd = [sys.executable, str(FAKES / "plan_cache_worker.py"), str(exports.fp16), str(root), "fp16", "2.5"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, True]
    assert sum(r["builds"] for r in results) == 1
    assert results[0]["plan"] == results[1]["plan"]
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert Path(results[0]["plan"]).is_file()
