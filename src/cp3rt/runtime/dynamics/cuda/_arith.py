"""Float products and sums that the CUDA compiler rounds exactly like the CPU kernels.

libNVVM contracts a multiply followed by an add into one FMA by default (numba-cuda has no
switch to turn that off short of fastmath), and an FMA rounds once where the CPU rounds twice,
so the Euler step and the heat diffusion would drift from the CPU kernels by an ulp here and
there. PTX ``mul.rn`` / ``add.rn`` (libdevice ``__nv_dmul_rn`` ...) are never contracted.
The simulator has no libdevice; there the same operations are numpy scalar arithmetic, which
is IEEE with one rounding per operation too.
"""

from __future__ import annotations

import numpy as np

from cp3rt.runtime.dynamics.cuda._env import simulator_enabled

if simulator_enabled():

    def mul64(a, b):
        return np.float64(a) * np.float64(b)

    def add64(a, b):
        return np.float64(a) + np.float64(b)

    def mul32(a, b):
        return np.float32(a) * np.float32(b)

else:
    from numba.cuda import libdevice

    mul64 = libdevice.dmul_rn
    add64 = libdevice.dadd_rn
    mul32 = libdevice.fmul_rn
