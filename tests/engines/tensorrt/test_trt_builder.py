"""build_plan against the fake TensorRT 10.x and 11.x: one code path, strongly typed, profiles,
timing cache, manifest, and every failure surfaced as one sentence."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cp3rt.manifest import EngineManifest, ShapeRange, sha256_file
from cp3rt.engines.tensorrt import BuildConfig, build_plan, parse_batch
from cp3rt.engines.tensorrt.builder import profile_shapes
from cp3rt.errors import BackendUnavailableError, ConfigError, ExportError


@pytest.mark.parametrize("version", ["10.9.0.34", "11.0.0"])
def test_fp16_build_is_strongly_typed_with_two_profiles(fake_trt, exports, tmp_path, version) -> None:  # noqa: ANN001
    state = fake_trt(version)
    result = build_plan(exports.fp16, tmp_path / "seg.plan", BuildConfig(precision="fp16"))
    (network,) = state.networks
    assert network.strongly_typed and network.has_fp16
    (config,) = state.configs
    assert not {f.name for f in config.flags} & {"FP16", "BF16", "INT8"}
    shapes = [p.shapes["image"] for p in config.profiles]
    assert shapes[0] == ((1, 2, 224, 224), (64, 2, 224, 224), (256, 2, 224, 224))
    assert shapes[1][0] == (1, 2, 32, 32) and shapes[1][2] == (256, 2, 224, 224)
    m = result.manifest
    assert (m.precision, m.tensorrt_version, m.compute_capability) == ("fp16", version, "9.0")
    assert m.gpu_name == "Fake NVIDIA H100 80GB HBM3"
    assert m.onnx_sha256 == sha256_file(exports.fp16)
    assert m.artefact_sha256 == sha256_file(result.plan_path) and result.plan_bytes > 0
    assert EngineManifest.read(result.manifest_path) == m
    assert result.timing_cache.is_file() and result.seconds >= 0


def test_a_release_without_the_strongly_typed_member_still_builds(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    fake_trt("11.2.0")
    trt = sys.modules["tensorrt"]
    trt.NetworkDefinitionCreationFlag = type("Flags", (), {})  # a future 11.x dropping the member
    assert build_plan(exports.fp16, tmp_path / "p.plan").manifest.tensorrt_version == "11.2.0"


def test_fp32_build_switches_tf32_off(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    state = fake_trt()
    build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32", optimization_level=5))
    (config,) = state.configs
    assert "TF32" not in {f.name for f in config.flags}
    assert config.builder_optimization_level == 5


def test_timing_cache_persists_between_builds(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    state = fake_trt()
    first = build_plan(exports.fp32, tmp_path / "a.plan", BuildConfig(precision="fp32"))
    assert state.timing_cache_hits == 0
    assert "trt10.9.0.34-sm90" in first.timing_cache.name  # one cache per TensorRT and GPU
    build_plan(exports.fp32, tmp_path / "b.plan", BuildConfig(precision="fp32"))
    assert state.timing_cache_hits == 1  # the second build read what the first one wrote
    shared = BuildConfig(precision="fp32", timing_cache=first.timing_cache)
    fake_trt("10.10.0")  # another TensorRT given the old file: refused, a fresh cache is used
    messages: list[str] = []
    build_plan(exports.fp32, tmp_path / "c.plan", shared, progress=messages.append)
    assert any("does not match this TensorRT/GPU" in m for m in messages)


def test_fixed_profile_only_when_the_range_is_one_shape() -> None:
    one = ShapeRange(1, 8, 16, (224, 224), (224, 224), (224, 224))
    assert profile_shapes(one, 1) == [((1, 1, 224, 224), (8, 1, 224, 224), (16, 1, 224, 224))]
    wide = ShapeRange(1, 8, 16, (32, 32), (224, 224), (224, 224))
    assert profile_shapes(wide, 2)[1][1] == (8, 2, 128, 128)


def test_precision_must_match_the_graph(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    fake_trt()
    with pytest.raises(ConfigError, match="needs the fp16 ONNX export.*export with --precision fp16"):
        build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp16"))


def test_parser_errors_are_surfaced(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    fake_trt()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    manifest = json.loads(Path(str(exports.fp32) + ".json").read_text())
    manifest["artefact_sha256"] = sha256_file(bad)
    Path(str(bad) + ".json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="cannot parse bad.onnx: ModelImporter.cpp.*Failed to parse"):
        build_plan(bad, tmp_path / "p.plan", BuildConfig(precision="fp32"))


def test_a_failed_build_surfaces_the_logged_errors(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    state = fake_trt()
    state.fail_build_with = "Error Code 2: Internal Error (out of GPU memory while timing)"
    with pytest.raises(ExportError, match="could not build a plan.*out of GPU memory while timing"):
        build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32"))
    assert not (tmp_path / "p.plan").exists()


def test_old_or_missing_tensorrt_and_no_gpu_refuse_in_one_sentence(fake_trt, exports, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    fake_trt("8.6.1")
    with pytest.raises(BackendUnavailableError, match=r"TensorRT 8\.6\.1 is installed but cp3rt needs TensorRT >= 10"):
        build_plan(exports.fp32, tmp_path / "p.plan")
    fake_trt(gpu=False)
    with pytest.raises(BackendUnavailableError, match="no NVIDIA GPU 0 is visible here"):
        build_plan(exports.fp32, tmp_path / "p.plan")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # what an absent package looks like
    with pytest.raises(BackendUnavailableError) as info:
        build_plan(exports.fp32, tmp_path / "p.plan")
    text = str(info.value)
    assert "'tensorrt' cannot be imported here" in text and text.count(". ") == 0 and "\n" not in text


def test_config_validation_names_field_value_and_range() -> None:
    assert parse_batch("1:32:128") == (1, 32, 128)
    for bad in ("1:2", "4:2:8", "0:1:2", "a:b:c"):
        with pytest.raises(ConfigError, match=f"batch={bad!r} is not allowed; give MIN:OPT:MAX"):
            parse_batch(bad)
    with pytest.raises(ConfigError, match="precision='int8' is not allowed"):
        BuildConfig(precision="int8")
    with pytest.raises(ConfigError, match="optimization_level=9 is not allowed; allowed: 0..5"):
        BuildConfig(optimization_level=9)
    with pytest.raises(ConfigError, match="tile height 30:224:224 is not allowed"):
        BuildConfig(shapes=ShapeRange(min_hw=(30, 32)))
