"""The CPU's numerical state around natgrad's solvers: the BLAS thread pools
(a limit for work made of many small products) and NumPy's floating-point
warnings (silenced where the solver reports non-finite values itself).

Thread pools of the CPU BLAS: a limit for work made of many small products.

A BLAS thread pool pays off on large products.  On many small ones (the
QR/SVD/products on blocks of a few hundred rows of an H-matrix build) its
threads spend more time waking, spinning and waiting for each other than
computing, and on a machine whose cores are busy with other work it is far
worse.  Measured on two cores under load, one H-matrix build (n = 2000, 2-D,
``eps=1e-6``) took 25 s with OpenBLAS's default pool and 2.5 s with one
thread.  :func:`blas_threads` sets the limit for a block of code.

Examples
--------
>>> import numpy as np
>>> with blas_threads(1):
...     q, r = np.linalg.qr(np.ones((4, 2)))
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import numpy

__all__ = ["blas_threads", "quiet_floating_point"]


@contextlib.contextmanager
def blas_threads(limit: int = 1) -> Iterator[None]:
    """Limit the CPU BLAS thread pools (NumPy's, SciPy's, PyTorch's OpenBLAS
    or MKL) to ``limit`` threads inside the ``with`` block.

    Parameters
    ----------
    limit : int, default 1
        Threads each BLAS pool may use inside the block.

    Yields
    ------
    None

    Raises
    ------
    ValueError
        ``limit`` is not a positive integer.

    Notes
    -----
    Uses ``threadpoolctl`` (installed with scikit-learn, and by natgrad's
    ``test`` extra) when present and does nothing otherwise: the limit is a
    speed-up, never needed for a correct result.  The previous limits are
    restored on exit, also after an exception.  GPU libraries are not
    affected.

    Examples
    --------
    >>> import numpy as np
    >>> with blas_threads(1):
    ...     float(np.linalg.norm(np.eye(3) @ np.ones(3)) ** 2)
    3.0
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the pools keep their size
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def quiet_floating_point(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: NumPy's floating-point warnings (overflow, invalid value,
    division by zero) are not emitted while ``fn`` runs.

    Parameters
    ----------
    fn : callable
        A solver that detects NaN, Inf and overflow itself and reports them
        in its result (``status="nonfinite"``, a named error).

    Returns
    -------
    callable
        ``fn`` with the same name, docstring and signature.

    Raises
    ------
    Exception
        Whatever ``fn`` raises; nothing of its own.

    Notes
    -----
    A ``pᵀAp`` whose ``A p`` holds an Inf is NaN by design of IEEE
    arithmetic, and the solver turns it into ``status="nonfinite"``; NumPy's
    ``RuntimeWarning`` about it on the way says the same thing less clearly
    and cannot be acted on.  ``numpy.errstate`` is thread-local and restored
    on exit; the warnings of array-api-strict (which computes with NumPy) are
    covered too, and PyTorch, JAX and CuPy do not warn.  A user's function
    called by the solver runs in the same state.

    Examples
    --------
    >>> import numpy as np
    >>> @quiet_floating_point
    ... def overflowing():
    ...     return np.float64(1e300) * 1e300
    >>> overflowing()
    np.float64(inf)
    """

    @functools.wraps(fn)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return fn(*args, **kwargs)

    return quiet
