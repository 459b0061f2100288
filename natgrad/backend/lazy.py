"""Lazy arrays (dask): persisting iterates, and the dense linear algebra and
random numbers of :mod:`natgrad.backend` on dask arrays.

A dask array is a task graph, not data: every host synchronisation
(:func:`~natgrad.backend.to_float`, ...) computes the whole graph behind the
value it reads.  An iterative solver that only ever builds on its previous
iterate would therefore pay for iteration 1 again at iteration 2, 3, ... and
its cost would grow quadratically.  :func:`persist` cuts the graph: it
computes the given arrays (in the workers' memory on a
``dask.distributed`` cluster, in the client's on the local schedulers) and
returns arrays whose graphs start there.  The solvers call it at their sync
points, every :func:`~natgrad.backend.sync_interval` iterations, so an
iteration costs the same at iteration 5 and 500.

The other functions here are the dask branches of :mod:`natgrad.backend`'s
dispatchers (:func:`~natgrad.backend.cholesky`, ...); callers use those, not
these.  What cannot run distributed and is small (the ``k × k``
eigenproblems of Nyström and Lanczos) runs on the client; what cannot run
distributed and is large raises :class:`DistributedUnsupportedError` instead
of silently gathering the data on one machine.

Examples
--------
>>> import numpy as np
>>> persist(np.ones(2))  # eager arrays pass through unchanged
array([1., 1.])
"""

from __future__ import annotations

from typing import Any

__all__ = ["DistributedUnsupportedError", "CLIENT_MAX_SIZE", "is_lazy", "persist", "require_eager"]

#: Largest matrix dimension natgrad gathers on the client for an operation
#: dask cannot distribute (``eigh``): a 4096 × 4096 float64 matrix is 134 MB.
CLIENT_MAX_SIZE = 4096


class DistributedUnsupportedError(NotImplementedError):
    """An operation on dask arrays that dask cannot run distributed, asked of
    an array too large to gather on the client.

    natgrad never gathers a large distributed array on one machine behind the
    caller's back: that is where a scale-out computation runs out of memory.
    The message names the operation, the shape and what to do instead.

    Notes
    -----
    A subclass of ``NotImplementedError``: the operation exists for eager
    arrays and is missing only for distributed ones.  What dask lacks and
    natgrad runs on the client for small matrices: ``eigh`` (up to
    :data:`CLIENT_MAX_SIZE` rows); QR needs all columns of a tall matrix in
    one chunk and the SVD one side of at most :data:`CLIENT_MAX_SIZE`, as
    dask's TSQR does.

    Examples
    --------
    >>> issubclass(DistributedUnsupportedError, NotImplementedError)
    True
    """


def is_lazy(x: Any) -> bool:
    """True for a dask array (a lazy task graph rather than data).

    Parameters
    ----------
    x : object
        Anything; only its type is read.

    Returns
    -------
    bool
        ``True`` for ``dask.array.Array``; ``False`` for eager arrays, scalars
        and other objects.

    Notes
    -----
    The test reads the type's module name, so it never imports dask and
    never computes anything; :func:`~natgrad.backend.is_dask` asks the same
    of a namespace.

    Examples
    --------
    >>> import numpy as np
    >>> is_lazy(np.ones(2)), is_lazy(2.0)
    (False, False)
    """
    return type(x).__module__.startswith("dask.array")


def persist(*arrays: Any) -> Any:
    """Compute dask arrays now and keep them (in the workers' memory on a
    cluster), so later computations start from the result instead of
    recomputing its graph.

    Parameters
    ----------
    *arrays : arrays or None
        Any arrays; only dask arrays are persisted, everything else
        (eager arrays, scalars, ``None``) is returned unchanged.

    Returns
    -------
    array or tuple of arrays
        One argument gives one result, several a tuple in the same order.
        The dask arrays among them are computed in one ``dask.persist`` call,
        so the parts of their graphs they share are computed once.

    Raises
    ------
    Exception
        Whatever a task of the graphs raised while computing (dask re-raises
        it here, on the client); a dask scheduler error when a worker died.

    Notes
    -----
    The call blocks until the values are computed (on a ``dask.distributed``
    client it waits for the workers; see ``_wait`` for why).  The returned
    arrays' graphs
    have one task per chunk, so the cost of what is built on them no longer
    depends on how long the chain of operations before them was.  Eager
    arrays make this a no-op, so solvers call it unconditionally at their
    sync points.

    Examples
    --------
    >>> import numpy as np
    >>> a, b = persist(np.ones(2), None)
    >>> a.shape, b
    ((2,), None)
    """
    lazy = [i for i, a in enumerate(arrays) if is_lazy(a)]
    if not lazy:
        return arrays[0] if len(arrays) == 1 else arrays
    import dask

    done = dask.persist(*(arrays[i] for i in lazy))
    _wait(done)
    out = list(arrays)
    for i, value in zip(lazy, done):
        out[i] = value
    return out[0] if len(out) == 1 else tuple(out)


def _wait(collections: Any) -> None:
    """Block until persisted collections are computed on a distributed cluster.

    Without the wait, the next graph (a convergence check, the next
    iterations) would be submitted while this one runs.  dask names a task
    after its expression, and two graphs in flight that recompute the same
    small expression (a norm, a tolerance) fused in different ways give the
    scheduler one key with two definitions: it warns, and the later
    computation can fail with "lost dependencies" (dask issue 9888).  A
    solver reads a value right after persisting anyway, so the wait costs
    nothing.
    """
    try:
        from distributed import futures_of, wait
    except ImportError:  # no distributed: the local schedulers persist eagerly
        return
    futures = futures_of(collections)
    if futures:
        wait(futures)


def require_eager(x: Any, argument: str, operation: str, reason: str) -> None:
    """Refuse a dask array where an operation cannot run distributed.

    Parameters
    ----------
    x : array or None
        The argument to check; anything but a dask array passes.
    argument : str
        Its name, for the message.
    operation : str
        What was asked (``"HMatrix.from_kernel"``).
    reason : str
        Why it cannot run on a cluster, for the message.

    Returns
    -------
    None
        When ``x`` is not a dask array.

    Raises
    ------
    DistributedUnsupportedError
        If ``x`` is a dask array.  The message names the argument and the
        operation, says why, and that ``x.compute()`` (or
        :func:`~natgrad.backend.to_namespace`) gives the NumPy array to use
        when it fits in memory: natgrad does not gather it silently.

    Notes
    -----
    Only the type is read (:func:`is_lazy`): nothing is computed.

    Examples
    --------
    >>> import numpy as np
    >>> require_eager(np.ones(3), "points", "HMatrix.from_kernel", "")  # passes
    """
    if is_lazy(x):
        raise DistributedUnsupportedError(
            f"{argument} is a dask array, and {operation} does not run on dask: {reason} "
            f"If it fits in memory, pass {argument}.compute() (a NumPy array); natgrad "
            "never gathers a distributed array on the client silently."
        )


# --------------------------------------------------------------------------
# dask branches of the dense dispatchers (called from ``dense.py``)
# --------------------------------------------------------------------------


def _square_chunks(A: Any) -> Any:
    """``A`` rechunked to square chunks, as dask's Cholesky and triangular
    solves require (the row chunking of ``A``, or one chunk when ``A`` is
    chunked only along its columns)."""
    size = max(A.chunks[0])
    if A.chunks[0] == A.chunks[1] and all(c == size for c in A.chunks[0][:-1]):
        return A
    return A.rechunk((size, size))


def cholesky(A: Any, *, lower: bool) -> Any:
    """Blocked Cholesky by ``dask.array.linalg.cholesky``, persisted and
    checked for breakdown (NumPy's ``LinAlgError`` or a non-finite factor)."""
    import dask.array as da
    import numpy

    from .sync import all_finite

    A = _square_chunks(A)
    try:
        # dask's own routine, asked for the triangle explicitly: array-api-
        # compat's wrapper returns the upper factor for upper=False.
        L = persist(da.linalg.cholesky(A, lower=lower))
        finite = all_finite(L)
    except (numpy.linalg.LinAlgError, ValueError) as err:
        # A block's Cholesky broke down (LinAlgError), or the NaN it left
        # reached SciPy's finiteness check in a later block's triangular
        # solve (ValueError): either way, the factorisation failed.
        raise _cholesky_error(f"Cholesky factorisation failed: {err}") from None
    if not finite:
        raise _cholesky_error(
            "Cholesky factorisation failed: the matrix is not numerically positive definite"
        )
    return L


def _cholesky_error(message: str) -> Exception:
    from .dense import CholeskyError

    return CholeskyError(message)


def solve_triangular(T: Any, b: Any, *, lower: bool, trans: bool) -> Any:
    """``dask.array.linalg.solve_triangular`` with ``b``'s rows chunked like ``T``."""
    import dask.array as da

    if trans:
        T, lower = T.T, not lower
    T = _square_chunks(T)
    # b's rows chunked like T's; its column chunks are kept (solved block by block)
    b = b.rechunk((T.chunks[0], b.chunks[1]) if b.ndim == 2 else (T.chunks[0],))
    return da.linalg.solve_triangular(T, b, lower=lower)


def _refuse_large(A: Any, operation: str, instead: str) -> None:
    if max(A.shape) > CLIENT_MAX_SIZE:
        raise DistributedUnsupportedError(
            f"{operation} of a dask array of shape {tuple(A.shape)}: dask has no "
            f"distributed {operation}, and natgrad gathers on the client only "
            f"matrices up to {CLIENT_MAX_SIZE} × {CLIENT_MAX_SIZE} "
            f"(natgrad.backend.lazy.CLIENT_MAX_SIZE). {instead}"
        )


def eigh(A: Any) -> tuple[Any, Any]:
    """``numpy.linalg.eigh`` on the client for a small matrix (dask has no eigh)."""
    import dask.array as da
    import numpy

    _refuse_large(A, "eigh", "Use a Lanczos or randomized method instead.")
    # a copy: an array gathered from a cluster can be misaligned (measured:
    # 10x slower BLAS on a 1 GB one)
    w, V = numpy.linalg.eigh(numpy.array(A.compute(), copy=True))
    return da.from_array(w), da.from_array(V)


def _shorter_side_whole(A: Any) -> Any:
    """``A`` with its shorter side in one chunk, as dask's QR and SVD (TSQR
    along the longer side) need."""
    m, n = A.shape
    if m >= n:
        return A if len(A.chunks[1]) == 1 else A.rechunk((A.chunks[0], n))
    return A if len(A.chunks[0]) == 1 else A.rechunk((m, A.chunks[1]))


def qr(A: Any) -> tuple[Any, Any]:
    """Tall-skinny QR (TSQR) by ``dask.array.linalg.qr``; a wide matrix is
    small enough for its ``m`` rows to be one chunk."""
    import dask.array as da

    m, n = A.shape
    if m < n:
        _refuse_large(A, "qr of a wide matrix", "Factor its transpose instead.")
    elif len(A.chunks[1]) > 1 and n > CLIENT_MAX_SIZE:
        raise DistributedUnsupportedError(
            f"qr of a dask array of shape {tuple(A.shape)}: dask's QR (TSQR) needs "
            f"all {n} columns in one chunk, more than {CLIENT_MAX_SIZE}"
        )
    return da.linalg.qr(_shorter_side_whole(A))


def svd(A: Any) -> tuple[Any, Any, Any]:
    """Thin SVD by ``dask.array.linalg.svd`` (TSQR along the longer side)."""
    import dask.array as da

    if min(A.shape) > CLIENT_MAX_SIZE:
        raise DistributedUnsupportedError(
            f"svd of a dask array of shape {tuple(A.shape)}: dask's SVD needs one side "
            f"of at most {CLIENT_MAX_SIZE} (one chunk); use a randomized SVD instead"
        )
    return da.linalg.svd(_shorter_side_whole(A))


def normal(shape: tuple[int, ...], dtype: Any, seed: Any) -> Any:
    """Standard normal samples drawn chunk-wise on the workers (``dask.array.random``)."""
    import dask.array as da

    return da.random.default_rng(seed).standard_normal(shape, dtype=dtype, chunks="auto")

