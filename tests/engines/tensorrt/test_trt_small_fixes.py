"""The audit's smaller findings: errors of an earlier call never leak into a later message, a
corrupt timing-cache file is replaced with a warning, the plan cache tells GPU models apart, and
no extra installs a package cp3rt does not import."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from fake_cuda import DeviceProps

from cp3rt.engines.tensorrt import BuildConfig, PlanCache, TrtEngine, build_plan
from cp3rt.engines.tensorrt.builder import default_shapes
from cp3rt.errors import EngineError

ROOT = Path(__file__).resolve().parents[3]
SMALL = default_shapes((1, 2, 4))


def test_an_old_error_does_not_reappear_in_a_later_message(fake_trt, exports, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    fake_trt()
    plan = build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32", shapes=SMALL)).plan_path
    context = sys.modules["tensorrt"].IExecutionContext
    x = np.zeros((1, 2, 224, 224), np.float32)
    with TrtEngine(plan) as engine:
        monkeypatch.setattr(context, "execute_async_v3",
                            lambda self, stream: self._error("Error Code 1: Cuda Runtime (first failure)"))
        with pytest.raises(EngineError, match="first failure"):
            engine.infer(x)
        monkeypatch.setattr(context, "execute_async_v3", lambda self, stream: False)  # fails, logs nothing
        with pytest.raises(EngineError) as info:
            engine.infer(x)
        assert "first failure" not in str(info.value) and "no reason logged" in str(info.value)


def test_a_corrupt_timing_cache_is_replaced_with_a_warning(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    state = fake_trt()
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"\x00\x13garbage that is no timing cache")
    messages: list[str] = []
    config = BuildConfig(precision="fp32", shapes=SMALL, timing_cache=cache)
    result = build_plan(exports.fp32, tmp_path / "p.plan", config, progress=messages.append)
    assert result.plan_path.is_file() and state.builds == 1
    assert any(re.search(r"timing cache .*timing\.cache is unreadable.*starting a new one", m) for m in messages), messages
    build_plan(exports.fp32, tmp_path / "q.plan", config)  # the rewritten cache is a good one
    assert state.timing_cache_hits == 1


def test_the_plan_cache_tells_gpu_models_of_one_compute_capability_apart(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    h100 = DeviceProps(name=b"Fake NVIDIA H100 80GB HBM3")
    h200 = DeviceProps(name=b"Fake NVIDIA H200", totalGlobalMem=141 * 2**30)  # also sm 9.0
    state = fake_trt(devices=[h100, h200])
    cache = PlanCache(tmp_path / "plans")
    on0 = cache.get(exports.fp32, BuildConfig(precision="fp32", shapes=SMALL, device=0))
    on1 = cache.get(exports.fp32, BuildConfig(precision="fp32", shapes=SMALL, device=1))
    assert on1.built and state.builds == 2
    assert on0.plan_path.parent != on1.plan_path.parent
    assert on1.manifest.gpu_name == "Fake NVIDIA H200"


def test_no_extra_installs_a_package_cp3rt_never_imports() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    listed = " ".join(r for reqs in extras.values() for r in reqs)
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "cp3rt").rglob("*.py"))
    if "polygraphy" in listed:
        assert re.search(r"^\s*(import|from) polygraphy", source, re.M), "polygraphy is in an extra but never imported"
