"""Array namespaces, devices and conversions between libraries.

Every solver of natgrad starts by asking :func:`namespace` for the array-API
namespace ``xp`` of its inputs; this module answers that question, names the
library and device of an array, and converts between libraries on request
(:func:`to_namespace`), never silently.  Only types and ``device`` attributes
are read here, so nothing in this module waits for a device, and no optional
library (CuPy, PyTorch, JAX) is imported unless arrays of it are seen.

Examples
--------
>>> import numpy as np
>>> namespace(np.ones(3)).__name__, library_name(namespace(np.ones(3)))
('array_api_compat.numpy', 'NumPy')
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import array_api_compat
import numpy

__all__ = [
    "TracedArrayError",
    "namespace",
    "device",
    "is_array",
    "is_numpy",
    "is_cupy",
    "is_torch",
    "is_jax",
    "is_dask",
    "library_name",
    "to_namespace",
    "is_scipy_operator",
    "numpy_namespace",
]

_SCALARS = (bool, int, float, complex)


def is_array(x: Any) -> bool:
    """True when ``x`` is an array of a library with an array-API namespace.

    Parameters
    ----------
    x : object
        Anything.

    Returns
    -------
    bool
        ``True`` for NumPy, CuPy, PyTorch, JAX, array-api-strict and other
        array-API arrays; ``False`` for ``None``, Python scalars, lists and
        other objects.

    Notes
    -----
    The test is ``array_api_compat.is_array_api_obj``, except that Python
    ``bool``, ``int``, ``float`` and ``complex`` (and their subclasses, such
    as ``numpy.float64``) never count as arrays, as in :func:`namespace`,
    which ignores them.  Other NumPy scalars (``numpy.float32``) count as
    arrays.  Only types are inspected: no data are read, no device is
    synchronised.

    Examples
    --------
    >>> import numpy as np
    >>> is_array(np.ones(3)), is_array(2.0), is_array([1.0, 2.0]), is_array(None)
    (True, False, False, False)
    """
    if x is None or isinstance(x, _SCALARS):
        return False
    return bool(array_api_compat.is_array_api_obj(x))


class TracedArrayError(TypeError):
    """An argument is tracked by an autodiff framework: a JAX tracer (natgrad
    was called inside ``jax.jit``, ``jax.vmap`` or ``jax.grad``) or a PyTorch
    tensor with ``requires_grad=True``.

    natgrad's solvers and optimisers are eager, host-driven loops: they read
    residual norms and losses on the host to decide when to stop, so they
    cannot be traced, and their iterations are not recorded for autograd.
    Raised by :func:`namespace` (the entry of every solver) and by the host
    synchronisations (:func:`~natgrad.backend.to_float` and its siblings)
    when they are handed a traced value.  The optimisers are the exception
    for PyTorch: they compute their own derivatives through the adapter, so
    they detach tracked parameters instead of refusing them.

    Notes
    -----
    A subclass of ``TypeError``: a traced value is the wrong kind of argument,
    as JAX's own ``ConcretizationTypeError`` (also a ``TypeError``) says when
    a tracer reaches ``float()``.  The message names the argument and what to
    do instead: call natgrad outside the transform, and jit your own
    function (the matrix-vector product, the HVP, the model) instead.

    Examples
    --------
    >>> issubclass(TracedArrayError, TypeError)
    True
    """


#: what to do instead, appended to every TracedArrayError message
_TRACED_ADVICE = (
    "natgrad's solvers and optimisers run eagerly (host-driven loops that read "
    "residuals and losses on the host) and cannot be called under jax.jit, "
    "jax.vmap or jax.grad. Call them outside the transform, with concrete "
    "arrays, and jit your own function (the matvec, the HVP, the model) "
    "instead; to differentiate through a solve, differentiate a closed-form "
    "expression or use an implicit-function rule of your own."
)


def _is_jax_tracer(x: Any) -> bool:
    """True for a JAX tracer, found from the type's module and MRO alone, so
    that the test never imports JAX; the answer is kept per type (every host
    read asks it, thousands of times in an H-matrix build)."""
    cls = type(x)
    known = _TRACER_TYPES.get(cls)
    if known is None:
        known = str(getattr(cls, "__module__", "")).startswith("jax") and any(
            k.__name__ == "Tracer" and k.__module__.startswith("jax") for k in cls.__mro__)
        _TRACER_TYPES[cls] = known
    return known


#: _is_jax_tracer's answers, per type
_TRACER_TYPES: dict[type, bool] = {}


#: what to do instead when a PyTorch tensor tracked by autograd is passed
_TRACKED_ADVICE = (
    "natgrad's solvers do not record their iterations for autograd (they stop "
    "on data-dependent tests and update their iterates in place), so a gradient "
    "through them would be wrong or fail in backward(). Pass {argument}.detach(); "
    "to differentiate a solution x of A x = b, use the implicit rule "
    "dx = A⁻¹(db − dA x) with a second solve. The optimisers accept tracked "
    "parameters and detach them themselves."
)


def _is_tracked_tensor(x: Any) -> bool:
    """True for a PyTorch tensor with ``requires_grad`` (read without importing torch)."""
    return bool(getattr(x, "requires_grad", False)) and type(x).__module__.startswith("torch")


def _refuse_tracer(x: Any, *, argument: str | None = None, reader: str | None = None) -> None:
    """Raise :class:`TracedArrayError` if ``x`` is a JAX tracer, passed as
    ``argument`` or met by the host synchronisation ``reader`` (a value
    natgrad computed from one), or a PyTorch tensor that requires grad passed
    as ``argument``."""
    if argument is not None and _is_tracked_tensor(x):
        raise TracedArrayError(
            f"{argument} is a PyTorch tensor that requires grad (tracked by autograd). "
            + _TRACKED_ADVICE.format(argument=argument)
        )
    if not _is_jax_tracer(x):
        return
    kind = type(x).__name__
    if argument is not None:
        what = f"{argument} is a JAX tracer ({kind})"
    else:
        what = f"{reader}() was handed a JAX tracer ({kind}), which has no value on the host"
    raise TracedArrayError(
        f"{what}: natgrad was called inside a JAX transformation. {_TRACED_ADVICE}"
    )


def namespace(*arrays: Any, allow_traced: bool = False, **named_arrays: Any) -> ModuleType:
    """The array-API namespace shared by the given arrays.

    Parameters
    ----------
    *arrays, **named_arrays
        Arrays, Python scalars or ``None``.  Scalars and ``None`` are ignored.
        Pass arrays by keyword (``namespace(A=A, b=b)``) so that errors name
        them the way the caller's own arguments are named.
    allow_traced : bool, default False
        Accept JAX tracers and PyTorch tensors that require grad.  Only for functions that are pure array
        expressions and so can run inside ``jax.jit`` (the triangular and
        Cholesky solves, ``gram``, ``eigh``, ``qr``, ``svd``); every solver and
        optimiser leaves it ``False``.

    Returns
    -------
    xp : module
        The array-API compatible namespace (``array_api_compat.numpy`` for
        NumPy arrays, ``jax.numpy`` for JAX, ...).

    Raises
    ------
    TracedArrayError
        If an argument is a JAX tracer (natgrad is being called inside
        ``jax.jit``, ``jax.vmap`` or ``jax.grad``) or a PyTorch tensor with
        ``requires_grad=True``, and ``allow_traced`` is false.  A subclass of
        ``TypeError``; the message says what to do instead.
    TypeError
        If no array is given, an argument is not an array of a supported
        library, or the arrays come from two libraries or live on two devices.
        Data are never moved between devices silently.

    Notes
    -----
    The namespace is ``array_api_compat.array_namespace`` of each argument,
    so NumPy, CuPy and PyTorch arrays get array-api-compat's wrappers and JAX
    and array-api-strict arrays their own namespaces.  Mixing libraries or
    devices is an error rather than a silent conversion because a hidden copy
    (host to GPU, one library to another) costs time and memory the caller
    did not ask for; convert on purpose with :func:`to_namespace`.  Only
    types and ``device`` attributes are read, so the call never waits for a
    device.  Tracers are refused here, at the entry of every solver, because
    a traced value has no device and no value to read on the host: without
    this check the caller would get a confusing error from deep inside the
    solver (a device ``None``, a concretisation error).

    Examples
    --------
    >>> import numpy as np
    >>> namespace(np.ones(3), 2.0).__name__
    'array_api_compat.numpy'
    >>> namespace(A=np.eye(2), b=np.ones(2)).__name__
    'array_api_compat.numpy'
    """
    items = [(f"argument {i}", a) for i, a in enumerate(arrays)]
    items += list(named_arrays.items())
    seen = []
    for name, value in items:
        if value is None or isinstance(value, _SCALARS):
            continue
        if not allow_traced:
            _refuse_tracer(value, argument=name)
        try:
            xp = array_api_compat.array_namespace(value)
        except TypeError:
            raise TypeError(
                f"{name} must be an array (NumPy, CuPy, PyTorch, JAX or another "
                f"array-API library), got {type(value).__name__}"
            ) from None
        seen.append((name, value, xp))
    if not seen:
        raise TypeError("namespace() needs at least one array argument")
    name0, value0, xp0 = seen[0]
    dev0 = device(value0)
    for name, value, xp in seen[1:]:
        if xp is not xp0:
            raise TypeError(
                f"{name} is a {library_name(xp)} array but {name0} is a "
                f"{library_name(xp0)} array; natgrad never converts between "
                "libraries silently (use natgrad.backend.to_namespace)"
            )
        dev = device(value)
        if dev != dev0:
            raise TypeError(
                f"{name} is on device {dev} but {name0} is on device {dev0}; "
                "natgrad never moves data between devices silently"
            )
    return xp0


def device(x: Any) -> Any:
    """The device an array lives on (the array-API ``device`` attribute).

    Parameters
    ----------
    x : array
        An array of any supported library.

    Returns
    -------
    device
        The library's device object: ``"cpu"`` for NumPy, a ``torch.device``
        for PyTorch, a ``cupy.cuda.Device`` for CuPy, a JAX ``Device`` for JAX
        (possibly ``None`` for a value traced inside ``jax.jit``).

    Raises
    ------
    AttributeError
        If ``x`` is not an array (it has no ``device`` attribute), e.g. a
        Python scalar or a list.

    Notes
    -----
    Uses ``array_api_compat.device``, which also covers libraries whose
    ``device`` attribute is missing or non-standard (NumPy arrays always live
    on the CPU).  Devices compare with ``==``; :func:`namespace` uses that to
    refuse arrays from two devices.  No data are read.

    Examples
    --------
    >>> import numpy as np
    >>> device(np.ones(3))
    'cpu'
    """
    return array_api_compat.device(x)


def is_numpy(xp: ModuleType) -> bool:
    """True for the NumPy namespace.

    Parameters
    ----------
    xp : module
        An array namespace, e.g. from :func:`namespace`.

    Returns
    -------
    bool
        ``True`` for ``numpy`` itself and ``array_api_compat.numpy``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (it is not a module).

    Notes
    -----
    Delegates to ``array_api_compat``, which compares the module's name, so
    the test never imports NumPy and costs next to nothing on every dispatch.

    Examples
    --------
    >>> import numpy as np
    >>> is_numpy(namespace(np.ones(2)))
    True
    """
    return bool(array_api_compat.is_numpy_namespace(xp))


def is_cupy(xp: ModuleType) -> bool:
    """True for the CuPy namespace.

    Parameters
    ----------
    xp : module
        An array namespace, e.g. from :func:`namespace`.

    Returns
    -------
    bool
        ``True`` for ``cupy`` itself and ``array_api_compat.cupy``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (it is not a module).

    Notes
    -----
    Delegates to ``array_api_compat``, which compares the module's name, so
    the test never imports CuPy and costs next to nothing on every dispatch.

    Examples
    --------
    >>> import numpy as np
    >>> is_cupy(namespace(np.ones(2)))
    False
    """
    return bool(array_api_compat.is_cupy_namespace(xp))


def is_torch(xp: ModuleType) -> bool:
    """True for the PyTorch namespace.

    Parameters
    ----------
    xp : module
        An array namespace, e.g. from :func:`namespace`.

    Returns
    -------
    bool
        ``True`` for ``torch`` itself and ``array_api_compat.torch``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (it is not a module).

    Notes
    -----
    Delegates to ``array_api_compat``, which compares the module's name, so
    the test never imports PyTorch and costs next to nothing on every dispatch.

    Examples
    --------
    >>> import numpy as np
    >>> is_torch(namespace(np.ones(2)))
    False
    """
    return bool(array_api_compat.is_torch_namespace(xp))


def is_jax(xp: ModuleType) -> bool:
    """True for the JAX namespace.

    Parameters
    ----------
    xp : module
        An array namespace, e.g. from :func:`namespace`.

    Returns
    -------
    bool
        ``True`` for ``jax.numpy`` and ``jax.experimental.array_api``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (it is not a module).

    Notes
    -----
    Delegates to ``array_api_compat``, which compares the module's name, so
    the test never imports JAX and costs next to nothing on every dispatch.

    Examples
    --------
    >>> import numpy as np
    >>> is_jax(namespace(np.ones(2)))
    False
    """
    return bool(array_api_compat.is_jax_namespace(xp))


def is_dask(xp: ModuleType) -> bool:
    """True for the dask array namespace.

    Parameters
    ----------
    xp : module
        An array namespace, e.g. from :func:`namespace`.

    Returns
    -------
    bool
        ``True`` for ``dask.array`` and ``array_api_compat.dask.array``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (it is not a module).

    Notes
    -----
    Delegates to ``array_api_compat``, which compares the module's name, so
    the test never imports dask.  dask arrays are lazy task graphs; see
    :mod:`natgrad.backend.lazy` for what natgrad does differently with them.

    Examples
    --------
    >>> import numpy as np
    >>> is_dask(namespace(np.ones(2)))
    False
    """
    return bool(array_api_compat.is_dask_namespace(xp))


def library_name(xp: ModuleType) -> str:
    """A short human name for a namespace, used in error messages.

    Parameters
    ----------
    xp : module
        An array namespace.

    Returns
    -------
    str
        ``"NumPy"``, ``"CuPy"``, ``"PyTorch"``, ``"JAX"`` or ``"dask"`` for those
        libraries (wrapped by array-api-compat or not), otherwise the module's
        ``__name__``, e.g. ``"array_api_strict"``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (the namespace tests read it).

    Notes
    -----
    Only for messages such as :func:`namespace`'s; dispatch uses
    :func:`is_numpy`, :func:`is_cupy`, :func:`is_torch` and :func:`is_jax`.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_strict
    >>> library_name(namespace(np.ones(2)))
    'NumPy'
    >>> library_name(array_api_strict)
    'array_api_strict'
    """
    for test, name in (
        (is_numpy, "NumPy"),
        (is_cupy, "CuPy"),
        (is_torch, "PyTorch"),
        (is_jax, "JAX"),
        (is_dask, "dask"),
    ):
        if test(xp):
            return name
    return getattr(xp, "__name__", str(xp))


def _on_accelerator(x: Any) -> bool:
    xp = array_api_compat.array_namespace(x)
    if is_cupy(xp):
        return True
    if is_torch(xp):
        return x.device.type != "cpu"
    if is_jax(xp):
        try:
            return any(d.platform != "cpu" for d in x.devices())
        except Exception:  # pragma: no cover - tracers
            return False
    return False


def to_namespace(x: Any, xp: ModuleType) -> Any:
    """Hand an array to another library, zero-copy through DLPack where possible.

    Parameters
    ----------
    x : array
        An array of any supported library.
    xp : module
        Target namespace (e.g. ``array_api_compat.numpy`` or ``jax.numpy``).

    Returns
    -------
    array of ``xp``
        ``x`` itself when it already belongs to ``xp``; otherwise an array
        sharing memory with ``x`` when the devices agree and the target
        library accepts the DLPack capsule; otherwise a copy through host
        memory, in ``xp`` on its default device (a CuPy or GPU array asked
        for as a NumPy or array-api-strict array: a host copy).

    Raises
    ------
    TypeError
        If ``x`` is not an array of a supported library.
    Exception
        The source library's error when it cannot copy ``x`` to the host
        either (a PyTorch tensor that requires grad: ``.detach()`` it first).

    Notes
    -----
    This is the explicit conversion that :func:`namespace` refuses to do
    implicitly: the caller names the target library, so copying device data
    to the host when that library cannot hold them where they are is the
    transfer asked for, not a silent one.  natgrad's core never calls it on
    the arrays it computes with (the project rule: no silent device
    transfers); the adapters call it for the ``array_namespace`` a user
    chose.  When memory is shared, writes through one array are seen
    through the other.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> import array_api_strict
    >>> a = np.arange(3.0)
    >>> to_namespace(a, xp) is a
    True
    >>> s = to_namespace(a, array_api_strict)
    >>> library_name(namespace(s)), s.shape
    ('array_api_strict', (3,))
    """
    src = array_api_compat.array_namespace(x)
    if src is xp:
        return x
    try:
        return xp.from_dlpack(x)
    except Exception:
        # The target cannot take x where it lives (NumPy refuses a CUDA
        # capsule with "BufferError: Unsupported device in DLTensor"): copy to
        # the host, as the caller asked for xp's array.
        return xp.asarray(_host_copy(x) if _on_accelerator(x) else numpy.asarray(x))


def _host_copy(x: Any) -> Any:
    """The NumPy copy of an array on an accelerator (CuPy, PyTorch, JAX)."""
    src = array_api_compat.array_namespace(x)
    if is_cupy(src):
        return x.get()
    if is_torch(src):
        return x.cpu().numpy()  # a tensor that requires grad raises (no silent detach)
    return numpy.asarray(x)  # JAX copies device arrays to the host on request


def numpy_namespace() -> ModuleType:
    """The array-API namespace of NumPy arrays.

    Returns
    -------
    module
        ``array_api_compat.numpy``, the namespace :func:`namespace` returns
        for NumPy arrays.

    Raises
    ------
    ImportError
        Never in practice: NumPy and array-api-compat are required
        dependencies.

    Notes
    -----
    For objects that compute on NumPy arrays but are not arrays themselves,
    so that :func:`namespace` cannot be asked (a SciPy ``LinearOperator`` or
    sparse matrix, see :func:`is_scipy_operator`).  The core names no array
    library; it asks here instead.

    Examples
    --------
    >>> import numpy as np
    >>> numpy_namespace() is namespace(np.ones(2))
    True
    """
    import array_api_compat.numpy as np_xp

    return np_xp


def is_scipy_operator(obj: Any) -> bool:
    """True for a :class:`scipy.sparse.linalg.LinearOperator` or a SciPy sparse
    matrix/array (objects natgrad wraps as NumPy operators).

    Parameters
    ----------
    obj : object
        Anything.

    Returns
    -------
    bool
        ``True`` for an instance of ``scipy.sparse.linalg.LinearOperator``
        or anything ``scipy.sparse.issparse`` accepts; ``False`` otherwise,
        dense arrays included.

    Notes
    -----
    Such objects have no array-API namespace, so :func:`namespace` would
    reject them; this test lets callers recognise them first.  It is a pure
    type test: nothing is converted or computed.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse
    >>> import scipy.sparse.linalg
    >>> is_scipy_operator(scipy.sparse.eye(3))
    True
    >>> is_scipy_operator(scipy.sparse.linalg.aslinearoperator(np.eye(3)))
    True
    >>> is_scipy_operator(np.eye(3))
    False
    """
    if "scipy" not in sys.modules:  # pragma: no cover - scipy is required
        return False
    import scipy.sparse
    import scipy.sparse.linalg

    return isinstance(obj, scipy.sparse.linalg.LinearOperator) or scipy.sparse.issparse(obj)
