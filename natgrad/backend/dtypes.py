"""Floating dtypes: which one a computation uses, its machine epsilon, and
whether it is a low-precision type that needs a solver's safeguards.

Examples
--------
>>> import numpy as np
>>> import array_api_compat.numpy as xp
>>> float_dtype(xp, np.arange(3)), is_low_precision(np.float32, xp)
(dtype('float64'), True)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ._namespaces import _SCALARS, is_jax

__all__ = ["float_dtype", "eps", "is_low_precision"]


def _default_float(xp: ModuleType) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes()["real floating"]
        except Exception:  # pragma: no cover - non-conforming info object
            pass
    if is_jax(xp):
        import jax

        return xp.float64 if jax.config.jax_enable_x64 else xp.float32
    return xp.float64


def float_dtype(xp: ModuleType, *arrays_or_dtypes: Any) -> Any:
    """The floating dtype a computation on these arrays should use.

    Floating inputs keep their (promoted) dtype, so float32 stays float32;
    integer or boolean inputs are promoted to the library's default floating
    dtype.  Python scalars are ignored.

    Parameters
    ----------
    xp : module
        The namespace of the arrays; it promotes the dtypes and supplies the
        default floating dtype.
    *arrays_or_dtypes : arrays, dtypes, Python scalars or None
        Arrays contribute their ``dtype``, dtypes themselves; Python scalars
        and ``None`` are skipped.

    Returns
    -------
    dtype
        A real or complex floating dtype of ``xp``.

    Raises
    ------
    TypeError
        If ``xp.result_type`` cannot promote the dtypes together
        (array-api-strict, for instance, refuses to mix integer and floating
        dtypes; NumPy promotes any numeric mix).

    Notes
    -----
    The dtype is ``xp.result_type`` of the inputs when that is floating (real
    or complex), so a float32 problem is solved in float32 and runs at
    float32 speed on a GPU.  Otherwise, and when no array or dtype is given,
    it is the default real floating dtype of
    ``xp.__array_namespace_info__().default_dtypes()``: float64 for NumPy and
    CuPy, ``torch.get_default_dtype()`` for PyTorch, float32 for JAX unless
    ``jax_enable_x64`` is set.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> float_dtype(xp, np.ones(2, dtype=np.float32))
    dtype('float32')
    >>> float_dtype(xp, np.arange(3))
    dtype('float64')
    >>> float_dtype(xp, np.ones(2, dtype=np.float32), np.ones(2), 3.0, None)
    dtype('float64')
    """
    dtypes = []
    for a in arrays_or_dtypes:
        if a is None or isinstance(a, _SCALARS):
            continue
        dtypes.append(getattr(a, "dtype", a))
    if not dtypes:
        return _default_float(xp)
    dt = xp.result_type(*dtypes)
    if xp.isdtype(dt, ("real floating", "complex floating")):
        return dt
    return _default_float(xp)


def eps(dtype: Any, xp: ModuleType) -> float:
    """Machine epsilon of a floating dtype of namespace ``xp``.

    Parameters
    ----------
    dtype : dtype of ``xp``
        A real or complex floating dtype.
    xp : module
        The namespace the dtype belongs to.

    Returns
    -------
    float
        ``xp.finfo(dtype).eps``, the gap between 1 and the next larger
        representable number: 2⁻⁵² for float64, 2⁻²³ for float32 (for a
        complex dtype, that of its real part).

    Raises
    ------
    ValueError or TypeError
        If ``dtype`` is not a floating dtype (whichever ``xp.finfo`` raises:
        ``ValueError`` on NumPy).

    Notes
    -----
    A Python float, so tolerances built from it stay on the host; ``finfo``
    reads a table and never touches array data.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> eps(np.float64, xp) == 2.0**-52, eps(np.float32, xp) == 2.0**-23
    (True, True)
    """
    return float(xp.finfo(dtype).eps)


def is_low_precision(dtype: Any, xp: ModuleType) -> bool:
    """True for dtypes with fewer than float64's 53 mantissa bits.

    Parameters
    ----------
    dtype : dtype of ``xp``
        A real or complex floating dtype.
    xp : module
        The namespace the dtype belongs to.

    Returns
    -------
    bool
        ``True`` for float32, float16, bfloat16 and complex64; ``False`` for
        float64 and complex128.

    Raises
    ------
    ValueError or TypeError
        If ``dtype`` is not a floating dtype (see :func:`eps`).

    Notes
    -----
    The test is ``eps(dtype, xp) > 1e-10``, a threshold between float64's
    ε ≈ 2.2·10⁻¹⁶ and float32's ε ≈ 1.2·10⁻⁷.  Solvers use it to switch on
    their low-precision safeguards.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> is_low_precision(np.float32, xp), is_low_precision(np.float64, xp)
    (True, False)
    """
    return eps(dtype, xp) > 1e-10
