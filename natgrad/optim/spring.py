r"""SPRING: subsampled projected-increment natural gradient with momentum."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from .. import backend
from ..linalg.woodbury import Woodbury
from . import _common

__all__ = ["SPRING"]


class SPRING:
    r"""SPRING (Goldshlager, Abrahamsen & Lin 2024) for least-squares losses.

    Parameters
    ----------
    damping : float
        ``λ > 0``.
    momentum : float
        ``μ ∈ [0, 1)``; ``μ = 0`` gives ENGD-W exactly.
    lr : float, optional
        Fixed step size.  Without it the step size comes from the ENGD grid
        line search over ``{2⁰, …, 2⁻³⁰}``.
    norm_cap : float, optional
        ``C > 0``: with ``lr`` the step size becomes ``min(lr, √C/‖φ̂_k‖)``
        (the norm constraint of the SPRING paper).

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
    """

    def __init__(
        self,
        damping: float,
        momentum: float,
        lr: float | None = None,
        norm_cap: float | None = None,
    ) -> None:
        self.damping = _common.positive(damping, "damping")
        self.momentum = _common.momentum_factor(momentum)
        self.lr = _common.optional_positive(lr, "lr")
        self.norm_cap = _common.optional_positive(norm_cap, "norm_cap")
        self.line_search = self.lr is None
        self.phi: Any = None
        self.steps = 0

    def reset(self) -> None:
        """Forget the momentum (e.g. when the parameters are replaced)."""
        self.phi, self.steps = None, 0

    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        """One SPRING step; returns ``(params, info)`` like :meth:`ENGD.step`."""
        _common.require_kind(model, "squared", "SPRING")
        _common.require(model, ("residuals", "jacobian"), "SPRING")
        timer = _common.Timer()
        xp = backend.namespace(params=params)
        r, J = _common.residuals_and_jacobian(model, params, batch)
        mu = self.momentum
        if self.phi is None or tuple(self.phi.shape) != tuple(params.shape):
            self.phi = xp.zeros_like(params)
        zeta = r - mu * (J @ self.phi) if mu > 0 else r
        W = Woodbury(J, self.damping)
        self.phi = mu * self.phi + W.solve_sample(zeta)
        self.steps += 1
        correction = math.sqrt(1.0 - mu ** (2 * self.steps)) if mu > 0 else 1.0
        direction = self.phi / correction
        timer.lap("direction")
        loss0 = backend.to_float(_common.loss_of(xp, r, "squared"))
        if self.lr is not None and self.norm_cap is not None:
            norm = backend.to_float(xp.linalg.vector_norm(direction))
            capped = SimpleNamespace(line_search=False, lr=min(self.lr, math.sqrt(self.norm_cap) / norm) if norm > 0 else self.lr)
            new_params, info = _common.take_step(capped, params, direction, model, batch, loss0, "squared")
        else:
            new_params, info = _common.take_step(self, params, direction, model, batch, loss0, "squared")
        timer.lap("update")
        info["bias_correction"] = correction
        info["time"] = timer.total()
        return new_params, info

