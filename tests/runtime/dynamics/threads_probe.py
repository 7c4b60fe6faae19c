"""Run the 2-D dynamics on several threads at once and compare with one at a time.

Started in a fresh interpreter by test_threads.py (so NUMBA_THREADING_LAYER applies); prints one
JSON line: the layer numba loaded, whether launches ran unlocked, and whether every thread's
labels and flows equal the serial ones.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth import ellipse_cells, net_outputs  # noqa: E402

from cp3rt.runtime.dynamics import compute_masks, masks_to_flows  # noqa: E402
from cp3rt.runtime.dynamics.threads import layer_is_threadsafe  # noqa: E402


def main(n_threads: int, rounds: int) -> None:
    cases = []
    for seed in range(n_threads):
        lab = ellipse_cells((160 + 16 * seed, 200), 60, seed=seed)
        cases.append((lab, *net_outputs(lab, seed=seed)))
    serial = [(compute_masks(dP, cp), masks_to_flows(lab)) for lab, dP, cp in cases]
    got: list = [None] * n_threads
    equal = True
    for _ in range(rounds):
        start = threading.Barrier(n_threads)

        def work(i: int) -> None:
            lab, dP, cp = cases[i]
            start.wait()  # launch together so the kernels overlap
            got[i] = (compute_masks(dP, cp), masks_to_flows(lab))

        pool = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        equal &= all(np.array_equal(g[0], s[0]) and np.array_equal(g[1], s[1]) for g, s in zip(got, serial))
    import numba

    print(json.dumps({"layer": numba.threading_layer(), "unlocked": layer_is_threadsafe(), "equal": bool(equal),
                      "objects": [int(s[0].max()) for s in serial]}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
