r"""Energy natural gradient descent (ENGD) and its Woodbury, Nyström and CG forms.

For residuals ``r(θ) ∈ ℝᴺ`` with Jacobian ``J ∈ ℝᴺˣᴾ`` and loss ``½‖r‖²``,
ENGD (Müller & Zeinhofer, ICML 2023) steps along the damped Gauss–Newton
direction

.. math::  d = (JᵀJ + λI_P)^{-1} Jᵀ r = Jᵀ (JJᵀ + λI_N)^{-1} r,

the second form by the push-through identity (Guzmán-Cordero, Dangel,
Goldshlager, Zeinhofer, arXiv 2505.12149, "ENGD-W"), and updates
``θ ← θ − η d`` with ``η`` from a grid line search.
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend, validation
from ..linalg.krylov import cg
from ..linalg.nystrom import nystrom, nystrom_pcg
from ..linalg.operators import from_matvec, shifted
from ..linalg.result import SolveStatus
from ..linalg.woodbury import SPDFactor, Woodbury
from . import _common

__all__ = ["ENGD", "gauss_newton_direction"]

SOLVERS = ("woodbury", "dense", "nystrom", "cg")


def _dense_direction(xp: Any, J: Any, r: Any, damping: float) -> tuple[Any, str]:
    """(JᵀJ + λI)⁻¹ Jᵀ r in parameter space (the original ENGD).

    The factorisation falls back like :class:`~natgrad.linalg.Woodbury`'s when
    rounding makes ``JᵀJ + λI`` numerically indefinite (λ below eps·‖J‖²):
    jitter growing from eps·trace/P, then a clamped eigendecomposition.
    """
    Jt = xp.matrix_transpose(J)
    G = backend.gram(Jt)
    # NaN/Inf anywhere in J shows on the diagonal of JᵀJ: P numbers to check, not N·P.
    if not backend.all_finite(xp.linalg.diagonal(G)):
        if not backend.all_finite(J):
            raise ValueError("J contains NaN or Inf")
        raise ValueError(f"JᵀJ overflows in {J.dtype}: scale J down (and the damping by the square of the factor)")
    factor = SPDFactor(G, damping, "the P × P Gram matrix JᵀJ + λI")
    return factor.solve(Jt @ r), factor.method


def gauss_newton_direction(
    J: Any,
    r: Any,
    damping: float,
    *,
    solver: str = "woodbury",
    rank: int | None = None,
    seed: int | None = 0,
) -> tuple[Any, dict[str, Any]]:
    r"""The damped Gauss–Newton direction ``(JᵀJ + λI)⁻¹ Jᵀ r`` from an explicit ``J``.

    Parameters
    ----------
    J : array, shape (N, P)
    r : array, shape (N,)
    damping : float
        ``λ > 0``.
    solver : {"woodbury", "dense", "nystrom"}
        Sample space (``O(N²P)``), parameter space (``O(P³)``) or a rank-``rank``
        Nyström sketch-and-solve of ``JJᵀ`` (``O(N P rank)``).
    rank : int, optional
        Nyström rank; default 10 % of ``N``.
    seed : int, optional
        Seed of the Nyström test matrix.

    Returns
    -------
    d : array, shape (P,)
    details : dict
        What the solver did: ``{"factorisation": "cholesky" | "cholesky+jitter"
        | "eigh"}`` for ``"woodbury"``/``"dense"`` (the latter two are
        fallbacks), ``{"rank": rank}`` for ``"nystrom"``.

    Raises
    ------
    ValueError
        Unknown ``solver`` (``"cg"`` included: it needs the model, see
        ``ENGD``); with every solver ``damping ≤ 0``, ``J`` not a non-empty
        2-D array, ``r`` not of shape ``(N,)``, NaN/Inf in ``J`` or ``r``
        (for ``"dense"`` read off the diagonal of ``JᵀJ``); with
        ``"nystrom"`` also ``rank < 1``.
    TypeError
        ``J`` and ``r`` from different array libraries; a non-real
        ``damping``; with ``"woodbury"`` a complex
        ``J``; with ``"nystrom"`` a ``seed`` that is not None, an int or a
        NumPy Generator.

    Warns
    -----
    FactorizationWarning
        (``natgrad.linalg.FactorizationWarning``) when the Cholesky
        factorisation of ``JJᵀ + λI`` (``"woodbury"``) or ``JᵀJ + λI``
        (``"dense"``) fails in floating point and a jittered Cholesky or a
        clamped eigendecomposition is used instead.

    Notes
    -----
    The direction minimises ``½‖r − J d‖² + ½λ‖d‖²`` (the linearised
    least-squares problem with Tikhonov damping).  By the push-through
    identity

    .. math::  (JᵀJ + λI_P)^{-1} Jᵀ r = Jᵀ (JJᵀ + λI_N)^{-1} r

    it can be computed in sample space (``"woodbury"``: an ``N × N`` Cholesky,
    the ENGD-W of arXiv 2505.12149, cheap when ``N ≪ P``) or in parameter
    space (``"dense"``: a ``P × P`` Cholesky, cheap when ``P ≪ N``); both are
    exact up to rounding.  ``"nystrom"`` replaces ``JJᵀ`` by a randomized
    rank-``rank`` Nyström approximation ``K̂`` built from products with
    ``J`` and ``Jᵀ`` and returns ``Jᵀ (K̂ + λI)⁻¹ r``, deterministic for a
    fixed ``seed``.  It is exact up to rounding once ``rank ≥ rank(J)``
    (``rank`` is clipped to ``N``); below that, the part of ``r`` outside the
    sketched range is divided by ``λ`` alone, so for small ``λ`` the
    direction can be far longer than the exact one.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> J, r = rng.standard_normal((5, 12)), rng.standard_normal(5)
    >>> d_w, _ = gauss_newton_direction(J, r, 1e-3)
    >>> d_d, _ = gauss_newton_direction(J, r, 1e-3, solver="dense")
    >>> bool(np.allclose(d_w, d_d))
    True
    """
    xp = backend.namespace(J=J, r=r)
    damping = validation.positive(damping, "damping")
    if J.ndim != 2 or 0 in tuple(J.shape):
        raise ValueError(f"J must be a non-empty 2-D array, got shape {tuple(J.shape)}")
    validation.rhs(r, J.shape[0], "r", allow_block=False)
    if solver == "dense":
        d, how = _dense_direction(xp, J, r, damping)
        return d, {"factorisation": how}
    if solver == "woodbury":
        W = Woodbury(J, damping)
        return W.solve_sample(r), {"factorisation": getattr(W, "method", "cholesky")}
    if solver == "nystrom":
        N = J.shape[0]
        rank = max(1, N // 10) if rank is None else min(int(rank), N)
        Jt = xp.matrix_transpose(J)
        kernel = from_matvec(
            lambda v: J @ (Jt @ v), (N, N), J.dtype, matmat=lambda V: J @ (Jt @ V)
        )
        approx = nystrom(kernel, rank, seed=seed, like=r)
        return Jt @ approx.solve(r, damping), {"rank": rank}
    raise ValueError(f"solver must be one of {SOLVERS[:3]} for an explicit Jacobian, got {solver!r}")


class ENGD(_common.Stateful):
    r"""Energy natural gradient descent for least-squares losses ``½‖r(θ)‖²``.

    Parameters
    ----------
    damping : float, default 1e-6
        ``λ > 0`` in ``(JᵀJ + λI)⁻¹ Jᵀ r``.  The default is the best of
        ``{1e-8, 1e-6}`` on the convergence race of
        ``benchmarks/bench_pinn.py`` (5-D Poisson PINN, float64); in float32
        use a larger value (1e-4 or more), since ``JJᵀ`` is then only known to
        about ``1e-7·‖J‖²``.
    solver : {"woodbury", "dense", "nystrom", "cg"}, default "woodbury"
        * ``"woodbury"``: ``Jᵀ (JJᵀ + λI)⁻¹ r``, one Cholesky of an
          ``N × N`` matrix — the method of choice when ``N ≪ P``;
        * ``"dense"``: the ``P × P`` Gram matrix ``JᵀJ + λI`` — the original ENGD;
        * ``"nystrom"``: sketch-and-solve with a rank-``rank`` randomized
          Nyström approximation of ``JJᵀ``;
        * ``"cg"``: matrix-free conjugate gradients on ``(JJᵀ + λI) α = r`` in
          sample space using only ``model.jvp`` and ``model.vjp`` (``J`` is
          never formed), Nyström-preconditioned when ``rank`` is given.
    line_search : bool, default True
        Choose ``η`` from the grid ``lr·{2⁰, 2⁻¹, …, 2⁻³⁰}`` by the batch loss
        and keep the best (Müller & Zeinhofer 2023); if no step size lowers
        the loss, no step is taken (``info["step_taken"] = False``).
    lr : float, optional
        Fixed step size when ``line_search=False`` (default 1, the full
        Gauss–Newton step); the largest grid value otherwise (default 1).
    rank : int, optional
        Nyström rank (``solver="nystrom"``; default 10 % of ``N``) or the rank
        of the Nyström preconditioner (``solver="cg"``; none by default).
    cg_rtol : float, default 1e-8
        Relative residual tolerance of the inner CG (``solver="cg"``).
    cg_maxiter : int, optional
        Iteration limit of the inner CG (default: CG's own, ``10 N``).
    seed : int or None, default 0
        Seed of the Nyström sketches: every step draws the same test matrix,
        so runs are reproducible (None: a fresh one each step).

    Raises
    ------
    ValueError
        Non-positive ``damping``, ``lr``, ``cg_rtol``, ``rank`` or
        ``cg_maxiter``, unknown ``solver``; at :meth:`step`, a model whose
        loss is not "squared".
    TypeError
        A hyper-parameter of the wrong type; at :meth:`step`, a model without
        the methods the solver needs.

    Notes
    -----
    Müller & Zeinhofer, "Achieving high accuracy with PINNs via energy natural
    gradient descent", ICML 2023; Guzmán-Cordero et al., arXiv 2505.12149
    (ENGD-W, Nyström ENGD).  The step is

    .. math::  θ_{k+1} = θ_k − η_k\, Jᵀ (JJᵀ + λI)^{-1} r,

    ``η_k = argmin_{η ∈ grid} ½‖r(θ_k − η d)‖²``.  The only state is the
    step count (:meth:`state_dict`).  A step whose loss, Jacobian, direction
    or new parameters have NaN/Inf is not taken: ``params`` come back
    unchanged with ``info["step_taken"] = False`` and a ``message``, and the
    state is unchanged.

    On dask arrays (a model whose residuals and Jacobian are dask arrays, for
    ``N`` beyond one machine) ``solver="dense"`` scales out: ``JᵀJ`` is a
    reduction over ``J``'s row chunks and only the ``P × P`` Cholesky runs as
    one task.  Each step persists ``r`` and ``J`` (they are read several
    times; ``J`` then occupies the cluster's memory for the step) and the new
    parameters (so step 100 costs what step 1 does); see the "Scaling out"
    guide.

    Examples
    --------
    A linear least-squares problem ``r(θ) = Aθ − y`` is solved in one step:

    >>> import numpy as np
    >>> from natgrad.adapters.callables import CallableModel
    >>> rng = np.random.default_rng(0)
    >>> A, y = rng.standard_normal((8, 20)), rng.standard_normal(8)
    >>> model = CallableModel(residuals=lambda p, b: A @ p - y,
    ...                       jacobian=lambda p, b: A, params=np.zeros(20))
    >>> opt = ENGD(damping=1e-10)
    >>> params, info = opt.step(model.params, model, None)
    >>> bool(np.linalg.norm(A @ params - y) < 1e-6), info["step_taken"]
    (True, True)
    >>> opt.state_dict()
    {'optimizer': 'ENGD', 'steps': 1}
    """

    STATE = {"steps": "count"}

    def __init__(
        self,
        *,
        damping: float = 1e-6,
        solver: str = "woodbury",
        line_search: bool = True,
        lr: float | None = None,
        rank: int | None = None,
        cg_rtol: float = 1e-8,
        cg_maxiter: int | None = None,
        seed: int | None = 0,
    ) -> None:
        self.damping = validation.positive(damping, "damping")
        self.solver = validation.choice(solver, SOLVERS, "solver")
        self.line_search = bool(line_search)
        self.lr = validation.optional_positive(lr, "lr")
        self.rank = validation.optional_positive_int(rank, "rank")
        self.cg_rtol = validation.positive(cg_rtol, "cg_rtol")
        self.cg_maxiter = validation.optional_positive_int(cg_maxiter, "cg_maxiter")
        self.seed = seed
        self.reset()

    def _fresh_state(self) -> dict[str, Any]:
        return {"steps": 0}

    def direction(self, params: Any, model: Any, batch: Any) -> tuple[Any, Any, dict[str, Any]]:
        """The ENGD direction at ``params``: ``(d, r, details)``.

        Parameters
        ----------
        params, model, batch
            As for :meth:`step`.

        Returns
        -------
        d : array, shape (P,)
            The direction (``θ − η d`` is the step).
        r : array, shape (N,)
            The residuals at ``params``.
        details : dict
            What the solver did (see :func:`gauss_newton_direction`; for
            ``"cg"`` the iterations, convergence and ``info`` of CG).

        Raises
        ------
        ValueError
            NaN or Inf in the residuals or the Jacobian, or met by CG
            (:meth:`step` turns these into a step not taken).
        TypeError
            A model without the methods the solver needs.
        """
        params, _ = _common.begin(params)
        out = _common.Outputs("ENGD", self.steps + 1, params)
        r, J = self._residuals_and_jacobian(params, model, batch, out)
        d, details = self._solve(params, model, batch, r, J, out)
        if d is None:
            raise ValueError(f"CG on JJᵀ + λI met NaN or Inf: {details['cg_info']}")
        return d, r, details

    def _residuals_and_jacobian(self, params: Any, model: Any, batch: Any, out: Any) -> tuple[Any, Any]:
        """``(r, J)`` checked; ``J`` is None for ``solver="cg"``, which never forms it."""
        if self.solver == "cg":
            _common.require(model, ("residuals", "jvp", "vjp"), "ENGD(solver='cg')")
            return out.residuals(model.residuals(params, batch)), None
        _common.require(model, ("residuals", "jacobian"), f"ENGD(solver={self.solver!r})")
        method = "residuals_and_jacobian" if callable(getattr(model, "residuals_and_jacobian", None)) else "jacobian"
        r, J = _common.residuals_and_jacobian(model, params, batch)
        r = out.residuals(r, method if method != "jacobian" else "residuals")
        return r, out.jacobian(J, r.shape[0], method)

    def _solve(self, params: Any, model: Any, batch: Any, r: Any, J: Any, out: Any) -> tuple[Any, dict[str, Any]]:
        if J is not None:
            return gauss_newton_direction(J, r, self.damping, solver=self.solver, rank=self.rank, seed=self.seed)
        N, P = r.shape[0], params.shape[0]

        def kernel(v: Any) -> Any:  # J Jᵀ v, never forming J (outputs checked, metadata only)
            u = out.array(model.vjp(params, batch, v), "vjp", (P,))
            out.seen.pop()
            w = out.array(model.jvp(params, batch, u), "jvp", (N,))
            out.seen.pop()
            return w

        K = from_matvec(kernel, (N, N), r.dtype)
        if self.rank is None:
            res = cg(shifted(K, self.damping), r, rtol=self.cg_rtol, maxiter=self.cg_maxiter)
        else:
            res = nystrom_pcg(K, r, min(self.rank, N), damping=self.damping, seed=self.seed,
                              rtol=self.cg_rtol, maxiter=self.cg_maxiter)
        details = {"cg_iterations": res.iterations, "cg_converged": res.converged, "cg_info": res.info}
        if res.status is SolveStatus.NONFINITE:  # NaN/Inf from the JVPs/VJPs: no direction
            return None, details
        return out.array(model.vjp(params, batch, res.x), "vjp", (P,)), details

    @_common.warn_once_per_optimizer
    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        """One ENGD step.

        Parameters
        ----------
        params : array, shape (P,)
            Flat parameters (the model's array type).
        model : adapter model
            With ``loss="squared"``; needs ``residuals`` and ``jacobian`` (or
            ``jvp``/``vjp`` for ``solver="cg"``).
        batch : any
            Passed to the model.

        Returns
        -------
        params : array, shape (P,)
            The updated parameters (a new array; the input is not modified),
            or ``params`` itself when no step was taken.
        info : dict
            ``loss`` (before the step), ``lr`` (the step size taken, 0 when
            none), ``step_taken``, ``direction_norm``, solver details,
            ``time`` (seconds per phase) and, when no step was taken, a
            ``message`` saying why.  ``warnings``: the natgrad warnings of the
            step (e.g. a ``FactorizationWarning`` of the float32 Gram
            matrix), present when there were any; each kind is shown only
            the first time on this optimiser (``reset()`` shows it again;
            the ``warnings`` filters apply as usual).
        """
        params, xp = _common.begin(params)
        _common.require_kind(model, "squared", "ENGD")
        timer = _common.Timer()
        out = _common.Outputs("ENGD", self.steps + 1, params)
        r, J = self._residuals_and_jacobian(params, model, batch, out)
        # dask: r and J are read several times (the loss, the checks, JᵀJ and
        # Jᵀr); computed once here, in the cluster's memory, instead of at
        # each read.  A no-op for eager arrays.
        r, J = backend.persist(r, J)
        loss0 = backend.to_float(_common.loss_of(xp, r, "squared"))
        if not math.isfinite(loss0):
            return params, {**_common.loss_rejection(loss0, out), "time": timer.total()}
        try:
            d, details = self._solve(params, model, batch, r, J, out)
        except ValueError as err:
            # the solvers refuse a J with NaN/Inf or whose Gram matrix overflows
            # (read off a Gram diagonal, at no extra cost): a step not taken;
            # any other error is a bug and goes through
            if J is None:
                raise
            return params, {**_common.factor_rejection(err, J, loss0, out), "time": timer.total()}
        if d is None:
            what = "the model's Jacobian-vector products (model.jvp/model.vjp)"
            return params, {**_common.rejection(loss0, what, out.step), **details, "time": timer.total()}
        timer.lap("direction")
        new_params, info, finite = _common.take_step(
            params, d, model, batch, loss0, "squared", lr=self.lr, line_search=self.line_search, outputs=out
        )
        timer.lap("line_search" if self.line_search else "update")
        if finite:
            self._commit(steps=self.steps + 1)
        info.update(details)
        info["time"] = timer.total()
        # dask: the next step starts from these values, not from the graph of
        # every step so far (whose cost would grow with the step count).
        return backend.persist(new_params), info
