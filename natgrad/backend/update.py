"""Writes into arrays natgrad owns: in place where the library allows, functionally on JAX."""

from __future__ import annotations

from typing import Any, Sequence

from ._namespaces import device, is_jax, namespace

__all__ = ["assign", "stack_padded"]


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


def stack_padded(arrays: Sequence[Any], rows: int, cols: int) -> Any:
    """Matrices of unequal shapes as one ``(len(arrays), rows, cols)`` stack, zero-padded.

    Parameters
    ----------
    arrays : sequence of arrays, each of shape (m_i, n_i)
        Non-empty, ``m_i ≤ rows`` and ``n_i ≤ cols``, of one library,
        device and dtype.
    rows, cols : int
        The stack's matrix shape.

    Returns
    -------
    array, shape (len(arrays), rows, cols)
        ``S[i, :m_i, :n_i] = arrays[i]``, zero elsewhere; in the arrays'
        library, dtype and device.  A new array: the inputs are not changed.

    Raises
    ------
    ValueError
        If ``arrays`` is empty or a matrix does not fit.

    Notes
    -----
    Zero padding leaves what batched products of the stack compute for
    each matrix unchanged (``SᵀS``, ``S Sᵀ``, norms, sums), so many small
    matrices of nearly one shape take one batched operation each instead
    of one per matrix.  Where arrays are writable the stack is allocated
    once and each matrix written into it (NumPy: about a microsecond per
    matrix); on JAX each is padded by concatenation and the pieces stacked.

    Examples
    --------
    >>> import numpy as np
    >>> S = stack_padded([np.ones((1, 2)), np.full((2, 1), 2.0)], 2, 2)
    >>> S.tolist()
    [[[1.0, 1.0], [0.0, 0.0]], [[2.0, 0.0], [2.0, 0.0]]]
    """
    if not arrays:
        raise ValueError("stack_padded needs at least one array")
    for A in arrays:
        if A.ndim != 2 or A.shape[0] > rows or A.shape[1] > cols:
            raise ValueError(f"every array must be a matrix of at most {rows} x {cols}, got shape {tuple(A.shape)}")
    first = arrays[0]
    xp = namespace(A=first)
    dev = device(first)
    if is_jax(xp):
        return xp.stack([_pad(xp, A, rows, cols) for A in arrays])
    S = xp.zeros((len(arrays), rows, cols), dtype=first.dtype, device=dev)
    for i, A in enumerate(arrays):
        S[i, :A.shape[0], :A.shape[1]] = A
    return S


def _pad(xp: Any, A: Any, rows: int, cols: int) -> Any:
    """``A`` zero-padded to ``rows × cols`` by concatenation."""
    m, n = A.shape
    if n < cols:
        A = xp.concat([A, xp.zeros((m, cols - n), dtype=A.dtype, device=device(A))], axis=1)
    if m < rows:
        A = xp.concat([A, xp.zeros((rows - m, cols), dtype=A.dtype, device=device(A))], axis=0)
    return A
