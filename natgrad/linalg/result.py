"""The result type every natgrad solver returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SolveResult"]


@dataclass(frozen=True)
class SolveResult:
    """Outcome of an iterative or series solver.

    Attributes
    ----------
    x : array
        The computed solution, in the namespace, device and dtype of the
        right-hand side; shape ``(n,)`` or ``(n, k)``.
    converged : bool
        True when the solver's stopping rule was met (for several right-hand
        sides: by every column).
    iterations : int
        Iterations done (operator applications in the main loop; for series
        solvers the number of terms summed).
    residual_norm : float
        The 2-norm of the residual of ``x`` (for several right-hand sides the
        largest over the columns).  Krylov solvers recompute it from ``x``
        rather than trusting the recurrence.
    info : str
        A human-readable account: why the solver stopped, and on failure what
        went wrong and what to change.
    """

    x: Any
    converged: bool
    iterations: int
    residual_norm: float
    info: str = ""

    def __repr__(self) -> str:
        shape = tuple(getattr(self.x, "shape", ()))
        return (
            f"SolveResult(x=<array shape={shape}>, converged={self.converged}, "
            f"iterations={self.iterations}, residual_norm={self.residual_norm:.3e}, "
            f"info={self.info!r})"
        )
