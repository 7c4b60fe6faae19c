"""The environment fingerprint and the Markdown table of ``bench_cpu_speed.py``."""

from __future__ import annotations

import os
import platform

GOAL_VS_DEFAULT, GOAL_VS_REFERENCE, GOAL_AP50, GOAL_AP75 = 2.0, 3.0, 0.98, 0.95


def fingerprint() -> dict:
    from cp3rt.engines.probe import cpu_model, package_version

    return {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "python": platform.python_version(),
        **{p: package_version(p) for p in ("numpy", "numba", "onnxruntime", "openvino", "torch", "cellpose", "cp3rt")},
        "platform": platform.platform(), "loadavg_1_5_15_at_end": list(os.getloadavg()),
    }


def _row(name: str, c: dict, base: float | None, ref: float | None, cpu_base: float | None,
         cpu_refv: float | None) -> str:
    loads = [x.get("load1_before") for x in c["runs"] if "load1_before" in x]
    if "median_s" not in c:
        return f"| {name} | failed: {c['runs'][-1].get('error', '?')} | | | | | | | | | |"
    m = c["masks"]
    vs_def = f"{base / c['median_s']:.2f}x" if base else "-"
    vs_ref = f"{ref / c['median_s']:.2f}x" if ref else "-"
    cpu_def = f"{cpu_base / c['median_cpu_s']:.2f}x" if cpu_base else "-"
    cpu_ref = f"{cpu_refv / c['median_cpu_s']:.2f}x" if cpu_refv else "-"
    return (f"| {name} | {c['median_s']:.2f} | {c['min_s']:.2f}-{c['max_s']:.2f} | {vs_def} | {vs_ref} | "
            f"{c['median_cpu_s']:.1f} | {cpu_def} | {cpu_ref} | "
            f"{m['ap50']:.3f} / {m['ap75']:.3f} | {m['objects']} | {', '.join(f'{v:.1f}' for v in loads)} |")


def _profile_rows(profiles: dict) -> list[str]:
    stages = sorted({s for p in profiles.values() if "stages" in p for s in p["stages"]},
                    key=["read", "normalize", "restore", "segment", "dynamics", "write"].index)
    lines = ["| configuration | " + " | ".join(f"{s} s (cores)" for s in stages) + " | all (cores) |",
             "|---|" + "---|" * (len(stages) + 1)]
    for name, p in profiles.items():
        if "stages" not in p:
            lines.append(f"| {name} | failed: {p.get('error')} |")
            continue
        cells = []
        for s in stages:
            v = p["stages"].get(s)
            cells.append(f"{v['wall_s']:.2f} ({v['cpu_s'] / v['wall_s']:.2f})" if v and v["wall_s"] > 0 else "-")
        t = p["total"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {t['wall']:.2f} ({t['cpu'] / t['wall']:.2f}) |")
    return lines


def _verdict(r: dict, default: str, reference: str) -> list[str]:
    c = r["configs"]
    base, ref = c.get(default, {}).get("median_s"), c.get(reference, {}).get("median_s")
    accurate = [(n, v) for n, v in c.items() if n not in (default, reference) and "median_s" in v
                and v["masks"]["ap50"] >= GOAL_AP50 and v["masks"]["ap75"] >= GOAL_AP75]
    if not accurate or not base:
        return ["- no configuration other than the default has masks within the bar."]
    name, best = min(accurate, key=lambda kv: kv[1]["median_s"])
    s_def, s_ref = base / best["median_s"], (ref / best["median_s"] if ref else float("nan"))
    met = s_def >= GOAL_VS_DEFAULT and s_ref >= GOAL_VS_REFERENCE
    return [f"- best accurate configuration (AP@0.5 >= {GOAL_AP50}, AP@0.75 >= {GOAL_AP75} vs the default's "
            f"masks): **{name}**, {s_def:.2f}x cp3rt's default and {s_ref:.2f}x the reference "
            f"(goal {GOAL_VS_DEFAULT:g}x and {GOAL_VS_REFERENCE:g}x): goal **{'met' if met else 'not met'}** in this run."]


def markdown(r: dict, default: str, reference: str) -> str:
    env = r["environment"]
    c = r["configs"]
    base, ref = c.get(default, {}).get("median_s"), c.get(reference, {}).get("median_s")
    n = len(r["images"])
    lines = [
        "# CPU speed: restore -> segment on a folder of real 1024² images, every configuration in one run",
        "",
        f"- date: {r['date']}; command: `python benchmarks/bench_cpu_speed.py --prepare && python benchmarks/bench_cpu_speed.py`",
        f"- images (measured): {n} x ctc_gowt1_nuclei {', '.join(r['images'])} (1024 x 1024), diameter {r['diameter']:g}, "
        f"gray; int8 calibrated on {', '.join(r['calibration_images'])} (not measured)",
        "- nets: the trained starters cp3rt_denoise_nuclei -> cp3rt_nuclei at Cellpose width (zero extra channels: "
        "the same function, the real nets' arithmetic) under zoo names denoise_nuclei / nuclei, the same weight "
        "files for cp3rt and the reference",
        f"- protocol: {r['rounds']} rounds, configurations alternating (reversed every other round), each run its "
        "own process: 1 untimed image, then the folder timed (nets opened inside the timed call, outputs "
        "written). Ratios are of medians from this run. See the script docstring.",
        f"- machine: {env['cpu']}, {env['logical_cores']} logical cores, shared with other jobs while measured "
        f"(1-min load average before each run in the last column; at the end {env['loadavg_1_5_15_at_end']}); "
        f"python {env['python']}, numpy {env['numpy']}, numba {env['numba']}, onnxruntime {env['onnxruntime']}, "
        f"openvino {env['openvino']}, torch {env['torch']}, cellpose {env['cellpose']}",
        "",
        f"| configuration | median s / folder of {n} | min-max s | vs cp3rt default | vs reference | "
        "CPU s | CPU vs default | CPU vs reference | AP@0.5 / AP@0.75 vs default masks | objects | load before each run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[_row(name, v, base, ref, c.get(default, {}).get("median_cpu_s"), c.get(reference, {}).get("median_cpu_s"))
          for name, v in c.items()],
        "",
        *_verdict(r, default, reference),
        "",
        "## Core use per stage (images one at a time through Pipeline.run; cores = CPU s / wall s)",
        "",
        *_profile_rows(r.get("profiles", {})),
        "",
    ]
    return "\n".join(lines)
