"""Writes into arrays natgrad owns: in place where the library allows, functionally on JAX."""

from __future__ import annotations

from typing import Any

from ._namespaces import is_jax, namespace

__all__ = ["assign"]


def assign(A: Any, index: Any, value: Any) -> Any:
    """``A`` with ``A[index] = value``: in place where the array library
    allows it, a new array on JAX.

    For work buffers an algorithm allocates itself (never a caller's input:
    on every library but JAX the write changes ``A``).  Use the returned
    array, not ``A``, afterwards.

    Parameters
    ----------
    A : array
        The buffer, of any supported library.
    index : int, slice or tuple of them
        Basic indexing, as the array API standard's ``__setitem__`` takes.
    value : array or scalar
        Broadcastable to ``A[index]``, of ``A``'s library and device.

    Returns
    -------
    array
        ``A`` itself after the write (NumPy, CuPy, PyTorch, dask,
        array_api_strict), or ``A.at[index].set(value)`` (JAX, whose arrays
        are immutable).

    Raises
    ------
    TypeError
        If ``A`` is not an array of a supported library.
    IndexError, ValueError
        Whatever the library raises for an index out of range or a value
        that does not broadcast.

    Notes
    -----
    A growing factor (ACA's crosses, a Krylov basis) written column by
    column into a preallocated buffer costs ``O(m)`` per column; rebuilding
    it by concatenation costs ``O(m k)`` for the ``k``-th column, ``O(m k²)``
    in all.  On JAX ``at[].set`` copies eagerly, as concatenation would, and
    under ``jax.jit`` it becomes an in-place update.

    Examples
    --------
    >>> import numpy as np
    >>> U = np.zeros((3, 2))
    >>> U = assign(U, (slice(None), 1), np.arange(3.0))
    >>> U.tolist()
    [[0.0, 0.0], [0.0, 1.0], [0.0, 2.0]]
    """
    xp = namespace(A=A, allow_traced=True)
    if is_jax(xp):
        return A.at[index].set(value)
    A[index] = value
    return A
