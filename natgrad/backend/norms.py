"""Norms that neither overflow nor underflow in their squares, and inner products."""

from __future__ import annotations

from typing import Any

from .lazy import is_lazy

__all__ = ["scaled_norm", "vecdot"]


def vecdot(xp: Any, a: Any, b: Any, *, axis: int = -1) -> Any:
    """``Σᵢ conj(aᵢ) bᵢ`` along ``axis``: the standard's ``vecdot``, built for dask as a sum of products.

    Parameters
    ----------
    xp : namespace
        The array namespace of ``a`` and ``b``.
    a, b : array
        Broadcastable arrays of one namespace.
    axis : int, default -1
        The contracted axis; negative (the standard guarantees only those).

    Returns
    -------
    array
        ``a``'s shape without ``axis``, in the namespace of the inputs (no
        host synchronisation).

    Raises
    ------
    TypeError, ValueError
        Whatever the namespace raises for inputs that are not its arrays or
        whose shapes do not broadcast (the arguments are not validated here:
        this runs inside solver loops).

    Notes
    -----
    On dask, array-api-compat's ``vecdot`` builds about twice the task-graph
    layers of ``sum(conj(a) * b)``, and building the graph is most of a
    distributed Krylov iteration (``benchmarks/results/dask.md``); every
    other namespace gets its own ``vecdot``.

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> float(vecdot(xp, xp.asarray([1.0, 2.0]), xp.asarray([3.0, 4.0])))
    11.0
    """
    if is_lazy(a):
        return xp.sum((xp.conj(a) if xp.isdtype(a.dtype, "complex floating") else a) * b, axis=axis)
    return xp.vecdot(a, b, axis=axis)


def scaled_norm(xp: Any, x: Any) -> Any:
    """``‖x‖₂`` of all entries, computed as ``m ‖x / m‖₂`` with ``m = max|xᵢ|``.

    Parameters
    ----------
    xp : namespace
        The array namespace of ``x``.
    x : array
        Any shape; every entry counts.

    Returns
    -------
    array, shape ()
        The 2-norm as a 0-d array of ``x``'s namespace and dtype (no host
        synchronisation).  NaN or Inf in ``x`` give NaN or Inf, without a
        warning; ``x = 0`` gives 0.

    Raises
    ------
    TypeError
        Or whatever ``xp`` raises for an ``x`` that is not one of its arrays
        (natgrad calls it on arrays it has already checked).

    Notes
    -----
    ``Σ xᵢ²`` overflows for entries beyond ``√max`` (``1e154`` in float64,
    ``1.8e19`` in float32) and underflows to zero below ``√tiny``, although
    the norm itself is representable; dividing by ``m`` first puts every
    entry in ``[-1, 1]`` (LAPACK's ``xNRM2`` scales for the same reason:
    Anderson, *Algorithm 978: Safe scaling in the Level 1 BLAS*, ACM TOMS 44,
    2017).  ``m`` is replaced by 1 when it is 0 or not finite, so the result
    carries the NaN or Inf through.

    Examples
    --------
    >>> import numpy as np
    >>> float(scaled_norm(np, np.array([3e200, 4e200])))  # Σ xᵢ² would be inf
    5e+200
    >>> float(scaled_norm(np, np.array([3e-200, 4e-200])))  # ... and 0 here
    5e-200
    >>> float(scaled_norm(np, np.array([1.0, np.nan])))
    nan
    """
    m = xp.max(xp.abs(x))
    scale = xp.where(xp.isfinite(m) & (m > 0), m, xp.ones_like(m))
    return scale * xp.linalg.vector_norm(x / scale)
