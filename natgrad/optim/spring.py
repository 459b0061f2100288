r"""SPRING: subsampled projected-increment natural gradient with momentum."""

from __future__ import annotations

import math
from typing import Any

from .. import backend, validation
from ..linalg.woodbury import Woodbury
from . import _common

__all__ = ["SPRING"]


class SPRING(_common.Stateful):
    r"""SPRING (Goldshlager, Abrahamsen & Lin 2024) for least-squares losses.

    Parameters
    ----------
    damping : float, default 1e-6
        ``λ > 0``.  The default is :class:`ENGD`'s (the measured best of
        ``benchmarks/bench_pinn.py``'s sweep), so that ``momentum=0`` is
        ENGD-W with its defaults.
    momentum : float, default 0.0633
        ``μ ∈ [0, 1)``; ``μ = 0`` gives ENGD-W exactly.  The default is the
        momentum of the best SPRING run on the 5-D Poisson PINN of
        Guzmán-Cordero et al., arXiv 2505.12149 (their code, rla-pinns
        ``exp1_poisson5d/best_runs``; ``PAPER_SPRING`` in
        ``benchmarks/bench_pinn.py``, where it reaches a relative L2 error of
        1e-3 before ENGD-W does).  SPRING's original setting for neural
        wavefunctions (Goldshlager et al. 2024) is ``μ = 0.99`` with a fixed
        ``lr`` and ``norm_cap``.
    lr : float, optional
        Fixed step size.  Without it (the default) the step size comes from
        the ENGD grid line search over ``{2⁰, …, 2⁻³⁰}``.
    norm_cap : float, optional
        ``C > 0``: with ``lr`` the step size becomes ``min(lr, √C/‖φ̂_k‖)``
        (the norm constraint of the SPRING paper).  None by default.

    Raises
    ------
    ValueError
        Non-positive ``damping``/``lr``/``norm_cap``, ``momentum`` outside
        ``[0, 1)``; at :meth:`step`, a model whose loss is not "squared".

    Notes
    -----
    Goldshlager, Abrahamsen, Lin, "A Kaczmarz-inspired approach to accelerate
    the optimization of neural network wavefunctions", J. Comput. Phys. 2024;
    for PINNs: Guzmán-Cordero et al., arXiv 2505.12149, Alg. 1.  With the
    batch's residuals ``r`` and Jacobian ``J``:

    .. math::
        φ_k = μ φ_{k-1} + Jᵀ (JJᵀ + λI)^{-1} (r − μ J φ_{k-1}),
        \qquad θ_{k+1} = θ_k − η_k\, φ_k / \sqrt{1 − μ^{2k}}

    — the new increment is the minimum-norm correction that, added to the
    decayed previous one, fits the current residuals (a Kaczmarz projection);
    the division is the bias correction of the zero-initialised ``φ``.

    The state (:meth:`state_dict`) is ``φ`` (``"phi"``, None before the first
    step) and the step count ``k``.  ``φ`` is updated on every step whose
    direction is finite, also when the line search finds no decrease; a step
    whose loss, Jacobian, direction or new parameters have NaN/Inf leaves
    the state and ``params`` unchanged (``info["step_taken"] = False``).

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.adapters.callables import CallableModel
    >>> rng = np.random.default_rng(1)
    >>> A, y = rng.standard_normal((6, 15)), rng.standard_normal(6)
    >>> model = CallableModel(residuals=lambda p, b: A @ p - y,
    ...                       jacobian=lambda p, b: A, params=np.zeros(15))
    >>> opt, params = SPRING(damping=1e-8, momentum=0.5), model.params
    >>> for _ in range(5):
    ...     params, info = opt.step(params, model, None)
    >>> bool(np.linalg.norm(A @ params - y) < 1e-6)
    True
    >>> state = opt.state_dict()
    >>> state["steps"], state["phi"].shape
    (5, (15,))
    """

    STATE = {"phi": "param_vector", "steps": "count"}

    def __init__(
        self,
        *,
        damping: float = 1e-6,
        momentum: float = 0.0633,
        lr: float | None = None,
        norm_cap: float | None = None,
    ) -> None:
        self.damping = validation.positive(damping, "damping")
        self.momentum = validation.fraction(momentum, "momentum")
        self.lr = validation.optional_positive(lr, "lr")
        self.norm_cap = validation.optional_positive(norm_cap, "norm_cap")
        self.reset()

    def _fresh_state(self) -> dict[str, Any]:
        return {"phi": None, "steps": 0}

    @_common.warn_once_per_optimizer
    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        """One SPRING step; returns ``(params, info)`` like :meth:`ENGD.step`.

        Parameters
        ----------
        params, model, batch
            As for :meth:`ENGD.step`.

        Returns
        -------
        params : array
        info : dict
            As for :meth:`ENGD.step`, and ``bias_correction``
            (``√(1 − μ^{2k})``).

        Raises
        ------
        ValueError
            ``φ`` (loaded by :meth:`load_state_dict`) does not have the shape
            of ``params``; a model whose loss is not "squared".
        """
        params, xp = _common.begin(params)
        _common.require_kind(model, "squared", "SPRING")
        _common.require(model, ("residuals", "jacobian"), "SPRING")
        _common.check_state_shape("SPRING", "phi", self.phi, params)
        timer = _common.Timer()
        out = _common.Outputs("SPRING", self.steps + 1, params)
        method = "residuals_and_jacobian" if callable(getattr(model, "residuals_and_jacobian", None)) else "jacobian"
        r, J = _common.residuals_and_jacobian(model, params, batch)
        r = out.residuals(r, method if method != "jacobian" else "residuals")
        J = out.jacobian(J, r.shape[0], method)
        loss0 = backend.to_float(_common.loss_of(xp, r, "squared"))
        if not math.isfinite(loss0):
            return params, {**_common.loss_rejection(loss0, out), "time": timer.total()}
        mu, steps = self.momentum, self.steps + 1
        phi = xp.zeros_like(params) if self.phi is None else self.phi
        try:
            # factored first: Woodbury reads J's finiteness off JJᵀ's diagonal
            # (one sync it makes anyway) before J meets φ in J φ
            W = Woodbury(J, self.damping)
        except ValueError as err:
            return params, {**_common.factor_rejection(err, J, loss0, out), "time": timer.total()}
        zeta = r - mu * (J @ phi) if mu > 0 else r
        phi = mu * phi + W.solve_sample(zeta)
        correction = math.sqrt(1.0 - mu ** (2 * steps)) if mu > 0 else 1.0
        direction = phi / correction
        timer.lap("direction")
        lr, line_search = self.lr, self.lr is None
        if self.lr is not None and self.norm_cap is not None:
            norm = backend.to_float(_common.scaled_norm(xp, direction))
            if norm > 0 and math.isfinite(norm):
                lr = min(self.lr, math.sqrt(self.norm_cap) / norm)
        new_params, info, finite = _common.take_step(
            params, direction, model, batch, loss0, "squared", lr=lr, line_search=line_search, outputs=out
        )
        if finite:
            self._commit(phi=phi, steps=steps)
        timer.lap("update")
        info["bias_correction"] = correction
        info["time"] = timer.total()
        return new_params, info
