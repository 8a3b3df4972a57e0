"""Let numpy's OpenBLAS use its AVX-512 kernels on AMD CPUs that have AVX-512 (Zen 4, Zen 5).

OpenBLAS (in numpy's wheels) maps those CPUs to its AVX2 "Haswell" kernels, and torch's MKL takes
its AVX2 path on AMD too. The AVX-512 "SkylakeX" kernels compute the same products about twice as
fast there (measured: 423 vs 218 GFLOP/s in float32 on a 2-core Zen 5), and the toolkit's CPU
distance tiles use numpy's BLAS (hubness.distances.sq_dist_tile).

OpenBLAS reads ``OPENBLAS_CORETYPE`` once, when numpy is first imported, so the scripts call
:func:`prefer_avx512_blas` before anything imports numpy. A value the user set is never changed.
This module imports nothing heavy.
"""
import os
import sys

_AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


def prefer_avx512_blas() -> bool:
    """Set OPENBLAS_CORETYPE=SkylakeX on an AMD CPU with AVX-512, if nothing chose before. Returns
    whether it did."""
    if "OPENBLAS_CORETYPE" in os.environ or "numpy" in sys.modules:
        return False
    try:
        with open("/proc/cpuinfo") as handle:
            info = handle.read(1 << 16)
    except OSError:
        return False
    vendor = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("vendor_id")), "")
    flags = next((set(line.split(":", 1)[1].split()) for line in info.splitlines() if line.startswith("flags")), set())
    if vendor == "AuthenticAMD" and _AVX512 <= flags:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
        return True
    return False
