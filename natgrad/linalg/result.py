"""The result type every natgrad solver returns, and its failure vocabulary."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SolveResult", "SolveStatus", "SolveError"]


class SolveStatus(str, enum.Enum):
    """Why a solver stopped: the program-readable part of a :class:`SolveResult`.

    A ``str`` enum: each member equals its value (``SolveStatus.MAXITER ==
    "maxiter"``), so it can be compared with, logged and serialised as a plain
    string.

    Parameters
    ----------
    value : str
        ``SolveStatus(value)`` looks a member up by its value (the string a
        result was logged or serialised as).

    Attributes
    ----------
    CONVERGED : "converged"
        The stopping rule was met (the only status with ``converged=True``).
    MAXITER : "maxiter"
        The iteration (or term) limit was reached first.  Raise ``maxiter``
        (``terms``) or precondition.
    STAGNATION : "stagnation"
        The recursively updated residual met the tolerance but the true
        residual, recomputed from ``x``, did not, and restarting did not get
        it there: the tolerance is below the accuracy attainable in this
        precision (float32 with an ill-conditioned operator), or the
        operator changed during the solve.  Loosen ``rtol``, precondition,
        or solve in float64.
    INDEFINITE : "indefinite"
        An operator that must be positive definite is not: ``A`` in CG
        (``pᵀAp ≤ 0``), the preconditioner ``M`` in CG or MINRES
        (``rᵀMr ≤ 0``), ``A + damping·I`` in the Neumann series (a Rayleigh
        quotient ``≤ −damping``).  ``info`` says which.
    SINGULAR : "singular"
        The system is (numerically) singular and the right-hand side is not
        in its range (MINRES; ``x`` is then a least-squares solution), or
        ``|H| + damping·I`` is singular to rounding (saddle-free Lanczos).
    DIVERGED : "diverged"
        A series diverged: the step ``alpha`` (Neumann) or the scale
        (saddle-free) is wrong for the operator's spectrum; ``info`` says
        which value to use.
    NONFINITE : "nonfinite"
        NaN or Inf appeared, from the operator, the preconditioner or the
        Hessian-vector product (or an overflow).  ``x`` is the last finite
        iterate.

    Raises
    ------
    ValueError
        ``SolveStatus(value)`` with a string that is not one of the values.

    Notes
    -----
    The members are what the solvers really distinguish; ``info`` adds the
    detail for people (which operator was indefinite, which value to use).
    Test ``res.converged`` (or ``res.status is SolveStatus.CONVERGED``) for
    success, and dispatch on the status for a recovery: ``MAXITER`` → more
    iterations, ``INDEFINITE`` → more damping or MINRES, ``DIVERGED`` → a
    smaller step or a larger scale, ``NONFINITE`` → look at the operator.

    Examples
    --------
    >>> from natgrad.linalg import SolveStatus
    >>> SolveStatus("maxiter") is SolveStatus.MAXITER
    True
    >>> SolveStatus.MAXITER == "maxiter"
    True
    """

    CONVERGED = "converged"
    MAXITER = "maxiter"
    STAGNATION = "stagnation"
    INDEFINITE = "indefinite"
    SINGULAR = "singular"
    DIVERGED = "diverged"
    NONFINITE = "nonfinite"

    def __str__(self) -> str:
        return self.value


class SolveError(RuntimeError):
    """A solve that did not converge, raised by :meth:`SolveResult.raise_if_failed`.

    Parameters
    ----------
    result : SolveResult
        The failed result; kept as :attr:`result`.

    Attributes
    ----------
    result : SolveResult
        The whole result: ``status``, ``stats``, ``info`` and the best
        iterate ``x``.
    status : SolveStatus
        ``result.status``.

    Raises
    ------
    SolveError
        Never by its constructor; :meth:`SolveResult.raise_if_failed` raises
        it for a result that did not converge.

    Notes
    -----
    A ``RuntimeError``: a solve that fails is a run-time event, not a bad
    argument.  The message is ``"solve failed (<status>): <info>"``.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.linalg import SolveError, cg
    >>> A = np.diag([1.0, 10.0, 100.0])
    >>> try:
    ...     cg(A, np.ones(3), maxiter=1).raise_if_failed()
    ... except SolveError as err:
    ...     print(err.status, err.result.iterations)
    maxiter 1
    """

    def __init__(self, result: "SolveResult") -> None:
        super().__init__(f"solve failed ({result.status.value}): {result.info}")
        self.result = result
        self.status = result.status


@dataclass(frozen=True)
class SolveResult:
    """Outcome of an iterative or series solver.

    The iterative and series solvers of :mod:`natgrad.linalg` (``cg``,
    ``minres``, ``nystrom_pcg``, ``neumann_solve``, ``saddle_free_solve``)
    return one; a failure to converge is reported here, never raised (call
    :meth:`raise_if_failed` to turn it into an exception).

    Parameters
    ----------
    x : array
        The computed solution, in the namespace, device and dtype of the
        right-hand side; shape ``(n,)`` or ``(n, k)``.  When
        ``converged`` is False it is the solver's best available finite
        iterate (for ``cg`` and ``minres`` the one with the smallest true
        residual among the start and the ends of their restart cycles, a
        cycle ending at its last finite iterate; for the series solvers the
        partial sum with the smallest residual or term), possibly zero.
    converged : bool
        True exactly when ``status`` is ``SolveStatus.CONVERGED``: the
        solver's stopping rule was met (for several right-hand sides: by
        every column).  For ``saddle_free_solve`` it means the method ran to
        its end without divergence; it certifies no tolerance.
    iterations : int
        Iterations done (operator applications in the main loop; for series
        solvers the number of terms summed, or Lanczos steps).
    residual_norm : float
        The 2-norm of the residual of ``x`` (for several right-hand sides the
        largest over the columns), as a Python float.  Krylov solvers
        recompute it from ``x`` rather than trusting the recurrence
        (``‖b − A x‖``; MINRES for ``A − shift·I``, Nyström-PCG for
        ``A + damping·I``); ``neumann_solve`` reports ``‖v − (A + λI)x‖``.
        ``saddle_free_solve`` cannot form its residual ``(|H| + λI)x − g``
        from Hessian-vector products (``|H|`` is never available) and
        reports ``nan``; its error estimate is ``stats["error_estimate"]``.
    status : SolveStatus or str
        Why the solver stopped (a string is converted); see
        :class:`SolveStatus` for what each value means and which solver
        returns it.
    stats : dict
        Counters and estimates for programs, present where the solver has
        them: ``"matvecs"`` (calls of the operator ``A``, each on a vector
        or on a block of columns), ``"preconditioner_applications"``,
        ``"hvps"`` (Hessian-vector products of the series solvers, those of
        automatic parameter estimates included), ``"restarts"``,
        ``"error_estimate"`` (``saddle_free_solve``: an estimate of the
        relative error ``‖x − x*‖/‖x‖``), ``"residual_history"`` (only when
        asked for with ``record_history=True``), ``"rank"`` (the sketch rank
        of ``nystrom_pcg``).  Empty by default.
    info : str
        A sentence for people: why the solver stopped, and on failure what
        went wrong and what to change.  Empty by default.

    Raises
    ------
    ValueError
        At construction, when ``converged`` disagrees with ``status`` or
        ``status`` is not a :class:`SolveStatus` value.
    dataclasses.FrozenInstanceError
        On assignment to a field: the result is a frozen dataclass (use
        ``dataclasses.replace`` for a modified copy).

    Notes
    -----
    Read ``converged`` (or ``status``) first: the solvers do not raise on
    non-convergence, and ``x`` is then only the best iterate found.
    ``info`` is meant for people; its wording is not a stable interface, so
    do not parse it — ``status`` and ``stats`` are the interface.  Test a
    possibly missing residual with ``math.isnan(res.residual_norm)``.

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
    >>> from natgrad.linalg import SolveStatus, cg
    >>> A = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]])
    >>> b = np.array([1.0, 2.0, 3.0])
    >>> res = cg(A, b, rtol=1e-10)
    >>> res.converged, res.status, res.iterations, res.info
    (True, <SolveStatus.CONVERGED: 'converged'>, 3, 'converged in 3 iterations')
    >>> res.stats
    {'matvecs': 4, 'preconditioner_applications': 0, 'restarts': 0}
    >>> bool(res.residual_norm <= 1e-10 * np.linalg.norm(b))
    True
    >>> bool(np.allclose(A @ res.x, b))
    True

    Too few iterations: not converged, and ``status`` says why.

    >>> res = cg(A, b, maxiter=1)
    >>> res.converged, res.status == SolveStatus.MAXITER, res.iterations
    (False, True, 1)
    >>> res.raise_if_failed()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    natgrad.linalg.result.SolveError: solve failed (maxiter): not converged: maxiter=1 reached ...

    A converged result passes through, so a solve can be chained:

    >>> x = cg(A, b, rtol=1e-10).raise_if_failed().x

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
    status: SolveStatus
    stats: dict = field(default_factory=dict)
    info: str = ""

    def __post_init__(self) -> None:
        try:
            status = SolveStatus(self.status)
        except ValueError:
            options = ", ".join(repr(s.value) for s in SolveStatus)
            raise ValueError(f"status must be one of {options}; got {self.status!r}") from None
        object.__setattr__(self, "status", status)
        if bool(self.converged) != (status is SolveStatus.CONVERGED):
            raise ValueError(
                f"converged={self.converged} contradicts status={status.value!r}: a result is "
                "converged exactly when its status is 'converged'"
            )

    def raise_if_failed(self) -> "SolveResult":
        """This result if it converged; otherwise raise :class:`SolveError`.

        Returns
        -------
        SolveResult
            ``self``, when ``converged`` is True.

        Raises
        ------
        SolveError
            When ``converged`` is False; ``err.result`` is this result.

        Examples
        --------
        >>> import numpy as np
        >>> from natgrad.linalg import cg
        >>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
        >>> x = cg(A, np.array([1.0, 2.0]), rtol=1e-10).raise_if_failed().x
        >>> try:
        ...     cg(A, np.array([1.0, 2.0]), maxiter=1).raise_if_failed()
        ... except SolveError as err:
        ...     print(err.result.status)
        maxiter
        """
        if not self.converged:
            raise SolveError(self)
        return self

    def __repr__(self) -> str:
        shape = tuple(getattr(self.x, "shape", ()))
        return (
            f"SolveResult(x=<array shape={shape}>, converged={self.converged}, "
            f"iterations={self.iterations}, residual_norm={self.residual_norm:.3e}, "
            f"status={self.status.value!r}, stats={self.stats!r}, info={self.info!r})"
        )
