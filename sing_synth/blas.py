"""Matrix products cut into stretches small enough for OpenBLAS to stay on the calling thread."""

from __future__ import annotations

import numpy as np

BLAS_ONE_THREAD = 1 << 17  # multiply-adds per matrix product below which OpenBLAS uses one thread


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b``, in column stretches small enough for BLAS to stay on the calling thread
    (offline stretches are long: a BLAS thread pool would wake, spin and compete for the cores)."""
    cols = max(1, BLAS_ONE_THREAD // max(1, a.shape[0] * a.shape[1]))
    if b.shape[1] <= cols:
        np.matmul(a, b, out=out)
        return
    for j in range(0, b.shape[1], cols):
        np.matmul(a, b[:, j : j + cols], out=out[:, j : j + cols])
