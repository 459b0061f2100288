r"""Saddle-free Newton from Hessian-vector products only."""

from __future__ import annotations

import math
import sys
from typing import Any

from .. import backend, validation
from ..linalg.result import SolveStatus
from ..linalg.series import saddle_free_solve
from . import _common

__all__ = ["SaddleFreeNewton"]

METHODS = ("series", "lanczos")
#: the solver's last product is taken as ``H s`` when ``‖s − c v‖ ≤ _REUSE_TOL·eps·‖s‖``
#: (``v`` equals ``x/‖g‖`` to rounding: a loose bound would let a product at another vector through)
_REUSE_TOL = 1024.0


class SaddleFreeNewton(_common.Stateful):
    r"""Saddle-free Newton steps ``θ ← θ − lr·(|H| + λI)⁻¹ g`` (arXiv 2310.14901).

    ``|H|`` replaces each eigenvalue of the Hessian by its absolute value, so
    directions of negative curvature are descended instead of ascended.  The
    product with ``(|H| + λI)⁻¹`` is computed from Hessian-vector products only,
    by the series of Oldewage, Clarke & Hernández-Lobato (``method="series"``,
    optionally Wynn-ε accelerated) or by Lanczos (``method="lanczos"``); see
    :func:`natgrad.linalg.series.saddle_free_solve`.

    Parameters
    ----------
    damping : float, default 1e-2
        ``λ > 0`` (the starting value when ``adapt_damping``).  The default
        is the starting damping of ``benchmarks/bench_sfn.py``.
    terms : int, default 20
        Series terms (two HVPs each) or Lanczos steps (the default of
        :func:`~natgrad.linalg.saddle_free_solve`, and the benchmark's).
    accelerate : bool, default True
        Wynn-ε acceleration of the series (Oldewage et al. 2024).
    method : {"series", "lanczos"}, default "series"
        The paper's series of HVPs, or Lanczos.  On the regression MLP of
        ``benchmarks/bench_sfn.py`` Lanczos reached a 23× lower loss in the
        same 20 s (``benchmarks/results/sfn.md``), and it is the variant that
        leaves the plateaus of ``bench_sfn_saddles.py``; ``"series"`` stays
        the default as the method of the paper.
    lr : float, default 1.0
        Step size (1: the full saddle-free Newton step).
    adapt_damping : bool, default True
        Levenberg–Marquardt adaptation (the benchmark's setting): with the
        reduction ratio ``ρ = (f(θ) − f(θ'))/(−m(s))`` of the quadratic model
        ``m(s) = gᵀs + ½ sᵀHs`` (one extra ``loss_and_grad`` per step, whose
        gradient is not used; ``H s`` is the solver's own check product, see
        Notes),
        ``λ ← max(⅓, 1 − (2ρ − 1)³)·λ`` when ``ρ > ¾`` (between ⅞ at ``ρ = ¾``
        and ⅓ from ``ρ = 1`` on) and ``λ ← λ/0.9`` when ``ρ < ¼``; a step
        that does not decrease the loss (or makes it NaN/Inf) is rejected,
        and the damping then also grows to at least ``lr·‖g‖/(t‖s‖)``, so
        that the next step is at most ``t`` times as long as the rejected
        one (``‖(|H| + λI)⁻¹g‖ ≤ ‖g‖/λ``), with ``t ∈ [0.1, 0.5]`` the
        minimiser of the quadratic through ``f(θ)``, the slope ``gᵀs`` and
        ``f(θ + s)`` (``t = 0.1`` when ``f(θ + s)`` is NaN/Inf).
        ``λ`` never drops below the smallest normal float.

    Raises
    ------
    ValueError
        Non-positive ``damping``/``lr``, ``terms < 1``, unknown ``method``.
    TypeError
        At :meth:`step`, a model without ``hvp`` and ``loss_and_grad``.

    Notes
    -----
    Oldewage, Clarke, Hernández-Lobato, "Series of Hessian-vector products for
    tractable saddle-free Newton optimisation of neural networks", TMLR 2024;
    Dauphin et al., "Identifying and attacking the saddle point problem", 2014.

    The state (:meth:`state_dict`) is the current ``damping`` (it changes
    when ``adapt_damping``) and the step count; :meth:`reset` restores the
    damping given to the constructor.  A step whose loss, gradient,
    direction or new parameters have NaN/Inf is not taken and changes no
    state; a step rejected by the damping adaptation does change the
    damping (that is how Levenberg–Marquardt recovers).

    The growth after a rejection is the backtracking rule of Dennis &
    Schnabel (*Numerical Methods for Unconstrained Optimization*, 1996,
    §6.3.2) applied to the step length through the damping.  It matters
    near saddles: a damping far below the curvature (needed to leave a
    plateau, where ``|H|`` is tiny) makes steps too long once the plateau is
    left, and ``λ/0.9`` per rejected step alone took hundreds of rejected
    steps to recover (``benchmarks/bench_sfn_saddles.py``); now each
    rejection shortens the next step at least twofold.  The decrease when
    the model is good is Nielsen's factor ``max(⅓, 1 − (2ρ − 1)³)`` (Madsen,
    Nielsen & Tingleff, *Methods for Non-Linear Least Squares Problems*,
    2004, eq. 3.16): with ``0.9λ`` alone the damping left behind by the
    steps out of one plateau took ~20 steps to come down to the curvature
    of the next (the deep linear autoencoder learns one singular direction
    per plateau), at ``ρ ≈ 1`` throughout.

    Cost of a step: one ``loss_and_grad``, the solver's products
    (``method="lanczos"``: ``terms + 2``, i.e. ``terms + 1`` for Lanczos and
    one that checks the result; ``"series"``: see
    :func:`~natgrad.linalg.saddle_free_solve`) and, with ``adapt_damping``,
    one more ``loss_and_grad`` for the trial loss.  The quadratic model needs
    ``H s``; the solver's check product is ``H x/‖g‖``, a multiple of the step
    ``s = −lr·x``, so ``H s`` is that product scaled (linearity of ``H``),
    verified to rounding (``‖s − c v‖ ≤ 1024·eps·‖s‖``) in the host
    synchronisation that reads the trial loss; where it is not (a series
    that diverged) one more HVP computes it.  With 3 Lanczos steps that is
    1 + 5 + 1 model calls per step, 12 gradient-equivalents counting an HVP
    as two (it was 14 with a separate product for ``H s``;
    ``benchmarks/bench_sfn_saddles.py``).

    Examples
    --------
    A quadratic with an indefinite Hessian: one full step equals
    ``−(|H| + λI)⁻¹ g`` computed by eigendecomposition.

    >>> import numpy as np
    >>> from natgrad.adapters.callables import CallableModel
    >>> H = np.diag([2.0, -1.0, 0.5])
    >>> b = np.array([1.0, 1.0, 1.0])
    >>> model = CallableModel(
    ...     residuals=lambda p, _: np.atleast_1d(0.5 * p @ H @ p - b @ p),
    ...     loss_and_grad=lambda p, _: (0.5 * p @ H @ p - b @ p, H @ p - b),
    ...     hvp=lambda p, _, v: H @ v, params=np.zeros(3), loss="mean")
    >>> opt = SaddleFreeNewton(damping=0.1, method="lanczos", terms=3, adapt_damping=False)
    >>> p, info = opt.step(model.params, model, None)
    >>> np.round(p, 6)
    array([0.47619 , 0.909091, 1.666667])
    >>> opt.state_dict()
    {'optimizer': 'SaddleFreeNewton', 'damping': 0.1, 'steps': 1}
    """

    STATE = {"damping": "positive", "steps": "count"}

    def __init__(
        self,
        *,
        damping: float = 1e-2,
        terms: int = 20,
        accelerate: bool = True,
        method: str = "series",
        lr: float = 1.0,
        adapt_damping: bool = True,
    ) -> None:
        self.initial_damping = validation.positive(damping, "damping")
        self.terms = validation.positive_int(terms, "terms")
        self.accelerate = bool(accelerate)
        self.method = validation.choice(method, METHODS, "method")
        self.lr = validation.positive(lr, "lr")
        self.adapt_damping = bool(adapt_damping)
        self.reset()

    def _fresh_state(self) -> dict[str, Any]:
        return {"damping": self.initial_damping, "steps": 0}

    @_common.warn_once_per_optimizer
    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        """One saddle-free Newton step.

        Parameters
        ----------
        params, model, batch
            As for :meth:`ENGD.step`; the model needs ``loss_and_grad`` and
            ``hvp``.

        Returns
        -------
        params : array
        info : dict
            ``loss``, ``damping`` (the one used), ``series_converged``,
            ``series_info``, ``lr``, ``step_taken``, ``hvps`` (Hessian-vector
            products: the solver's ``stats["hvps"]``, its check product
            included, plus one when the adaptation had to compute ``H s``
            itself), with adaptation ``rho``, ``time`` and, when no step
            was taken, ``message``; ``warnings`` as for :meth:`ENGD.step`.
        """
        params, xp = _common.begin(params)
        _common.require(model, ("loss_and_grad", "hvp"), "SaddleFreeNewton")
        timer = _common.Timer()
        out = _common.Outputs("SaddleFreeNewton", self.steps + 1, params)
        P = params.shape[0]
        loss, g = model.loss_and_grad(params, batch)
        loss, g = out.scalar(loss, "loss_and_grad"), out.gradient(g)
        (loss0,), (g_finite,) = _common.read(xp, [loss], [g])  # one host synchronisation
        info: dict[str, Any] = {"loss": loss0, "damping": self.damping, "lr": self.lr, "hvps": 0}
        if not (math.isfinite(loss0) and g_finite):
            what = "the model's loss (model.loss_and_grad)" if not math.isfinite(loss0) else out.culprit("")
            info.update(_common.rejection(loss0, what, out.step), time=timer.total())
            return params, info

        last: list[Any] = []  # the solver's latest product (v, H v), for the adaptation's model

        def hvp(v: Any) -> Any:  # shape, dtype and library checked from metadata
            # the model gets a copy: v is kept, and an hvp that writes into its argument must not change it
            Hv = out.array(model.hvp(params, batch, xp.asarray(v, copy=True)), "hvp", (P,))
            out.seen.pop()
            last[:] = (v, Hv)
            return Hv

        res = saddle_free_solve(
            hvp, g, damping=self.damping, terms=self.terms, accelerate=self.accelerate, method=self.method
        )
        timer.lap("direction")
        info.update(series_converged=res.converged, series_info=res.info, hvps=res.stats["hvps"])
        if res.status is SolveStatus.NONFINITE:  # NaN/Inf from the HVPs: the iterate is no direction
            what = "the model's Hessian-vector products (model.hvp)"
            info.update(_common.rejection(loss0, what, out.step), time=timer.total())
            return params, info
        step = -self.lr * res.x
        new_params = params + step
        bad = _common.nonfinite_update(loss0, params, step, new_params, out)
        if bad is not None:
            info.update(bad, time=timer.total())
            return params, info
        info["step_taken"] = True
        damping = self.damping
        if self.adapt_damping:
            damping, accepted, commit = self._adapt(xp, model, batch, params, new_params, g, step, loss0, info, out,
                                                    last)
            if not commit:
                info["time"] = timer.total()
                return params, info
            if not accepted:
                new_params = params
        self._commit(damping=damping, steps=self.steps + 1)
        timer.lap("update")
        info["time"] = timer.total()
        return new_params, info

    def _adapt(
        self, xp: Any, model: Any, batch: Any, params: Any, new_params: Any, g: Any, step: Any, loss0: float,
        info: dict[str, Any], out: Any, last: list[Any],
    ) -> tuple[float, bool, bool]:
        """Levenberg–Marquardt: the next damping, whether the step is kept and
        whether the new state is committed (not when the model's HVP failed).

        ``last`` is the solver's latest product ``(v, H v)``.  The solver's
        final product checks its result ``x`` (:func:`saddle_free_solve`
        evaluates ``H x/‖g‖``), so ``v`` is a multiple ``c`` of the step
        ``s = −lr·x`` and ``H s = c·H v`` by linearity: no HVP here.  That is
        verified, not assumed: ``‖s − c v‖ ≤ 1024·eps·‖s‖`` (``c = vᵀs/vᵀv``),
        read with the other scalars; otherwise (no check product, e.g. a
        diverged series) ``H s`` is computed (one HVP, one more host
        synchronisation)."""
        loss1 = out.scalar(model.loss_and_grad(new_params, batch)[0], "loss_and_grad")
        if last:
            v, Hv = last
            vv = backend.vecdot(xp, v, v)
            c = backend.vecdot(xp, v, step) / xp.where(vv > 0, vv, xp.ones_like(vv))
            Hs, mismatch = c * Hv, _common.scaled_norm(xp, step - c * v)
        else:
            Hs, mismatch = self._product(xp, model, batch, params, step, info, out), 0.0
        slope = backend.vecdot(xp, g, step)
        # one host synchronisation: the new loss, whether H s is finite, the
        # model's decrease gᵀs + ½ sᵀHs (H s zeroed where not finite, so that no
        # arithmetic on Inf warns; its flag says the prediction is void) and
        # whether H s is the solver's product
        (loss1, quad, slope, g_norm, s_norm, mismatch), (hs_finite,) = _common.read(
            xp, [loss1, _quadratic(xp, slope, step, Hs), slope, _common.scaled_norm(xp, g),
                 _common.scaled_norm(xp, step), mismatch], [Hs])
        if not mismatch <= _REUSE_TOL * backend.eps(step.dtype, xp) * s_norm:
            Hs = self._product(xp, model, batch, params, step, info, out)
            (quad,), (hs_finite,) = _common.read(xp, [_quadratic(xp, slope, step, Hs)], [Hs])
        if not hs_finite:  # the model's fault, not a verdict on the step: no step, no adaptation
            info.update(_common.rejection(loss0, "the model's Hessian-vector products (model.hvp)", out.step))
            return self.damping, False, False
        predicted = -quad
        actual = loss0 - loss1
        if not math.isfinite(actual):
            rho = 0.0  # the loss overflowed at θ': the model is not to be trusted this far out
        elif predicted > 0:
            rho = actual / predicted
        else:
            rho = 1.0 if actual > 0 else 0.0
        damping = self.damping
        if rho > 0.75:
            # the better the model, the faster the damping drops (Nielsen's factor, ⅓ for ρ ≥ 1)
            # (ρ ≥ 1 short-circuits: a huge ρ would overflow the cube)
            factor = 1.0 / 3.0 if rho >= 1.0 else max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            damping = max(factor * damping, sys.float_info.min)  # stays a valid (positive) damping
        elif rho < 0.25:
            # capped like the growth after a rejection below: repeated poor
            # steps must not take the damping to Inf, which no state accepts
            damping = min(damping / 0.9, sys.float_info.max)
        info["rho"] = rho
        if not actual > 0:
            # the next step (from the same θ) at most t times as long as this one
            t = _backtrack_fraction(loss0, loss1, slope)
            if s_norm > 0 and math.isfinite(g_norm / s_norm):
                damping = max(damping, min(self.lr * g_norm / (t * s_norm), sys.float_info.max))
            info.update(step_taken=False, lr=0.0, reason="no_decrease",
                        message="the step did not decrease the loss: rejected")
            return damping, False, True
        return damping, True, True

    @staticmethod
    def _product(xp: Any, model: Any, batch: Any, params: Any, step: Any, info: dict[str, Any], out: Any) -> Any:
        """``H s`` from the model (a copy of ``s``: the model may write into its argument)."""
        info["hvps"] += 1
        return out.array(model.hvp(params, batch, xp.asarray(step, copy=True)), "hvp", (params.shape[0],))


def _quadratic(xp: Any, slope: Any, step: Any, Hs: Any) -> Any:
    """``gᵀs + ½ sᵀHs`` with ``H s`` zeroed where not finite (no arithmetic on
    Inf, which warns; the caller reads ``H s``'s finiteness with it)."""
    return slope + 0.5 * backend.vecdot(xp, step, xp.where(xp.isfinite(Hs), Hs, xp.zeros_like(Hs)))


def _backtrack_fraction(loss0: float, loss1: float, slope: float) -> float:
    """The minimiser ``t`` of the quadratic ``q`` with ``q(0) = f(θ)``,
    ``q'(0) = gᵀs`` and ``q(1) = f(θ + s)``, clipped to ``[0.1, 0.5]``
    (Dennis & Schnabel 1996, §6.3.2); ``0.1`` when ``f(θ + s)`` is not
    finite, ``0.5`` when ``s`` is no descent direction."""
    if not math.isfinite(loss1):
        return 0.1
    curvature = loss1 - loss0 - slope
    if not (slope < 0 and curvature > 0):
        return 0.5
    return min(0.5, max(0.1, -slope / (2.0 * curvature)))
