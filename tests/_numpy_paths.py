"""The numpy code paths the phantom digests in the tests were recorded on."""
from __future__ import annotations

import os


def recording_cpu_env() -> dict:
    """The environment that makes NumPy use the code paths the digests were recorded with: its AVX-512
    kernels (found on some CPUs, not on the recording machine's) round a few values differently in the
    last bit, which changes the digests without changing the generator."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    off = [f for f in __cpu_dispatch__ if ("AVX512" in f or f == "X86_V4") and __cpu_features__.get(f)]
    env = dict(os.environ)
    if off:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(off)
    return env
