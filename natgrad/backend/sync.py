"""Host synchronisations: every place where natgrad reads an array's value on
the host goes through a function of this module.

On a GPU, turning a device value into a Python number makes the host wait for
all queued work that produces it.  The core (``natgrad.linalg``,
``natgrad.hmatrix``, ``natgrad.optim``) therefore never writes a bare
``bool(xp.…)``, ``int(xp.…)``, ``float(xp.…)`` or ``.item()``: it calls
:func:`to_bool`, :func:`to_int`, :func:`to_float`, :func:`to_list` or
:func:`all_finite`, so
that each synchronisation is named and easy to find (``tests/test_architecture.py``
scans the core for bare ones), and :func:`sync_interval` tells the iterative
solvers how often to pay for one.

Examples
--------
>>> import array_api_compat.numpy as xp
>>> x = xp.asarray([1.0, 2.0, 4.0])
>>> to_float(xp.sum(x)), to_int(xp.argmax(x)), to_bool(xp.all(x > 0)), all_finite(x)
(7.0, 2, True, True)
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy

from ._namespaces import _on_accelerator, _refuse_tracer
from .lazy import is_lazy

__all__ = ["sync_interval", "to_float", "to_bool", "to_int", "to_list", "all_finite"]


def sync_interval(x: Any, *, accelerator_interval: int = 10) -> int:
    """How many iterations an iterative solver should run between host
    synchronisations (convergence checks) for arrays like ``x``.

    On the CPU a convergence check costs nothing, so solvers check every
    iteration and stop exactly when the tolerance is met.  On a GPU each check
    forces the host to wait for the device, so solvers check every
    ``accelerator_interval`` iterations and keep converged columns frozen on
    the device in between.

    Parameters
    ----------
    x : array
        An array of the computation; only its library and device are read.
    accelerator_interval : int, default 10
        Iterations between checks when ``x`` lives on an accelerator.

    Returns
    -------
    int
        ``accelerator_interval`` for CuPy arrays, for PyTorch or JAX
        arrays on a non-CPU device and for dask arrays; ``1`` otherwise.

    Raises
    ------
    TypeError
        If ``x`` is not an array of a supported library.

    Notes
    -----
    Only the device is inspected, never the data, so the call itself does not
    synchronise.  A dask array counts as an accelerator: each check computes
    the task graph since the last one (solvers persist their iterates there,
    see :func:`natgrad.backend.persist`), so fewer checks mean fewer,
    larger computations and fewer round trips to the workers.  A JAX value traced inside ``jax.jit``, whose devices are not
    known, counts as a host array.

    Examples
    --------
    >>> import numpy as np
    >>> sync_interval(np.ones(3))
    1
    """
    return accelerator_interval if _on_accelerator(x) or is_lazy(x) else 1


def to_float(x: Any) -> float:
    """A 0-d array as a Python float (a host synchronisation on GPUs).

    Parameters
    ----------
    x : array, shape ()
        A 0-d real array (a Python number works too).

    Returns
    -------
    float
        The value of ``x``.

    Raises
    ------
    TracedArrayError
        If ``x`` is a JAX tracer (a value inside ``jax.jit``, ``jax.vmap`` or
        ``jax.grad``), which has no value to read; a ``TypeError`` subclass.
    TypeError
        On NumPy, if ``x`` is not 0-d (recent NumPy refuses even one-element
        arrays).  Other libraries raise their own errors (PyTorch a
        ``RuntimeError`` for more than one element).

    Notes
    -----
    This is ``float(x)``.  On a GPU it copies the value to the host and so
    waits for all queued work that produces it; it has a name of its own so
    that every such synchronisation in natgrad is explicit and easy to find.
    It is used only where a host decision (a convergence test, a line
    search, a reported loss) needs the number.

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> to_float(xp.sum(xp.asarray([1.0, 2.5])))
    3.5
    """
    _refuse_tracer(x, reader="to_float")
    return float(x)


def to_bool(x: Any) -> bool:
    """A 0-d boolean array as a Python bool (a host synchronisation on GPUs).

    Parameters
    ----------
    x : array, shape ()
        A 0-d array, typically the result of ``xp.all``/``xp.any`` or of a
        comparison of 0-d arrays (a Python bool works too).

    Returns
    -------
    bool
        The truth value of ``x``.

    Raises
    ------
    TracedArrayError
        If ``x`` is a JAX tracer (see :func:`to_float`).
    ValueError
        On NumPy, if ``x`` has more than one element (its truth value is
        ambiguous); other libraries raise their own errors.

    Notes
    -----
    This is ``bool(x)``; like :func:`to_float` it has a name of its own so
    that every host synchronisation in the core is explicit (a test scans the
    core for bare ``bool(xp…)`` calls).  On a GPU it waits for the work that
    produces ``x``.

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> to_bool(xp.all(xp.asarray([1.0, 2.0]) > 0))
    True
    """
    _refuse_tracer(x, reader="to_bool")
    return bool(x)


def to_int(x: Any) -> int:
    """A 0-d integer (or integral) array as a Python int (a host synchronisation).

    Parameters
    ----------
    x : array, shape ()
        A 0-d array such as the result of ``xp.argmax`` or ``xp.sum`` of a
        boolean mask (a Python int works too).

    Returns
    -------
    int
        The value of ``x``.

    Raises
    ------
    TracedArrayError
        If ``x`` is a JAX tracer (see :func:`to_float`).
    TypeError
        On NumPy, if ``x`` is not 0-d; other libraries raise their own errors.

    Notes
    -----
    This is ``int(x)``, named for the same reason as :func:`to_bool`.

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> to_int(xp.argmax(xp.asarray([1.0, 5.0, 2.0])))
    1
    """
    _refuse_tracer(x, reader="to_int")
    return int(x)


def to_list(x: Any) -> list:
    """An array's values as (nested) Python lists: one host synchronisation.

    Parameters
    ----------
    x : array
        Any array of a supported library, typically a small 1-D array of
        values the host needs together (a few norms, the ends of a cumulative
        sum).

    Returns
    -------
    list
        ``x.tolist()``: Python numbers, nested as ``x`` is (a 0-d array gives
        the number itself).

    Raises
    ------
    TracedArrayError
        If ``x`` is a JAX tracer (see :func:`to_float`).
    TypeError
        If ``x`` is not an array NumPy can read through DLPack (for libraries
        without ``tolist``).

    Notes
    -----
    Reading ``k`` values with one transfer instead of ``k`` calls of
    :func:`to_float` waits for the device once.  Libraries with a
    ``tolist`` method (NumPy, CuPy, PyTorch, JAX) use it; others (e.g.
    array-api-strict) are read through ``numpy.from_dlpack``, which shares
    host memory and copies nothing.

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> to_list(xp.asarray([1.0, 2.5]))
    [1.0, 2.5]
    """
    _refuse_tracer(x, reader="to_list")
    if is_lazy(x):  # dask: compute the (small) array, then read it
        return numpy.asarray(x.compute()).tolist()
    tolist = getattr(x, "tolist", None)
    if tolist is not None:
        return tolist()
    try:
        return numpy.from_dlpack(x).tolist()
    except (TypeError, RuntimeError, BufferError) as err:
        raise TypeError(f"cannot read a {type(x).__name__} on the host: {err}") from None


def all_finite(x: Any) -> bool:
    """True when every entry of ``x`` is finite (one host synchronisation).

    Parameters
    ----------
    x : array
        Any array of a supported library.

    Returns
    -------
    bool
        ``False`` if ``x`` holds a NaN or an infinity; always ``True`` for
        integer and boolean arrays.

    Raises
    ------
    TracedArrayError
        If ``x`` is a JAX tracer (see :func:`to_float`).
    TypeError
        If ``x`` is not an array of a supported library.

    Notes
    -----
    The test ``xp.all(xp.isfinite(x))`` reduces on the device to one boolean,
    which is then read on the host: one synchronisation on a GPU.
    Non-floating dtypes cannot hold NaN or infinity and return at once,
    without reading the data.

    Examples
    --------
    >>> import numpy as np
    >>> all_finite(np.array([1.0, 2.0])), all_finite(np.array([1.0, np.inf]))
    (True, False)
    >>> all_finite(np.arange(3))
    True
    """
    _refuse_tracer(x, reader="all_finite")
    xp = array_api_compat.array_namespace(x)
    if not xp.isdtype(x.dtype, ("real floating", "complex floating")):
        return True
    return to_bool(xp.all(xp.isfinite(x)))
