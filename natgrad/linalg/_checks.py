"""Argument validation shared by the solvers: each check names the argument."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Callable

from .. import backend
from .operators import DenseOperator, LinearOperator, aslinearoperator, from_matvec


def square_operator(A: Any, name: str = "A") -> LinearOperator:
    """``A`` as a square operator; dense arrays are checked for NaN/Inf."""
    try:
        op = aslinearoperator(A)
    except TypeError as err:
        raise TypeError(f"{name}: {err}") from None
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"{name} must be square, got shape {op.shape}")
    if isinstance(op, DenseOperator) and not backend.all_finite(op.array):
        raise ValueError(f"{name} contains NaN or Inf")
    return op


def dense_array(op: LinearOperator | None) -> Any:
    """The array behind a dense operator (for namespace checks), else None."""
    return op.array if isinstance(op, DenseOperator) else None


def rhs(b: Any, n: int, name: str = "b", *, allow_block: bool = True) -> None:
    """``b`` must be ``(n,)`` (or ``(n, k)``) and finite."""
    shape = tuple(b.shape)
    ok_ndim = (1, 2) if allow_block else (1,)
    if len(shape) not in ok_ndim or shape[0] != n:
        want = f"({n},) or ({n}, k)" if allow_block else f"({n},)"
        raise ValueError(f"{name} must have shape {want}, got {shape}")
    if not backend.all_finite(b):
        raise ValueError(f"{name} contains NaN or Inf")


def same_shape(x: Any, ref: Any, name: str, ref_name: str) -> None:
    if tuple(x.shape) != tuple(ref.shape):
        raise ValueError(
            f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(x.shape)}"
        )
    if not backend.all_finite(x):
        raise ValueError(f"{name} contains NaN or Inf")


def nonnegative(value: Any, name: str) -> float:
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {value}")
    return value


def positive(value: Any, name: str) -> float:
    value = nonnegative(value, name)
    if value == 0:
        raise ValueError(f"{name} must be positive, got 0")
    return value


def finite_real(value: Any, name: str) -> float:
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def positive_int(value: Any, name: str) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def preconditioner(M: Any, n: int, name: str = "M") -> LinearOperator | None:
    """``M`` (array, operator or callable) as an ``n × n`` operator, or None."""
    if M is None:
        return None
    if callable(M) and not isinstance(M, LinearOperator) and not backend.is_array(M):
        return from_matvec(M, (n, n), None)
    try:
        op = aslinearoperator(M)
    except TypeError as err:
        raise TypeError(f"{name}: {err}") from None
    if op.shape != (n, n):
        raise ValueError(f"{name} must have shape ({n}, {n}) to match A, got {op.shape}")
    return op


def callback(fn: Callable[..., Any] | None) -> None:
    if fn is not None and not callable(fn):
        raise TypeError(f"callback must be callable, got {type(fn).__name__}")
