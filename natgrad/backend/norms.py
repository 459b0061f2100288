"""Norms that neither overflow nor underflow in their squares."""

from __future__ import annotations

from typing import Any

__all__ = ["scaled_norm"]


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
