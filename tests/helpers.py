"""Conversions between NumPy float64 references and the backend under test."""

from __future__ import annotations

from typing import Any

import numpy as np


def dtype_of(xp: Any, name: str) -> Any:
    """The dtype called ``name`` ("float32", "float64") in namespace ``xp``."""
    return getattr(xp, name)


def from_numpy(xp: Any, a: Any, dtype: str | None = None) -> Any:
    """A NumPy array as an array of ``xp`` (float64 unless ``dtype`` says otherwise)."""
    a = np.asarray(a)
    if dtype is None:
        dtype = "float64" if a.dtype.kind == "f" else None
    if dtype is not None:
        a = a.astype(dtype)
    if xp.__name__.endswith("cupy"):
        return xp.asarray(a)
    return xp.asarray(a, dtype=dtype_of(xp, dtype) if dtype is not None else None)


def to_numpy(x: Any) -> np.ndarray:
    """Any backend's array as a NumPy array (copied to the host if needed)."""
    if hasattr(x, "get"):  # CuPy
        return x.get()
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def spd_matrix(n: int, cond: float, seed: int) -> np.ndarray:
    """Random symmetric positive definite matrix with condition number ``cond``
    (eigenvalues log-spaced in [1/cond, 1], random eigenvectors)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    w = np.logspace(-np.log10(cond), 0, n)
    return (Q * w) @ Q.T


def symmetric_matrix(eigenvalues: np.ndarray, seed: int) -> np.ndarray:
    """Random symmetric matrix with the given spectrum."""
    n = len(eigenvalues)
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.asarray(eigenvalues)) @ Q.T
