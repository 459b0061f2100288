r"""Saddle-free Newton from Hessian-vector products only."""

from __future__ import annotations

from typing import Any

from .. import backend
from ..linalg.series import saddle_free_solve
from . import _common

__all__ = ["SaddleFreeNewton"]

METHODS = ("series", "lanczos")


class SaddleFreeNewton:
    r"""Saddle-free Newton steps ``θ ← θ − lr·(|H| + λI)⁻¹ g`` (arXiv 2310.14901).

    ``|H|`` replaces each eigenvalue of the Hessian by its absolute value, so
    directions of negative curvature are descended instead of ascended.  The
    product with ``(|H| + λI)⁻¹`` is computed from Hessian-vector products only,
    by the series of Oldewage, Clarke & Hernández-Lobato (``method="series"``,
    optionally Wynn-ε accelerated) or by Lanczos (``method="lanczos"``); see
    :func:`natgrad.linalg.series.saddle_free_solve`.

    Parameters
    ----------
    damping : float
        ``λ > 0``.
    terms : int
        Series terms (two HVPs each) or Lanczos steps.
    accelerate : bool
        Wynn-ε acceleration of the series.
    method : {"series", "lanczos"}
    lr : float
        Step size (1: the full saddle-free Newton step).
    adapt_damping : bool
        Levenberg–Marquardt adaptation: with the reduction ratio
        ``ρ = (f(θ) − f(θ'))/(−m(s))`` of the quadratic model
        ``m(s) = gᵀs + ½ sᵀHs`` (one extra HVP), ``λ ← 0.9λ`` when ``ρ > ¾`` and
        ``λ ← λ/0.9`` when ``ρ < ¼``; a step that increases the loss is
        rejected.

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
    >>> opt = SaddleFreeNewton(damping=0.1, method="lanczos", terms=3)
    >>> p, info = opt.step(model.params, model, None)
    >>> np.round(p, 6)
    array([0.47619 , 0.909091, 1.666667])
    """

    def __init__(
        self,
        damping: float,
        terms: int = 20,
        accelerate: bool = True,
        method: str = "series",
        *,
        lr: float = 1.0,
        adapt_damping: bool = False,
    ) -> None:
        self.damping = _common.positive(damping, "damping")
        if not isinstance(terms, int) or isinstance(terms, bool) or terms < 1:
            raise ValueError(f"terms must be an int ≥ 1, got {terms!r}")
        self.terms = terms
        self.accelerate = bool(accelerate)
        self.method = _common.choice(method, METHODS, "method")
        self.lr = _common.positive(lr, "lr")
        self.adapt_damping = bool(adapt_damping)
        self.steps = 0

    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        """One saddle-free Newton step; ``info`` has ``loss``, ``damping``,
        ``series_converged``, ``hvps`` and, with adaptation, ``rho``."""
        _common.require(model, ("loss_and_grad", "hvp"), "SaddleFreeNewton")
        timer = _common.Timer()
        xp = backend.namespace(params=params)
        loss, g = model.loss_and_grad(params, batch)
        loss0 = backend.to_float(loss)

        hvps = [0]

        def hvp(v: Any) -> Any:
            hvps[0] += 1
            return model.hvp(params, batch, v)

        res = saddle_free_solve(
            hvp, g, damping=self.damping, terms=self.terms, accelerate=self.accelerate, method=self.method
        )
        timer.lap("direction")
        info: dict[str, Any] = {
            "loss": loss0,
            "damping": self.damping,
            "series_converged": res.converged,
            "series_info": res.info,
            "lr": self.lr,
        }
        step = -self.lr * res.x
        if not backend.all_finite(step):
            info.update(step_taken=False, hvps=hvps[0], message="the saddle-free solve returned NaN/Inf: no step taken")
            return params, info
        new_params = params + step
        info["step_taken"] = True
        if self.adapt_damping:
            loss1 = backend.to_float(model.loss_and_grad(new_params, batch)[0])
            predicted = -backend.to_float(xp.vecdot(g, step) + 0.5 * xp.vecdot(step, hvp(step)))
            actual = loss0 - loss1
            rho = actual / predicted if predicted > 0 else (1.0 if actual > 0 else 0.0)
            if rho > 0.75:
                self.damping *= 0.9
            elif rho < 0.25:
                self.damping /= 0.9
            info["rho"] = rho
            if not actual > 0:
                info.update(step_taken=False, message="the step did not decrease the loss: rejected")
                new_params = params
        self.steps += 1
        info["hvps"] = hvps[0]
        timer.lap("update")
        info["time"] = timer.total()
        return new_params, info
