"""Operator-specific argument checks of the solvers; each names the argument.

Scalar and array checks live in :mod:`natgrad.validation` (one module for
every layer).  This module adds what only linear algebra needs: turning an
argument into a square operator or a preconditioner, and wrapping an
operator's product so that its calls are counted and, for a user's operator,
its outputs checked at every call.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import backend, validation
from .operators import DenseOperator, LinearOperator, aslinearoperator, from_matvec


def square_operator(A: Any, name: str = "A", *, check_finite: bool = True) -> LinearOperator:
    """``A`` as a square operator; dense arrays are checked for NaN/Inf
    (unless ``check_finite`` is False: the caller checks after
    ``backend.namespace`` has refused tracked arrays, naming each argument)."""
    try:
        op = aslinearoperator(A)
    except backend.TracedArrayError:
        raise  # its message names the argument already
    except TypeError as err:
        raise TypeError(f"{name}: {err}") from None
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"{name} must be square, got shape {op.shape}")
    if check_finite and isinstance(op, DenseOperator):
        validation.finite(op.array, name)
    return op


def dense_array(op: LinearOperator | None) -> Any:
    """The array behind a dense operator (for namespace checks), else None."""
    return op.array if isinstance(op, DenseOperator) else None


def preconditioner(M: Any, n: int, name: str = "M") -> LinearOperator | None:
    """``M`` (array, operator or callable) as an ``n × n`` operator, or None."""
    if M is None:
        return None
    if callable(M) and not isinstance(M, LinearOperator) and not backend.is_array(M):
        return from_matvec(M, (n, n), None)
    try:
        op = aslinearoperator(M)
    except backend.TracedArrayError:
        raise
    except TypeError as err:
        raise TypeError(f"{name}: {err}") from None
    if op.shape != (n, n):
        raise ValueError(f"{name} must have shape ({n}, {n}) to match A, got {op.shape}")
    return op


class _Counted:
    """A natgrad operator's product, counted (its output needs no check)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, x: Any) -> Any:
        self.calls += 1
        return self.fn(x)


def operator_calls(op: LinearOperator, name: str) -> Callable[[Any], Any]:
    """``op.matvec`` as a callable with a ``calls`` counter.

    A user's operator (``from_matvec``, a SciPy operator, a subclass) is
    wrapped in :class:`natgrad.validation.CheckedCallable`: shape, dtype,
    library and device of every output are checked (metadata only, no host
    synchronisation) and errors name ``name`` and the call.  Finiteness is
    not checked here: that would be a host synchronisation per product on
    an accelerator; the solvers test their residual norms at their sync
    points instead, where NaN or Inf from any product shows up.  Operators
    natgrad builds from arrays it has validated (dense arrays, Nyström
    approximations, damped versions of those) are only counted.
    """
    if op._native:
        return _Counted(op.matvec)
    return validation.CheckedCallable(op.matvec, name, check_finite=False)


#: SciPy's ``tol=`` (its name before 1.12): point to what natgrad takes
scipy_tol = validation.foreign_keywords(
    tol="rtol= (the residual relative to ‖b‖, SciPy's name since 1.12) and atol= (absolute)"
)
