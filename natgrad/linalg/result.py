"""The result type every natgrad solver returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SolveResult"]


@dataclass(frozen=True)
class SolveResult:
    """Outcome of an iterative or series solver.

    The iterative and series solvers of :mod:`natgrad.linalg` (``cg``,
    ``minres``, ``nystrom_pcg``, ``neumann_solve``, ``saddle_free_solve``)
    return one; a failure to converge is reported here, never raised.

    Parameters
    ----------
    x : array
        The computed solution, in the namespace, device and dtype of the
        right-hand side; shape ``(n,)`` or ``(n, k)``.  When
        ``converged`` is False it is the solver's best available iterate
        (the last iterate, or for the series solvers the partial sum with
        the smallest residual or term), possibly zero.
    converged : bool
        True when the solver's stopping rule was met (for several right-hand
        sides: by every column).  False when the iteration limit was reached,
        a breakdown was detected (``A`` or ``M`` not positive definite in
        CG), NaN or Inf appeared, the true residual stagnated above the
        tolerance, MINRES found a singular inconsistent system, or a series
        diverged; ``info`` says which.  For ``saddle_free_solve`` it means
        the method ran to its end without divergence; it certifies no
        tolerance.
    iterations : int
        Iterations done (operator applications in the main loop; for series
        solvers the number of terms summed, or Lanczos steps).
    residual_norm : float
        The 2-norm of the residual of ``x`` (for several right-hand sides the
        largest over the columns), as a Python float.  Krylov solvers
        recompute it from ``x`` rather than trusting the recurrence
        (``‖b − A x‖``; MINRES for ``A − shift·I``, Nyström-PCG for the
        shifted system); ``neumann_solve`` reports ``‖v − (A + λI)x‖``.
        ``saddle_free_solve`` cannot form its residual from Hessian-vector
        products and reports ``nan``; its error estimate is in ``info``.
    info : str
        A human-readable account: why the solver stopped, and on failure what
        went wrong and what to change (series solvers also give the number of
        Hessian-vector products used).  Empty by default.

    Raises
    ------
    dataclasses.FrozenInstanceError
        On assignment to a field: the result is a frozen dataclass (use
        ``dataclasses.replace`` for a modified copy).

    Notes
    -----
    Read ``converged`` first and ``info`` when it is False: the solvers do
    not raise on non-convergence, and ``x`` is then only the best iterate
    found.  ``info`` is meant for people; its wording is not a stable
    interface, so do not parse it.  Test a possibly missing residual with
    ``math.isnan(res.residual_norm)``.

    Reading ``residual_norm`` into a Python float is one host
    synchronisation at the end of the solve.  On a GPU the solvers check
    convergence only every few iterations (``natgrad.backend.sync_interval``)
    to avoid a synchronisation per step, so ``iterations`` can exceed the
    step at which the tolerance was first met by up to that interval; columns
    that have converged stop changing meanwhile.

    The ``repr`` shows ``x`` by its shape only.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.linalg import cg
    >>> A = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]])
    >>> b = np.array([1.0, 2.0, 3.0])
    >>> res = cg(A, b, rtol=1e-10)
    >>> res.converged, res.iterations, res.info
    (True, 3, 'converged in 3 iterations')
    >>> bool(res.residual_norm <= 1e-10 * np.linalg.norm(b))
    True
    >>> bool(np.allclose(A @ res.x, b))
    True

    Too few iterations: not converged, and ``info`` says why.

    >>> res = cg(A, b, maxiter=1)
    >>> res.converged, res.iterations
    (False, 1)
    >>> res.info.startswith("not converged: maxiter=1 reached")
    True

    Results are immutable:

    >>> import dataclasses
    >>> res.converged = True
    Traceback (most recent call last):
        ...
    dataclasses.FrozenInstanceError: cannot assign to field 'converged'
    >>> dataclasses.replace(res, info="edited").info
    'edited'
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
