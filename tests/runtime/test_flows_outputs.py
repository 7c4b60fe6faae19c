"""``--save-flows`` follows Cellpose's file names (issue 14 item 5): ``_flows.tif`` is the RGB
flow picture (what ``cellpose.io.save_masks`` writes under that name, before its x65535 scaling
that overflows), ``_dP.tif`` the raw float32 (dY, dX) as Cellpose's, and the raw cell
probability goes to ``_cellprob.tif``; none of them is taken as an input on the next run."""

from __future__ import annotations

import numpy as np
import tifffile
from cellpose import plot as ref_plot
from scale_testutil import NumpyEngine, blob_image

from cp3rt import Pipeline
from cp3rt.runtime import OutputOptions, RunConfig
from cp3rt.runtime.batch.files import collect_inputs, run_batch

RUN = RunConfig(channels=(0, 0), diameter=20.0)


def test_save_flows_writes_cellpose_names_and_layouts(tmp_path):
    image, _ = blob_image((96, 96), 6, 0, radius=7)
    tifffile.imwrite(tmp_path / "a.tif", image)
    pipe = Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN)
    summary = run_batch(pipe, [tmp_path / "a.tif"], RUN, OutputOptions(save_flows=True))
    assert summary.ok, summary.outcomes[0].error
    result = pipe.run(image, run=RUN)

    picture = tifffile.imread(tmp_path / "a_flows.tif")
    assert picture.dtype == np.uint8 and picture.shape == (96, 96, 3)
    np.testing.assert_array_equal(picture, ref_plot.dx_to_circ(result.dP))
    dp = tifffile.imread(tmp_path / "a_dP.tif")
    assert dp.dtype == np.float32 and dp.shape == (2, 96, 96)
    np.testing.assert_allclose(dp, result.dP, rtol=0, atol=1e-6)
    prob = tifffile.imread(tmp_path / "a_cellprob.tif")
    assert prob.dtype == np.float32 and prob.shape == (96, 96)
    np.testing.assert_allclose(prob, result.cellprob, rtol=0, atol=1e-6)
    # The next run over the folder sees only the image.
    assert collect_inputs([tmp_path]) == [tmp_path / "a.tif"]
