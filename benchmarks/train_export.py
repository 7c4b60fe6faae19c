"""Export a trained weight file to the shipped form: ONNX with fp16-stored weights, fp32 compute.

    python benchmarks/train_export.py WEIGHTS --out src/cp3rt/assets/models --name cp3rt_nuclei

Steps: ``cp3rt.export.to_onnx.export_onnx`` (fp32 graph, verified against the torch net), then
every float32 initializer is stored as float16 followed by a Cast back to float32 (and a style
output narrower than 256 is zero-padded, see pad_style). onnxruntime
folds those casts when it opens the session, so the graph computes in fp32 exactly as the fp32
export would with weights rounded to fp16 — at half the file size. The manifest is rewritten
with the new file's sha256 (precision stays "fp32": it describes the compute). The script
prints the largest output difference between the two graphs on random tiles.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cp3rt._fs import atomic_write_bytes
from cp3rt.export.to_onnx import export_onnx
from cp3rt.manifest import EngineManifest, manifest_path_for
from cp3rt.models.weights import read_weight_file

MIN_ELEMENTS = 16  # tiny tensors (BN scalars etc.) are not worth a Cast node
RUNTIME_STYLE_DIM = 256  # cp3rt.runtime.tiles.infer expects (B, 256) styles (defaults.STYLE_DIM)


def pad_style(model: onnx.ModelProto, dim: int = RUNTIME_STYLE_DIM) -> tuple[onnx.ModelProto, int]:
    """Zero-pad a narrower ``style`` output to ``dim`` columns; returns (model, original dim).

    Reduced-width nets have style vectors of nbase[-1] < 256 values, but the runtime's tiling
    checks for 256. Zero columns leave the vector's norm and every other output unchanged; the
    style is not used by the flows. Nothing is done for standard-width nets.
    """
    graph = model.graph
    out = next((o for o in graph.output if o.name == "style"), None)
    if out is None:
        return model, 0
    width = out.type.tensor_type.shape.dim[1].dim_value
    if width == dim or width == 0:
        return model, width
    for node in graph.node:  # the decoder reads the style too: rename it everywhere
        node.output[:] = ["style_unpadded" if o == "style" else o for o in node.output]
        node.input[:] = ["style_unpadded" if i == "style" else i for i in node.input]
    pads = numpy_helper.from_array(np.array([0, 0, 0, dim - width], np.int64), "style_pads")
    graph.initializer.append(pads)
    graph.node.append(helper.make_node("Pad", ["style_unpadded", "style_pads"], ["style"],
                                       mode="constant", name="style_pad"))
    out.type.tensor_type.shape.dim[1].dim_value = dim
    onnx.checker.check_model(model)
    return model, width


def fp16_storage(model: onnx.ModelProto) -> onnx.ModelProto:
    """Store large float32 initializers as float16 + Cast(to float32)."""
    graph = model.graph
    keep, casts = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.data_type != TensorProto.FLOAT or arr.size < MIN_ELEMENTS:
            keep.append(init)
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), name=init.name + "__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__cast"))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)  # casts first: the graph stays topologically sorted
    onnx.checker.check_model(model)
    return model


def max_difference(a: Path, b: Path, nchan: int) -> dict[str, float]:
    import onnxruntime as ort

    sa = ort.InferenceSession(str(a), providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(str(b), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, nchan, 96, 128)).astype(np.float32)
    out_a = sa.run(None, {"image": x})
    out_b = sb.run(None, {"image": x})
    names = [o.name for o in sa.get_outputs()]
    return {n: float(np.max(np.abs(p - q[:, : p.shape[1]]))) for n, p, q in zip(names, out_a, out_b)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--fp32-copy", type=Path,
                    help="also write the plain fp32 graph (style padded) here, for comparisons")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # The trainer stores the diameters it trained at; pass them explicitly, because the
        # export's defaults follow the reference's DenoiseModel, which never reads diam_mean
        # from a restoration file (it would use 30 for a nuclei denoiser trained at 17).
        wf = read_weight_file(args.weights)
        res = export_onnx(args.weights, tmp, precision="fp32", name=f"{args.name}.onnx",
                          source_model=args.name, diam_mean=wf.diam_mean,
                          diam_labels=wf.diam_labels,
                          # unfolded BatchNorms: cp3rt.export.from_onnx recovers the weight file
                          # from the shipped graph (GPU checks, int8, fine-tuning); onnxruntime
                          # fuses Conv+BN itself when it opens the session.
                          fold_bn=False)
        model, style_width = pad_style(fp16_storage(onnx.load(str(res.onnx_path))))
        data = model.SerializeToString()
        final = args.out / f"{args.name}.onnx"
        atomic_write_bytes(final, data)
        manifest = dataclasses.replace(res.manifest, artefact_sha256=hashlib.sha256(data).hexdigest())
        manifest.write(manifest_path_for(final))
        diff = max_difference(res.onnx_path, final, res.manifest.nchan)
        if args.fp32_copy is not None:
            plain, _ = pad_style(onnx.load(str(res.onnx_path)))
            raw = plain.SerializeToString()
            atomic_write_bytes(args.fp32_copy / final.name, raw)
            dataclasses.replace(res.manifest, artefact_sha256=hashlib.sha256(raw).hexdigest()
                                ).write(manifest_path_for(args.fp32_copy / final.name))
    print(f"wrote {final} ({len(data) / 1e6:.2f} MB) and {manifest_path_for(final).name}")
    print(f"torch vs fp32 export max abs error: {res.max_abs_error}")
    if style_width:
        print(f"style output: {style_width} values, zero-padded to {RUNTIME_STYLE_DIM} if fewer")
    print(f"fp32 export vs fp16-stored weights max abs difference: {diff}")
    EngineManifest.read(manifest_path_for(final))  # the written manifest reads back


if __name__ == "__main__":
    main()
