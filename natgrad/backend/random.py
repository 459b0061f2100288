"""Random numbers that are the same for a given seed on every host backend.

Examples
--------
>>> import array_api_compat.numpy as xp
>>> normal(xp, 3, seed=0).shape
(3,)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy

from . import lazy
from ._namespaces import is_cupy, is_dask
from .dtypes import _default_float

__all__ = ["normal"]


def normal(
    xp: ModuleType,
    shape: int | tuple[int, ...],
    *,
    dtype: Any = None,
    device: Any = None,
    seed: Any = None,
) -> Any:
    """Standard normal samples, reproducible for a given seed on every backend.

    Parameters
    ----------
    xp : module
        Target namespace.
    shape : int or tuple of int
        Shape of the result; an int ``n`` means ``(n,)``.
    dtype : dtype of ``xp``, optional
        Floating dtype; the library's default floating dtype when omitted.
    device : device of ``xp``, optional
        Where to put the result; ``xp``'s default device when omitted.
    seed : int, numpy.random.Generator or None
        An integer gives the same numbers on NumPy, PyTorch, JAX and
        array_api_strict (drawn on the host in float64 and then converted);
        CuPy draws on the device with ``cupy.random.default_rng(seed)``, and
        dask chunk-wise on the workers with ``dask.array.random.default_rng``.
        A ``Generator`` is used (and advanced) as it is; ``None`` draws fresh
        entropy from the operating system.

    Returns
    -------
    array of ``xp``
        Independent standard normal samples of the given shape, dtype and
        device.

    Raises
    ------
    ValueError
        If ``seed`` is a negative integer (``numpy.random.default_rng``).
    TypeError
        If ``seed`` is of a type ``numpy.random.default_rng`` cannot use.

    Notes
    -----
    Off CuPy the samples are ``numpy.random.default_rng(seed)``'s
    ``standard_normal(shape)`` (PCG64) in float64, converted with
    ``xp.asarray(..., dtype=dtype, device=device)``: the same seed gives the
    same numbers on every host-drawn backend, up to rounding to ``dtype``, at
    the cost of one host-to-device copy on a GPU.  CuPy draws on the device
    instead, and dask on its workers (never an array the size of ``shape`` on
    the client, chunked by dask's ``"auto"`` rule), so their numbers differ
    from the others' for the same seed.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> a = normal(xp, (2, 3), seed=0)
    >>> b = normal(xp, (2, 3), seed=0)
    >>> bool(xp.all(a == b))
    True
    >>> c = normal(xp, 4, dtype=xp.float32, seed=np.random.default_rng(1))
    >>> c.shape, c.dtype
    ((4,), dtype('float32'))
    """
    if isinstance(shape, int):
        shape = (shape,)
    if dtype is None:
        dtype = _default_float(xp)
    if is_cupy(xp):
        import cupy

        with cupy.cuda.Device(device if device is not None else cupy.cuda.Device()):
            rng = cupy.random.default_rng(seed)
            x = rng.standard_normal(shape, dtype=cupy.float64)
            return x.astype(dtype, copy=False)
    if is_dask(xp):
        return lazy.normal(shape, numpy.dtype(dtype), seed)
    rng = seed if isinstance(seed, numpy.random.Generator) else numpy.random.default_rng(seed)
    host = rng.standard_normal(shape)
    if device is None:
        return xp.asarray(host, dtype=dtype)
    return xp.asarray(host, dtype=dtype, device=device)
